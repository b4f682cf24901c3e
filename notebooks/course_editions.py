"""Build what a teacher hands out or presents, from the committed notebooks.

    python notebooks/course_editions.py student          # build/student/NN_name.ipynb (make student)
    python notebooks/course_editions.py slides           # build/slides/NN_name.slides.html (make slides)
    python notebooks/course_editions.py slides 00 03     # some notebooks only

The student edition drops the cells tagged ``solution`` (code and answer
text) and keeps the ``exercise`` starter cells and the ``check`` cells, which
print "not answered yet" until the student answers. The slides run each
notebook (FAST mode, as ``run_notebooks.py``) and turn it into a reveal.js
deck with its outputs; the exercises' code cells are left out. Both use
nbconvert's preprocessors and exporters.

reveal.js is not bundled: a deck loads it, and the require.js that loads it,
from CDNs (unpkg.com, cdnjs.cloudflare.com), so offline it shows as one long
page. When ``build/slides/reveal.js`` holds local copies (``make reveal``
fetches both with npm), the decks use those and work offline; only MathJax
still comes from its CDN, so offline any TeX shows as written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
BUILD = NOTEBOOKS.parent / "build"
SOLUTION, EXERCISE, CHECK = "solution", "exercise", "check"
REVEAL_CDN = "https://unpkg.com/reveal.js@4.0.2"  # the version nbconvert's template is written for
LOCAL_REVEAL = "reveal.js"  # a folder beside the decks (make reveal): reveal.js 4.0.2 plus require.js
WRAP_CODE_CSS = "<style>.reveal pre { white-space: pre-wrap; overflow-wrap: anywhere; }</style>\n"


def _names(only: list[str]) -> list[str]:
    sys.path.insert(0, str(NOTEBOOKS))
    import run_notebooks

    sys.path.pop(0)
    names = [n for n in run_notebooks.notebook_names() if not only or any(n.startswith(o) for o in only)]
    if not names:
        raise SystemExit(f"no notebook matches {only}; choose from {run_notebooks.notebook_names()}")
    return names


def student_edition(nb):
    """The notebook without its solution cells and without outputs (a new copy)."""
    import copy

    from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor

    nb = copy.deepcopy(nb)
    nb, _ = TagRemovePreprocessor(remove_cell_tags={SOLUTION}, enabled=True).preprocess(nb, {})
    nb, _ = ClearOutputPreprocessor().preprocess(nb, {})
    nb.metadata.pop("jupytext", None)  # a handed-out copy is a plain notebook, paired with nothing
    return nb


def write_student(names: list[str], out: Path = BUILD / "student") -> list[Path]:
    import nbformat

    from patchcore_core.util.atomic import atomic_path

    written = []
    for name in names:
        nb = student_edition(nbformat.read(NOTEBOOKS / name, as_version=4))
        with atomic_path(out / name) as tmp:
            nbformat.write(nb, tmp)
        written.append(out / name)
    return written


def has_local_reveal(out: Path) -> bool:
    return all((out / LOCAL_REVEAL / f).exists() for f in ("dist/reveal.js", "require.js"))


def slides_html(executed_nb, local_reveal: bool = False) -> str:
    """A reveal.js deck (HTML) of an executed notebook; exercise, solution and check cells are left out."""
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = {EXERCISE, SOLUTION, CHECK}
    urls = {"reveal_url_prefix": LOCAL_REVEAL, "require_js_url": f"{LOCAL_REVEAL}/require.js"} \
        if local_reveal else {"reveal_url_prefix": REVEAL_CDN}
    exporter = SlidesExporter(config=config, reveal_scroll=True, **urls)
    html, _ = exporter.from_notebook_node(executed_nb)
    # long code lines wrap instead of running off the slide's right edge
    return html.replace("</head>", f"{WRAP_CODE_CSS}</head>", 1)


def write_slides(names: list[str], out: Path = BUILD / "slides", fast: bool = True) -> list[Path]:
    sys.path.insert(0, str(NOTEBOOKS))
    import run_notebooks

    sys.path.pop(0)
    from patchcore_core.util.atomic import atomic_path

    local = has_local_reveal(out)
    written = []
    with tempfile.TemporaryDirectory(prefix="patchcore-slides-") as tmp:
        for name in names:
            nb, seconds = run_notebooks.execute(name, Path(tmp) / "cache", fast=fast)
            path = out / name.replace(".ipynb", ".slides.html")
            with atomic_path(path) as t:
                t.write_text(slides_html(nb, local), encoding="utf-8")
            print(f"{path}  ({seconds:.0f} s to run)", flush=True)
            written.append(path)
    if not local:
        print(f"note: the decks load reveal.js from {REVEAL_CDN}; offline they show as one long page. "
              f"`make reveal` puts a local copy in {out / LOCAL_REVEAL}.")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("edition", choices=["student", "slides"])
    parser.add_argument("only", nargs="*", metavar="NN", help="notebook numbers or names (default: all)")
    parser.add_argument("--out", type=Path, help="output folder (default: build/student or build/slides)")
    parser.add_argument("--full", action="store_true", help="slides: run the full sweeps, not FAST mode")
    args = parser.parse_args(argv)
    names = _names(args.only)
    if args.edition == "student":
        for path in write_student(names, args.out or BUILD / "student"):
            print(path)
    else:
        write_slides(names, args.out or BUILD / "slides", fast=not args.full)
    return 0


if __name__ == "__main__":
    sys.exit(main())
