"""Fit and predict times, peak memory and accuracy on the real data sets in
``../shared/data`` (skipped when absent), default settings.

Each set runs in a fresh process so its peak memory is its own.

    python benchmarks/bench_real_data.py [--root ../shared/data] [--sets grid hazelnut mtd]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SETS = {
    "grid": ("mvtec_grid_mini", "grid"),
    "hazelnut": ("hazelnut_toy", "hazelnut_toy"),
    "mtd": ("magnetic_tile", "mtd"),
}
ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--json", help="write all results here")
    args = ap.parse_args()
    root = Path(args.root)
    if not root.is_dir():
        print(f"no real data at {root}: nothing to measure")
        return
    results = {}
    for name in args.sets:
        folder, cat = SETS[name]
        if not (root / folder / cat).is_dir():
            print(f"skip {name}: {root / folder / cat} not found")
            continue
        out = Path(f"/tmp/bench_{name}.json")
        cmd = [sys.executable, "-m", "patchcore_core.cli", "evaluate", "--data", str(root / folder),
               "--category", cat, "--json", str(out)]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        results[name] = json.loads(out.read_text())[cat]
    print("\nset       img AUROC  px AUROC  AUPRO@0.3  fit (s)  predict (ms/img)  peak RSS (MB)  bank")
    for name, r in results.items():
        print(f"{name:9s} {r['image_auroc']:9.3f} {r['pixel_auroc']:9.3f} {r['aupro']:10.3f} "
              f"{r['fit_seconds']:8.1f} {1000 * r['predict_seconds_per_image']:17.0f} "
              f"{r['peak_rss_mb']:14.0f}  {r['memory_bank_size']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
