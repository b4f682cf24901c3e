"""What an export changes on each real set: parity of the fp32 export with PyTorch, and the
int8 export's image and pixel AUROC against fp32, with its speed gain.

    python benchmarks/bench_export_quality.py --threads 2 --json build/export_quality.json

Each set of ../shared/data (or --data ROOT --category C): a model fitted on train/good (at most
--max-train images, --coreset), exported with --int8 and checked on the whole test set (the export
refuses a parity gap over 1e-4), then PyTorch, onnxruntime fp32 and int8 score the test set.
Speed: ms per image end to end as ``patchcore predict`` runs a folder (prefetched decoding), batch 8.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETS = [("mvtec_grid_mini", "grid"), ("hazelnut_toy", "hazelnut_toy"), ("magnetic_tile", "mtd")]


def evaluate_set(root: Path, category: str, args) -> dict:
    from patchcore_core import PatchCore, save
    from patchcore_core.cli.predict import predict_each
    from patchcore_core.data.mvtec import MVTecCategory
    from patchcore_core.deploy.export import export_model
    from patchcore_core.deploy.runtime import Runtime
    from patchcore_core.evaluation.metrics import image_auroc, pixel_auroc

    cat = MVTecCategory(root, category)
    train = [str(p) for p in cat.train][:args.max_train]
    test = [str(t.path) for t in cat.test]
    labels = np.array([t.is_anomalous for t in cat.test])
    model = PatchCore(device="cpu", coreset_ratio=args.coreset).fit(train, progress=False)
    masks = np.stack([cat.load_mask(t, model.preprocess) for t in cat.test])
    tmp = Path(tempfile.mkdtemp(prefix="export_quality-"))
    save(model, tmp / "model.safetensors")
    report = export_model(tmp / "model.safetensors", tmp / "export", check_images=test, int8=True,
                          log=lambda m: print(f"  {category}: {m}", file=sys.stderr))
    scores, maps, _, _ = model.score(test)
    out = {"set": f"{root.name}/{category}", "train": len(train), "test": len(test), "bank": len(model.bank),
           "parity_max_relative": report.max_relative, "parity_max_map": report.max_map_difference,
           "parity_verdicts_differ": report.verdicts_differ,
           "int8_verdicts_flipped": report.int8["verdicts_flipped"],
           "pytorch_image_auroc": image_auroc(labels, scores.numpy()),
           "pytorch_pixel_auroc": pixel_auroc(masks, maps.numpy())}
    for precision in ("fp32", "int8"):
        rt = Runtime(tmp / "export", precision=precision, threads=args.threads)
        s, m, _ = rt.score(test)
        out[f"{precision}_image_auroc"] = image_auroc(labels, s)
        out[f"{precision}_pixel_auroc"] = pixel_auroc(masks, m)
        predict_each(rt, test[:8])  # warm-up
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            predict_each(rt, test)
            best = min(best, time.perf_counter() - t)
        out[f"{precision}_ms"] = 1000 * best / len(test)
    out["int8_speedup"] = out["fp32_ms"] / out["int8_ms"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="one MVTec-layout root (default: each set of ../shared/data)")
    ap.add_argument("--category")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"),
                    help="where the real sets are (default: %(default)s)")
    ap.add_argument("--max-train", type=int, default=200,
                    help="training images per set (default: %(default)s)")
    ap.add_argument("--coreset", type=float, default=0.05, help="coreset ratio (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    import faiss
    import torch

    from patchcore_core.util.tables import format_table

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    shared = Path(args.shared)
    sets = [(Path(args.data), args.category)] if args.data else [(shared / r, c) for r, c in SETS
                                                                  if (shared / r / c).is_dir()]
    if not sets:
        print(f"no data: give --data, or put the real sets in {shared}", file=sys.stderr)
        return 2
    rows = []
    for root, category in sets:
        rows.append(evaluate_set(root, category, args))
        print(f"done: {json.dumps(rows[-1])}", file=sys.stderr)  # each set as it finishes: mtd takes long
    fmt = [{k: (f"{v:.3g}" if isinstance(v, float) and abs(v) < 1e-2 else f"{v:.3f}" if isinstance(v, float)
                else v) for k, v in r.items()} for r in rows]
    print(format_table(fmt, list(rows[0])))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"threads": args.threads, "coreset": args.coreset,
                                               "max_train": args.max_train, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
