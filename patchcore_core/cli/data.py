"""``patchcore data``: write the built-in dataset and print its folder; ``patchcore data download
NAME ...`` and ``patchcore data list``: public data sets.

Plain ``patchcore data`` (the built-in dataset) stays as it was: download and list
are optional actions added to its parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from patchcore_core.data.builtin import builtin_root, default_cache_dir, write_builtin_dataset
from patchcore_core.data.download import DEFAULT_MAX_RATIO, DEFAULT_MAX_UNPACKED_BYTES
from patchcore_core.data.get import download_dataset
from patchcore_core.data.registry import DATASETS
from patchcore_core.util.tables import format_table

from .options import note

__all__ = ["add_parser", "run", "default_root"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    d = subparsers.add_parser("data", help="write the built-in dataset and print its folder; "
                                           "'data download NAME' fetches a public one (mvtec_ad, visa, ...)")
    d.add_argument("--out", help="folder to write it to (default: the cache folder)")
    d.add_argument("--seed", type=int, default=0)
    _add_actions(d)  # 'data download', 'data list'; plain 'data' as before
    return d


def run(args) -> int:
    if args.data_action == "download":
        return _download(args)
    if args.data_action == "list":
        return _list(args)
    root = write_builtin_dataset(Path(args.out), seed=args.seed) if args.out else builtin_root(args.seed)
    print(root)
    return 0


def default_root() -> Path:
    return default_cache_dir() / "datasets"


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number above 0")
    return value


def _download(args) -> int:
    # a licence is asked for on a terminal only; a script must say --accept-licence
    ask = input if sys.stdin.isatty() else None
    download_dataset(args.name, args.root or default_root(), args.category, mirror=args.mirror,
                     accept_licence=args.accept_licence, ask=ask, force=args.force,
                     keep_archives=args.keep_archives, trust_mirror_checksums=args.trust_mirror_checksums,
                     max_unpacked_bytes=int(args.max_unpacked_gb * 10**9), max_ratio=args.max_ratio,
                     progress=not args.quiet, note=note)
    return 0


def _list(args) -> int:
    rows = [{"name": d.name, "title": d.title, "categories": len(d.categories), "licence": d.licence,
             "size": "manual download" if d.manual else
             ", ".join(sorted({a.size for a in d.archives if a.size})) or "direct"}
            for d in DATASETS.values()]
    print(format_table(rows))
    print(f"\npatchcore data download NAME [--category C ...] [--root DIR] (default root: {default_root()})")
    return 0


def _add_actions(data_parser: argparse.ArgumentParser) -> None:
    """``download`` and ``list`` under ``patchcore data`` (which still works alone)."""
    actions = data_parser.add_subparsers(dest="data_action", metavar="ACTION", required=False,
                                         title="actions (optional)")
    dl = actions.add_parser(
        "download", help="download a public data set into the MVTec layout",
        description="Download a public anomaly-detection data set, check its checksum, unpack it and "
                    "arrange it in the MVTec AD layout that --data reads. An interrupted download "
                    "resumes when the command is run again.")
    dl.add_argument("name", choices=list(DATASETS), help="the data set")
    dl.add_argument("--category", nargs="+", action="extend", metavar="C",
                    help="only these categories (default: all)")
    dl.add_argument("--root", help="folder that receives ROOT/NAME/<category>/ (default: "
                                   "the cache folder's datasets/, see 'patchcore data list')")
    dl.add_argument("--accept-licence", "--accept-license", action="store_true", dest="accept_licence",
                    help="accept the data set's licence (printed first) without being asked")
    dl.add_argument("--mirror", metavar="URL",
                    help="fetch the publisher's file names from this address or local folder instead "
                         "(a teacher's server); a SHA256SUMS file there checks only files with no "
                         "published checksum (see --trust-mirror-checksums)")
    dl.add_argument("--trust-mirror-checksums", action="store_true",
                    help="check the mirror's files against its SHA256SUMS even where a checksum is "
                         "published (a mirror serving its own packing): whoever controls the mirror "
                         "then decides what is unpacked")
    dl.add_argument("--max-unpacked-gb", type=_positive, default=DEFAULT_MAX_UNPACKED_BYTES / 10**9,
                    metavar="GB", help="refuse an archive that would unpack to more than this "
                                       "(default: %(default)g GB; MVTec AD, the largest, is about 5 GB)")
    dl.add_argument("--max-ratio", type=_positive, default=DEFAULT_MAX_RATIO, metavar="R",
                    help="refuse an archive that would unpack to more than R times its own size, "
                         "a 'zip bomb' (default: %(default)g; image archives are about 1-3)")
    dl.add_argument("--force", action="store_true", help="fetch categories that are already there again")
    dl.add_argument("--keep-archives", action="store_true",
                    help="keep the downloaded archives in ROOT/.downloads (default: deleted once unpacked)")
    dl.add_argument("--quiet", action="store_true", help="no progress bars")
    actions.add_parser("list", help="the data sets 'download' knows, with their licences")
