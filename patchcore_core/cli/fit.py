"""``patchcore fit``: fit on good images (a folder, or a category's train/good) and save the model."""

from __future__ import annotations

import argparse
import sys

from patchcore_core.data.mvtec import MVTecCategory, few_shot, image_folder
from patchcore_core.ext.ensemble import make_model
from patchcore_core.io.save_load import save
from patchcore_core.pipeline.config import PatchCoreConfig
from patchcore_core.util.tables import format_value

from .options import (
    add_cluster_options,
    add_config_options,
    add_data_option,
    add_quiet_option,
    config_from_args,
    data_root,
    note,
    start_cluster,
)
from .outputs import check_output_file

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    f = subparsers.add_parser("fit", help="fit on good images and save the model (.safetensors)")
    src = f.add_argument_group("training images (one of)")
    src.add_argument("--images", help="a folder of defect-free images")
    src.add_argument("--category", help="a category's train/good of --data (or the built-in data)")
    add_data_option(f, help="MVTec-layout root for --category")
    f.add_argument("--out", required=True, help="model file to write, ending in .safetensors")
    f.add_argument("--shots", type=int, help="use only this many training images")
    add_quiet_option(f)
    add_config_options(f)
    add_cluster_options(f)
    return f


def run(args) -> int:
    # bad settings or an unwritable --out: refused before any image is read
    check_output_file(args.out, "--out", suffix=".safetensors")
    config = PatchCoreConfig(**config_from_args(args))
    if args.images:
        train = image_folder(args.images, on_skip=note)
    else:
        if not args.category:
            print("error: give --images DIR, or --category CAT (with --data ROOT or the built-in data)",
                  file=sys.stderr)
            return 2
        train = MVTecCategory(data_root(args), args.category).train
    train = few_shot(train, args.shots, seed=config.seed)
    model = make_model(config, device=args.device, work=start_cluster(args))  # a cluster starts last
    model.fit(train, progress=not args.quiet)
    save(model, args.out)
    card = model.summary()
    print(f"saved {args.out}: {card['n_train']} images, memory bank {card['memory_bank_size']} patches, "
          f"threshold {format_value(card['threshold'])}, fit {card['fit_seconds']:.1f} s")
    if "covering_radius" in card:
        print(f"cluster: {card['cluster_nodes']} node(s), covering radius {card['covering_radius']:.3f}" +
              (f" (single machine: {card['single_machine_covering_radius']:.3f})"
               if "single_machine_covering_radius" in card else ""))
    return 0
