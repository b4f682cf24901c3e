"""The options several commands share, declared once: the model settings (one per field of
:class:`~patchcore_core.PatchCoreConfig`), the device, the data, progress bars, the Ray cluster;
the argparse types that refuse nan and inf; and the step that turns them into a checked config.

The PyTorch parts (the config, the cluster) and the built-in data are imported inside the
functions that need them: ``patchcore predict --model EXPORT_DIR`` uses this module where
torch (and scikit-image) are not installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import typing
from pathlib import Path

__all__ = ["finite_float", "odd_positive_int", "add_config_options", "add_device_option", "add_data_option",
           "add_quiet_option", "add_mask_protocol_option", "add_cluster_options", "config_from_args",
           "check_settings", "data_root", "start_cluster", "note"]


def _option_type(hint) -> tuple[type, str | None]:
    """(element type, nargs) for a config field's type hint, e.g. ``int | None`` -> (int, None)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    inner = args[0]
    if typing.get_origin(inner) is tuple:
        return typing.get_args(inner)[0], "+"
    return inner, None


def finite_float(text: str) -> float:
    """argparse type: a number, not nan or inf (which pass float() and every ``<`` check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def odd_positive_int(text: str) -> int:
    """argparse type of --neighbourhood: 1, 3, 5, ... (its limit, the patch grid, is checked
    with the other settings once the backbone and image size are known)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1 or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be a positive odd number (1, 3, 5, ...), not {text}")
    return value


_OPTION_TYPES = {float: finite_float}  # a field's type -> its argparse type
_FIELD_TYPES = {"neighbourhood": odd_positive_int}


def add_device_option(p) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")


def add_config_options(p: argparse.ArgumentParser, config_cls=None) -> None:
    """One option per field of the config, with its help, default and choices, and --device.

    Options left out keep the config's default (argparse's default is None),
    so the config alone decides every default.
    """
    from patchcore_core.pipeline.config import PatchCoreConfig

    config_cls = config_cls or PatchCoreConfig
    hints = typing.get_type_hints(config_cls)
    g = p.add_argument_group("model settings")
    for f in dataclasses.fields(config_cls):
        kind, nargs = _option_type(hints[f.name])
        flags = ["--" + f.name.replace("_", "-")] + ([f.metadata["cli"]] if "cli" in f.metadata else [])
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata.get("help", "").replace("%", "%%")
        choices = f.metadata.get("choices")
        if f.name == "backbone":  # "a+b+c" (an ensemble) is not in the list; the config checks each name
            help_text += f" One of {', '.join(choices)}, or several joined by + for an ensemble."
            choices = None
        kind = _FIELD_TYPES.get(f.name) or _OPTION_TYPES.get(kind, kind)
        g.add_argument(*flags, dest=f.name, type=kind, nargs=nargs, default=None,
                       choices=choices, metavar=None if nargs is None else "NAME",
                       help=help_text if default is None else f"{help_text} (default: {default})")
    add_device_option(g)
    p.set_defaults(config_cls=config_cls)


def config_from_args(args, config_cls=None) -> dict:
    """The config fields given on the command line (the rest keep their defaults)."""
    from patchcore_core.pipeline.config import PatchCoreConfig

    config_cls = config_cls or PatchCoreConfig
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
            if getattr(args, f.name, None) is not None}


def check_settings(args) -> None:
    """Build the config from the options once, before any work: a bad combination (a
    neighbourhood wider than the patch grid at this image size) is named now, not after
    a cluster has started or the images are read. Raises ValueError."""
    if getattr(args, "config_cls", None) is not None:
        args.config_cls(**config_from_args(args, args.config_cls))


def add_data_option(p, help: str = "MVTec-layout root (default: the built-in dataset)", **kwargs) -> None:
    p.add_argument("--data", help=help, **kwargs)


def data_root(args) -> Path:
    """``--data``, or the built-in dataset (written on first use) without it."""
    from patchcore_core.data.builtin import builtin_root

    return Path(args.data) if args.data else builtin_root()


def add_quiet_option(p, help: str = "no progress bars") -> None:
    p.add_argument("--quiet", action="store_true", help=help)


def add_mask_protocol_option(p, help: str) -> None:
    from patchcore_core.pipeline.preprocess import MASK_PROTOCOLS

    p.add_argument("--mask-protocol", default="nearest", choices=MASK_PROTOCOLS,
                   help=help + " (default: %(default)s)")


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray cluster (pip install 'patchcore-core[cluster]')")
    g.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster: 'auto' joins the one running here, 'local' starts one in "
                        "this process, HOST:PORT joins that head node. With --category all, each "
                        "category is a Ray task")
    g.add_argument("--ship-images", action="store_true",
                   help="send the images' bytes to the workers (default: paths, on a filesystem all "
                        "nodes share)")
    g.add_argument("--single-machine-radius", action="store_true",
                   help="also run the single-machine greedy coreset on the same features and report its "
                        "covering radius beside the cluster's (costs one more coreset)")


def start_cluster(args):
    """The RayCluster that ``--ray`` names (None without it). Call it after the data and settings
    are checked: joining or starting a cluster takes seconds to minutes."""
    if not getattr(args, "ray", None):
        return None
    from patchcore_core import cluster
    from patchcore_core.ext.ensemble import refuse_cluster
    from patchcore_core.pipeline.config import PatchCoreConfig

    refuse_cluster(PatchCoreConfig(**config_from_args(args)))  # before a cluster starts, not after
    # cluster.RayCluster looked up now, not imported by name: tests replace it to see whether one starts
    work = cluster.RayCluster(args.ray, ship_images=args.ship_images,
                              single_machine_radius=args.single_machine_radius)
    print(f"ray: {work.n_nodes} node(s), {work.n_cpus} CPU(s) at {args.ray}", file=sys.stderr)
    return work


def note(msg: str) -> None:
    """A remark on stderr (a skipped file, a left-out mask) that does not stop the command."""
    print(f"note: {msg}", file=sys.stderr)
