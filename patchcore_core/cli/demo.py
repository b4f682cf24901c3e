"""``patchcore demo``: serve the Gradio demo; its own parser reads the options (``python -m demo --help``)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    m = subparsers.add_parser("demo", help="serve the Gradio demo (same options as python -m demo)",
                              add_help=False)
    m.set_defaults(extra_args=[])  # the options this parser does not know go to the demo's own
    return m


def run(args) -> int:
    # The demo (folder demo/, installed as patchcore_demo) needs gradio, an optional extra:
    # imported only when asked for, never by the library.
    from patchcore_demo.__main__ import main as demo_main

    return demo_main(args.extra_args, prog="patchcore demo")
