"""How often the demo's "unlike the training images" warning fires on real data.

For each real set in ``../shared/data`` (skipped when absent), a model with the
demo's settings is fitted on at most 64 of its good training images (the demo's
limit for a visitor's fit, evenly spaced), then every test image is scored. The
warning fires when more than ``demo.logic.UNLIKE_SHARE`` of an image's patches
score above the model's threshold (:func:`demo.logic.is_unlike`). Printed per set:
how often it fires on the set's good and defective test images, and on the good
test images of the *other* sets (images the model has never seen anything like).

    python benchmarks/bench_unfamiliar.py [--root ../shared/data] [--sets grid hazelnut mtd]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "grid": ("mvtec_grid_mini", "grid"),
    "hazelnut": ("hazelnut_toy", "hazelnut_toy"),
    "mtd": ("magnetic_tile", "mtd"),
}
MAX_TRAIN = 64  # demo.logic.MAX_FIT_IMAGES: what a visitor can fit


def shares(model, paths: list) -> np.ndarray:
    """The share of patches above the threshold, per image."""
    from demo.logic import unlike_share

    out = []
    for start in range(0, len(paths), 16):
        for pred in model.predict(paths[start:start + 16]):
            out.append(unlike_share(pred.patch_scores, model.threshold))
    return np.asarray(out, float)


def main(argv=None) -> int:
    from demo.logic import UNLIKE_SHARE
    from patchcore_core import PatchCore
    from patchcore_core.data.mvtec import MVTecCategory
    from patchcore_core.util.tables import format_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-test", type=int, default=0, help="score at most this many test images per "
                    "kind (good, defective; 0: all)")
    args = ap.parse_args(argv)
    root = Path(args.root)
    cats = {name: MVTecCategory(root / SETS[name][0], SETS[name][1])
            for name in args.sets if (root / SETS[name][0]).is_dir()}
    if not cats:
        print(f"no real data under {root}: nothing to measure")
        return 0

    def pick(items, limit):
        items = list(items)
        if limit and len(items) > limit:
            items = [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
        return items

    rows = []
    for name, cat in cats.items():
        train = pick(cat.train, MAX_TRAIN)
        model = PatchCore(device=args.device).fit([str(p) for p in train], progress=False)
        good = pick([t.path for t in cat.test if not t.is_anomalous], args.max_test)
        bad = pick([t.path for t in cat.test if t.is_anomalous], args.max_test)
        other = [p for o, c in cats.items() if o != name
                 for p in pick([t.path for t in c.test if not t.is_anomalous], 20)]
        row = {"set": name, "train": len(train)}
        for kind, paths in (("good", good), ("defective", bad), ("other sets' good", other)):
            if not paths:
                continue
            s = shares(model, [str(p) for p in paths])
            fired = int((s > UNLIKE_SHARE).sum())
            row[f"{kind}: fires"] = f"{fired}/{len(s)} ({100 * fired / len(s):.1f}%)"
            row[f"{kind}: median share"] = float(np.median(s))
        rows.append(row)
        print(format_table([row], digits=2), flush=True)
    print(f"\nwarning rule: more than {UNLIKE_SHARE:.0%} of the patches above the threshold")
    print(format_table(rows, digits=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
