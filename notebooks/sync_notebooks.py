"""Keep each notebook pair in sync: ``NN_name.py`` (percent format, the source)
and ``NN_name.ipynb`` (committed without outputs).

    python notebooks/sync_notebooks.py           # sync every pair, strip outputs, say what changed
    python notebooks/sync_notebooks.py --check   # only report; exit 1 if a pair needs syncing

Syncing is ``jupytext --sync``: the file of a pair that was modified last is
the source of the cells. So edit either side (the ``.py`` in an editor, or
the notebook in JupyterLab, which saves both), then run this (``make notebooks``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
FORMAT = "py:percent"


def pairs(folder: Path = NOTEBOOKS) -> list[tuple[Path, Path]]:
    """``(source .py, .ipynb)`` for every numbered notebook; an ``.ipynb``
    without its ``.py`` is listed too (syncing creates the ``.py``)."""
    stems = sorted({p.stem for p in folder.glob("[0-9][0-9]_*.py")} |
                   {p.stem for p in folder.glob("[0-9][0-9]_*.ipynb")})
    return [(folder / f"{s}.py", folder / f"{s}.ipynb") for s in stems]


def differences(py: Path, ipynb: Path) -> list[str]:
    """What keeps a pair from being in sync (empty when it is): a missing
    side, cells that differ, or outputs saved in the ``.ipynb``."""
    import jupytext
    import nbformat

    missing = [p.name for p in (py, ipynb) if not p.exists()]
    if missing:
        return [f"{' and '.join(missing)} missing"]
    nb = nbformat.read(ipynb, as_version=4)
    problems = []
    # The .py must be exactly what jupytext writes from the notebook's cells.
    if jupytext.writes(nb, fmt=FORMAT) != py.read_text(encoding="utf-8"):
        problems.append(f"{py.name} and {ipynb.name} hold different cells")
    n_out = sum(bool(c.get("outputs")) or c.get("execution_count") is not None
                for c in nb.cells if c.cell_type == "code")
    if n_out:
        problems.append(f"{ipynb.name} has outputs in {n_out} cells")
    return problems


def strip_outputs(ipynb: Path) -> None:
    """Remove outputs and execution counts (nbconvert's ClearOutputPreprocessor)."""
    import nbformat
    from nbconvert.preprocessors import ClearOutputPreprocessor

    from patchcore_core.util.atomic import atomic_path

    nb = nbformat.read(ipynb, as_version=4)
    nb, _ = ClearOutputPreprocessor().preprocess(nb, {})
    nb.metadata.pop("widgets", None)
    with atomic_path(ipynb) as tmp:
        nbformat.write(nb, tmp)


def sync(py: Path, ipynb: Path) -> None:
    from jupytext.cli import jupytext as jupytext_cli

    jupytext_cli(["--sync", "--quiet", str(py if py.exists() else ipynb)])
    strip_outputs(ipynb)
    # jupytext opens a pair from its text file and refuses when the .ipynb is newer.
    os.utime(py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report only; exit 1 when a pair is out of sync")
    parser.add_argument("--dir", type=Path, default=NOTEBOOKS,
                        help="the notebooks' folder (default: %(default)s)")
    args = parser.parse_args(argv)
    out_of_sync = [(py, ipynb, diff) for py, ipynb in pairs(args.dir) if (diff := differences(py, ipynb))]
    if not out_of_sync:
        print(f"nothing to sync: all {len(pairs(args.dir))} notebook pairs agree and carry no outputs")
        return 0
    for py, ipynb, diff in out_of_sync:
        if args.check:
            print(f"{py.stem}: out of sync: {'; '.join(diff)}")
            continue
        newer = max((p for p in (py, ipynb) if p.exists()), key=lambda p: p.stat().st_mtime)
        sync(py, ipynb)
        print(f"{py.stem}: synced from {newer.name} ({'; '.join(diff)})")
    if args.check:
        print("run `make notebooks` (python notebooks/sync_notebooks.py) to sync them")
        return 1
    left = [py.stem for py, ipynb in pairs(args.dir) if differences(py, ipynb)]
    if left:
        print(f"still out of sync: {', '.join(left)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
