"""Prediction speed at 224 px with the default backbone and a memory bank
of about 16,000 patches (the size of a 10% bank of ~200 MVTec images).

    python benchmarks/bench_predict.py [--bank 16000] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from patchcore_core import PatchCore
from patchcore_core.data.builtin import builtin_root
from patchcore_core.data.mvtec import MVTecCategory


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", type=int, default=16_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    root = builtin_root()
    cats = [MVTecCategory(root, c) for c in ["brick", "grass", "gravel"]]
    train = [p for c in cats for p in c.train]          # 72 images, 56,448 patches
    test = [t.path for c in cats for t in c.test]       # 42 images
    ratio = min(1.0, args.bank / (len(train) * 28 * 28))
    model = PatchCore(device=args.device, coreset_ratio=ratio, calibration_fraction=0)
    model.fit(train, progress=True)
    print(f"bank: {len(model.bank)} patches x {model.bank.features.shape[1]} "
          f"(distance-equal to {model.config.target_dim}-d), device {model.device}, "
          f"{torch.get_num_threads()} threads")
    model.predict(test[:4])  # warm-up
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model.predict(test)
        best = min(best, (time.perf_counter() - t0) / len(test))
    print(f"predict: {1000 * best:.1f} ms per image (best of {args.repeat}, batch {model.config.batch_size}, "
          f"{len(test)} images; backbone + kNN + anomaly map)")


if __name__ == "__main__":
    main()
