"""``patchcore evaluate``: fit on each category's train/good, measure on its test images, one table.

With ``--ray`` and several categories, each category is a Ray task (a sweep).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from patchcore_core import cluster
from patchcore_core.data.mvtec import MVTecCategory, list_categories
from patchcore_core.evaluation.category import evaluate_category
from patchcore_core.util.tables import format_table

from .options import (
    add_cluster_options,
    add_config_options,
    add_data_option,
    add_mask_protocol_option,
    add_quiet_option,
    config_from_args,
    data_root,
    start_cluster,
)
from .outputs import check_output_file, write_json

__all__ = ["add_parser", "run"]

_COLUMNS = ["category", "image_auroc", "pixel_auroc", "aupro", "f1_max", "false_alarm_rate", "miss_rate",
            "n_train", "n_test",
            "memory_bank_size", "fit_seconds", "predict_seconds_per_image", "peak_rss_mb"]
_CLUSTER_COLUMNS = ("cluster_nodes", "covering_radius", "single_machine_covering_radius")
_SWEEP_COLUMNS = ["category", "image_auroc", "pixel_auroc", "aupro", "f1_max", "n_train", "n_test",
                  "memory_bank_size", "fit_seconds", "predict_seconds_per_image", "peak_rss_mb",
                  "cluster_nodes", "covering_radius"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    e = subparsers.add_parser("evaluate", help="fit on train/good and measure on test (MVTec layout)")
    add_data_option(e)
    e.add_argument("--category", default="all", help="a category, or 'all' (default: %(default)s)")
    e.add_argument("--shots", type=int, help="use only this many training images (few-shot)")
    e.add_argument("--json", help="also write the results to this JSON file")
    add_mask_protocol_option(e, "how masks are resized to the model's resolution: 'nearest' pixel, or "
                                "'strict' (only pixels wholly inside a defect, as the PatchCore reference "
                                "code scores them; use it to compare with that code's figures)")
    add_quiet_option(e)
    add_config_options(e)
    add_cluster_options(e)
    return e


def run(args) -> int:
    if args.json:
        check_output_file(args.json, "--json")  # before minutes of work, not after
    root = data_root(args)
    cats = list_categories(root) if args.category == "all" else [args.category]
    if not cats:
        print(f"error: {root} holds no category (no <category>/train/good folder)", file=sys.stderr)
        return 2
    if args.ray and len(cats) > 1:
        return _run_sweep(args, root, cats)
    for cat in cats:  # a misspelt category is named now, not after a cluster has started
        MVTecCategory(root, cat)
    work = start_cluster(args)
    rows = []
    for cat in cats:
        print(f"== {cat}", file=sys.stderr)
        res = evaluate_category(root, cat, shots=args.shots, device=args.device,
                                progress=not args.quiet, mask_protocol=args.mask_protocol,
                                work=work, **config_from_args(args))
        if res.missing_masks:
            names = ", ".join(Path(p).name for p in res.missing_masks[:3])
            more = f" and {len(res.missing_masks) - 3} more" if len(res.missing_masks) > 3 else ""
            print(f"note: {cat}: {len(res.missing_masks)} defective test image(s) have no mask "
                  f"({names}{more}); they are left out of pixel_auroc and aupro", file=sys.stderr)
        rows.append(res.metrics)
    keys = list(_COLUMNS)
    if any(r.get("n_missing_masks") for r in rows):
        keys.insert(keys.index("n_test") + 1, "n_missing_masks")
    keys += [k for k in _CLUSTER_COLUMNS if any(k in r for r in rows)]
    print(format_table(rows, keys))
    if args.json:
        write_json(args.json, {r["category"]: r for r in rows})
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _run_sweep(args, root: Path, cats: list[str]) -> int:
    """``evaluate --category all --ray``: one Ray task per category, one table; a failed
    category is reported with its setting and the others still finish."""
    cluster.connect(args.ray)
    nodes = len(cluster.alive_nodes())
    config = config_from_args(args)
    jobs = [{"root": str(root), "category": c, "shots": args.shots, "mask_protocol": args.mask_protocol,
             "config": config} for c in cats]
    rows = cluster.run_sweep(
        jobs, progress=not args.quiet,
        on_row=lambda r: print(f"== {r['category']}" + (" failed" if "error" in r else ""), file=sys.stderr))
    for r in rows:
        r["cluster_nodes"] = nodes
    ok = [r for r in rows if "error" not in r]
    if ok:
        print(format_table(ok, _SWEEP_COLUMNS))
    for r in rows:
        if "error" in r:
            print(f"error: {r['category']} ({r['setting']}): {r['error']}", file=sys.stderr)
    if args.json:
        write_json(args.json, {r["category"]: r for r in rows})
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if len(ok) < len(rows) else 0
