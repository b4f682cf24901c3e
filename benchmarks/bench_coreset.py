"""Coreset selection speed: 10% of 100,000 x 1024 patch features.

Prints the time of `greedy_coreset` beside the plain greedy loop
(`reference_greedy_coreset`) on the same input, and checks that both give
the same covering radius. The features are real: the paper's 1024-d
patch features of the built-in dataset (every image, 240 px crops).

    python benchmarks/bench_coreset.py [--n 100000] [--skip-reference]
"""

from __future__ import annotations

import argparse
import time

import torch

from patchcore_core import PatchCore
from patchcore_core.data.builtin import builtin_root
from patchcore_core.data.mvtec import MVTecCategory
from patchcore_core.pipeline.coreset import greedy_coreset, reference_greedy_coreset
from patchcore_core.pipeline.preprocess import Preprocess


def patch_features_1024(n: int) -> torch.Tensor:
    root = builtin_root()
    images = []
    for cat in ["brick", "grass", "gravel"]:
        c = MVTecCategory(root, cat)
        images += c.train + [t.path for t in c.test]
    model = PatchCore(device="cpu", image_size=240, resize=256)
    model.preprocess = Preprocess(256, 240, "crop", model.spec.mean, model.spec.std)
    z = model.extract(images, progress=True)  # 114 images x 30 x 30 patches = 102,600
    r = z.reshape(-1, z.shape[-1])[:n]
    if len(r) < n:
        raise SystemExit(f"only {len(r)} patches available; use --n {len(r)} or less")
    # Back from the compact 152-d form to the paper's 1024-d features (f = r P).
    emb = model.embedding
    raw = r.double() @ torch.linalg.inv(emb.L if emb.L is not None else torch.eye(r.shape[1]))
    return emb.full(raw).float()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--skip-reference", action="store_true", help="only time greedy_coreset")
    args = ap.parse_args()

    x = patch_features_1024(args.n)
    k = round(args.n * args.ratio)
    print(f"input: {tuple(x.shape)} float32 patch features; keep {k} ({args.ratio:.0%}); "
          f"{torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    fast = greedy_coreset(x, count=k, progress=True)
    t_fast = time.perf_counter() - t0
    print(f"greedy_coreset:            {t_fast:7.1f} s   covering radius {fast.radii[-1]:.3f}")
    if not args.skip_reference:
        t0 = time.perf_counter()
        ref = reference_greedy_coreset(x, k)
        t_ref = time.perf_counter() - t0
        same = (fast.indices == ref.indices).float().mean().item()
        print(f"reference_greedy_coreset:  {t_ref:7.1f} s   covering radius {ref.radii[-1]:.3f}")
        print(f"speed-up {t_ref / t_fast:.1f}x; same picks: {same:.1%}")


if __name__ == "__main__":
    main()
