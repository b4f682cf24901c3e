"""``patchcore export``: a model file -> a folder that runs without PyTorch (onnxruntime),
written only when its scores match PyTorch's on check images.

    patchcore export --model brick.safetensors --out brick_export
    patchcore export --model brick.safetensors --out brick_export --int8 --check-images test/good
    patchcore predict --model brick_export test/*.png
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a model for onnxruntime (no PyTorch needed to run it), parity checked",
        description="Write --out: model.onnx (image -> patch features), search.onnx (exact nearest "
                    "neighbours), bank.npy, settings.json and provenance.json. The exported model scores "
                    "the check images beside the PyTorch one; the export is refused when a score differs "
                    "by more than 1e-4 (relative) or a verdict differs. Run it with: patchcore predict "
                    "--model OUT images...")
    p.add_argument("--model", required=True, help="a .safetensors file written by 'patchcore fit'")
    p.add_argument("--out", required=True, help="folder to write (new, empty, or an earlier export)")
    p.add_argument("--check-images", metavar="DIR",
                   help="images to prove parity on: a folder and its subfolders (an MVTec test/), or one "
                        "image (default: the model's held-out training images, when they are on this "
                        "machine)")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (static quantisation of the backbone, calibrated on the "
                        "training images) and run it by default; prints the verdicts it flips")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from patchcore_core.deploy.export import export_model
    from patchcore_core.deploy.runtime import ExportError

    from .outputs import check_output_folder

    check_output_folder(args.out, "--out")
    try:
        report = export_model(args.model, args.out, check_images=args.check_images, int8=args.int8,
                              log=lambda msg: print(msg, file=sys.stderr))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report.folder}")
    return 0
