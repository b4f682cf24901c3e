"""The ``patchcore`` command: fit, predict, evaluate, benchmark, data, export, demo.

    patchcore data                                   # write the built-in dataset
    patchcore data download mvtec_ad --category bottle --root ~/data   # a public data set
    patchcore evaluate --category all                # built-in data, every category
    patchcore evaluate --data ~/mvtec --category bottle --json results.json
    patchcore benchmark --data ~/mvtec --out runs/mvtec     # every category, the paper's tables
    patchcore fit --images good/ --out model.safetensors
    patchcore predict --model model.safetensors test/*.png

This module holds the top-level parser, the dispatch and the exit codes; each command
is a module of this folder (see the folder's docstring for the convention).
"""

from __future__ import annotations

import argparse
import sys

from patchcore_core.util.images import DataError

from . import predict
from .options import check_settings

try:
    import torch  # noqa: F401
except ImportError:  # the runtime extra: 'patchcore predict --model EXPORT_DIR' only
    TORCH = False
else:
    TORCH = True
    from . import benchmark, data, demo, evaluate, export, fit

__all__ = ["main", "build_parser", "COMMANDS"]

# The commands in the order ``patchcore --help`` lists them; each has add_parser(subparsers) and run(args).
COMMANDS = [data, evaluate, benchmark, fit, predict, export, demo] if TORCH else [predict]
# Listed without torch too, so that each says what it needs rather than argparse's "invalid choice".
TORCH_COMMANDS = ["data", "evaluate", "benchmark", "fit", "export", "demo"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="patchcore",
        description="PatchCore anomaly detection (Roth et al., CVPR 2022): learn 'normal' from "
                    "defect-free images, then score and localise defects.",
        epilog="Without --data, the built-in dataset (scikit-image textures with generated defects) "
               "is used. Run 'patchcore COMMAND --help' for a command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub).set_defaults(func=command.run)
    if not TORCH:
        for name in TORCH_COMMANDS:
            sub.add_parser(name, help="needs PyTorch", add_help=False).set_defaults(
                func=_needs_torch, extra_args=[])
    return p


def _needs_torch(args) -> int:
    print(f"error: 'patchcore {args.command}' needs PyTorch, which is not installed here (the runtime "
          "extra runs only 'patchcore predict --model EXPORT_DIR'); pip install patchcore-core",
          file=sys.stderr)
    return 2


def _input_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input (exit code 2); those of the PyTorch parts where installed."""
    if not TORCH:
        return (DataError, ValueError)
    from patchcore_core.cluster.connect import ClusterError
    from patchcore_core.io.model_file import ModelFileError
    from patchcore_core.pipeline.backbones import BackboneError

    return (DataError, ModelFileError, BackboneError, ClusterError, ValueError)


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names. Exit codes: 0 done, 1 done with some inputs failed,
    2 bad input (options, data, model file, cluster), 130 interrupted."""
    for stream in (sys.stdout, sys.stderr):
        # a file name the terminal cannot encode is printed escaped, not turned into an
        # encoding error that hides which file it was
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args, rest = build_parser().parse_known_args(argv)
    if hasattr(args, "extra_args"):  # a command that hands its other options on (the demo)
        args.extra_args = rest
    elif rest:
        build_parser().parse_args(argv)  # the usual error for unknown options
    joined_before = _ray_connected()  # a caller's own connection (tests, notebooks) is left alone
    try:
        check_settings(args)
        return args.func(args)
    except _input_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if not joined_before and _ray_connected():
            # Ray's processes stopped in order now, not by the interpreter's exit (which can crash)
            from patchcore_core.cluster.connect import disconnect

            disconnect()


def _ray_connected() -> bool:
    ray = sys.modules.get("ray")  # never imported here: the rest works without the cluster extra
    return ray is not None and ray.is_initialized()


if __name__ == "__main__":
    sys.exit(main())
