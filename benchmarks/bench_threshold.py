"""Which threshold rule keeps both false alarms and misses low, on real data.

One fit per set and seed (the seed picks the held-out good images and the
coreset); each rule then places its threshold on the same held-out scores
(:func:`patchcore_core.pipeline.calibration.threshold_from_scores`) and is scored on
the same test images. Rates are pooled over seeds: counts of good test
images above the threshold and defective ones at or below it.

    python benchmarks/bench_threshold.py --root ../shared/data --sets grid hazelnut --seeds 3
    python benchmarks/bench_threshold.py --root ../shared/data --sets mtd --seeds 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from patchcore_core.evaluation.category import evaluate_category, threshold_rates
from patchcore_core.pipeline.calibration import threshold_from_scores
from patchcore_core.util.tables import format_table

SETS = {"grid": ("mvtec_grid_mini", "grid"), "hazelnut": ("hazelnut_toy", "hazelnut_toy"),
        "mtd": ("magnetic_tile", "mtd")}
RULES = [0.0, 0.01, 0.05, 0.1]  # 0: the largest held-out score


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="../shared/data")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--coreset-ratio", type=float, default=0.1)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--dump", help="write each fit's held-out scores and test labels/scores here "
                                   "(to try other rules without fitting again)")
    args = ap.parse_args()
    rows, dump = [], []
    for name in args.sets:
        folder, cat = SETS[name]
        counts = {r: [0, 0, 0, 0] for r in RULES}  # false alarms, good, misses, defective
        for seed in range(args.seeds):
            res = evaluate_category(Path(args.root) / folder, cat, device="cpu", progress=False,
                                    seed=seed, coreset_ratio=args.coreset_ratio)
            dump.append({"set": name, "seed": seed, "calibration": res.model.calibration_scores,
                         "labels": res.labels.tolist(), "scores": res.scores.tolist()})
            good, bad = int((res.labels == 0).sum()), int((res.labels == 1).sum())
            for rule in RULES:
                thr = threshold_from_scores(res.model.calibration_scores, rule or None)
                far, miss = threshold_rates(res.labels, res.scores, thr)
                c = counts[rule]
                c[0] += round(far * good)
                c[1] += good
                c[2] += round(miss * bad)
                c[3] += bad
            print(f"{name} seed {seed}: image AUROC {res.metrics['image_auroc']:.3f}, "
                  f"{len(res.model.calibration_scores)} held-out scores", flush=True)
        for rule, (fa, g, mi, b) in counts.items():
            rows.append({"set": name, "rule": "largest held-out" if rule == 0 else f"fitted {rule:g}",
                         "false_alarms": f"{fa}/{g}", "false_alarm_rate": fa / g, "misses": f"{mi}/{b}",
                         "miss_rate": mi / b, "both": (fa + mi) / (g + b)})
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.dump:
        Path(args.dump).write_text(json.dumps(dump))


if __name__ == "__main__":
    main()
