"""``patchcore benchmark``: every category of a dataset, resumable, with the paper's tables."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from patchcore_core.evaluation.benchmark import markdown_report, run_benchmark
from patchcore_core.evaluation.published import comparison_figure

from .options import (
    add_config_options,
    add_data_option,
    add_mask_protocol_option,
    add_quiet_option,
    config_from_args,
)
from .outputs import check_output_folder

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    b = subparsers.add_parser(
        "benchmark", help="every category of a dataset, resumable, with the paper's tables",
        description="Evaluate every category of an MVTec-layout dataset and write "
                    "results.csv/.json/.md (and comparison.png beside the paper's figures) "
                    "to --out. Runs already in --out/results.csv are skipped unless --force.")
    add_data_option(b, required=True, help="MVTec-layout root (one folder per category)")
    b.add_argument("--out", required=True, help="folder for the results (created)")
    b.add_argument("--dataset", default="mvtec_ad", choices=["mvtec_ad", "other"],
                   help="which published figures to compare with ('other': none) (default: %(default)s)")
    b.add_argument("--category", nargs="+", help="only these categories (default: every one in --data)")
    b.add_argument("--shots", type=int, nargs="+", metavar="N",
                   help="few-shot: runs with N training images each, e.g. --shots 1 5 10 16 20 50")
    b.add_argument("--seeds", type=int,
                   help="runs per setting, seeds --seed.. (default: 3 with --shots, else 1)")
    b.add_argument("--force", action="store_true", help="run again what --out already holds")
    add_mask_protocol_option(b, "how masks are resized ('strict' as the reference code)")
    add_quiet_option(b, help="no progress bar")
    add_config_options(b)
    return b


def run(args) -> int:
    check_output_folder(args.out, "--out")
    config = config_from_args(args)
    seed = config.get("seed", 0)
    n_seeds = args.seeds or (3 if args.shots else 1)  # few-shot: several draws of the images
    rows = run_benchmark(args.data, args.out, categories=args.category, shots=args.shots,
                         seeds=list(range(seed, seed + n_seeds)), force=args.force, dataset=args.dataset,
                         mask_protocol=args.mask_protocol, device=args.device,
                         progress=not args.quiet, **config)
    settings = json.loads((Path(args.out) / "settings.json").read_text())
    print(markdown_report(rows, settings))
    if args.dataset == "mvtec_ad" and any(r["shots"] is None for r in rows):
        png = comparison_figure(rows, Path(args.out) / "comparison.png", settings["config"])
        print(f"wrote {png}", file=sys.stderr)
    print(f"wrote {args.out}/results.csv, results.json, results.md", file=sys.stderr)
    return 0
