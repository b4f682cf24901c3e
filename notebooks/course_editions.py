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
fetches them and MathJax with npm), the decks use those and work offline.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decks  # noqa: E402  (beside this file)
from decks import LOCAL_REVEAL, REVEAL_CDN, SOLUTION  # noqa: E402

sys.path.pop(0)

NOTEBOOKS = Path(__file__).resolve().parent
BUILD = NOTEBOOKS.parent / "build"
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browsers are never downloaded


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
    needed = ("dist/reveal.js", "require.js", "mathjax/MathJax.js")
    return all((out / LOCAL_REVEAL / f).exists() for f in needed)


def slides_html(executed_nb, local_reveal: bool = False, paths: dict[str, str] | None = None) -> str:
    return decks.slides_html(executed_nb, local_reveal, paths)


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def run_stamp(name: str, fast: bool) -> dict:
    """What a notebook's outputs depend on: its code cells, the package's version and the mode. (Its
    text, tags and slide types only change the deck: editing them re-renders without a rerun.)"""
    import nbformat

    import patchcore_core

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c.source.encode() for c in nb.cells if c.cell_type == "code"]
    return {"code_sha256": _sha256(*code), "package_version": patchcore_core.__version__, "fast": fast}


def with_outputs(nb, executed):
    """``nb`` (the notebook as it is now) with the outputs of ``executed``, a run of the same code cells."""
    import copy

    nb = copy.deepcopy(nb)
    ran = [c for c in executed.cells if c.cell_type == "code"]
    for cell, done in zip((c for c in nb.cells if c.cell_type == "code"), ran, strict=True):
        cell.outputs, cell.execution_count = done.outputs, done.execution_count
    if "widgets" in executed.metadata:
        nb.metadata["widgets"] = executed.metadata["widgets"]
    return nb


def deck_stamp(name: str, run: dict, local_reveal: bool) -> dict:
    """What a deck depends on: its notebook, its run, and the code and template that render it."""
    renderer = [Path(decks.__file__)] + sorted((decks.NOTEBOOKS / decks.TEMPLATE).rglob("*.*"))
    return {**run, "notebook_sha256": _sha256((NOTEBOOKS / name).read_bytes()), "local_reveal": local_reveal,
            "renderer_sha256": _sha256(*(p.read_bytes() for p in renderer))}


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_text(path: Path, text: str) -> None:
    from patchcore_core.util.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def build_paths(cache: Path) -> dict[str, str]:
    """Paths of this machine that a deck must not print, and what it prints instead."""
    import tempfile

    return {str(cache): "$PATCHCORE_CACHE", str(NOTEBOOKS.parent): ".", str(Path(sys.prefix)): "<python>",
            str(Path(tempfile.gettempdir())): "<tmp>", str(Path.home()): "~"}


@contextlib.contextmanager
def heartbeat(what: str, every_s: float = 30.0):
    """Print "still running" every ``every_s`` while the block runs: a long notebook shows progress."""
    done = threading.Event()
    t0 = time.perf_counter()

    def beat():
        while not done.wait(every_s):
            print(f"      {what}: still running, {time.perf_counter() - t0:.0f} s", flush=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def keep_executed(name: str, nb, out: Path, fast: bool, cache: Path) -> None:
    """Keep an executed notebook under ``out/.work/`` for its deck, with what it was run from
    (the test that executes every notebook hands its runs to the deck test this way)."""
    import nbformat

    _write_text(out / ".work" / name, nbformat.writes(nb))
    _write_text(out / ".work" / (name + ".stamp.json"),
                json.dumps({**run_stamp(name, fast), "cache": str(cache)}, indent=1))


def executed_notebook(name: str, out: Path, cache: Path, fast: bool = True, force: bool = False):
    """``(notebook with outputs, seconds or None, the data cache it ran with)``: run now, or the copy
    kept under ``out/.work/`` when its notebook, the package's version and the mode are unchanged."""
    import nbformat

    sys.path.insert(0, str(NOTEBOOKS))
    import run_notebooks

    sys.path.pop(0)
    kept, stamp = out / ".work" / name, _read_stamp(out / ".work" / (name + ".stamp.json")) or {}
    wanted = run_stamp(name, fast)
    if not force and kept.exists() and {k: stamp.get(k) for k in wanted} == wanted:
        return nbformat.read(kept, as_version=4), None, Path(stamp.get("cache", cache))
    with heartbeat(name):
        nb, seconds = run_notebooks.execute(name, cache, fast=fast)
    keep_executed(name, nb, out, fast, cache)
    return nb, seconds, cache


def write_slides(names: list[str], out: Path = BUILD / "slides", fast: bool = True, force: bool = False,
                 pdf: bool = True, cache: Path | None = None) -> list[Path]:
    """A deck per notebook (``out/NN_name.slides.html``, and its ``.pdf`` when chromium and Playwright
    are here), rebuilt only when its notebook, the package's version or the deck's renderer changed.
    The notebooks run in a kernel whose data cache is ``cache`` (default: ``out/.work/cache``, kept between
    builds: the built-in data and notebook 05's results are written once)."""
    import nbformat

    cache = cache or out / ".work" / "cache"
    local = has_local_reveal(out)
    written, to_print, failed = [], [], []
    t_all = time.perf_counter()
    for k, name in enumerate(names, 1):
        deck = out / name.replace(".ipynb", ".slides.html")
        stamp_path = deck.with_suffix(".stamp.json")
        print(f"[{k}/{len(names)}] {name}", flush=True)
        try:
            nb, seconds, ran_with = executed_notebook(name, out, cache, fast, force)
        except Exception as exc:  # build the other decks, then fail
            failed.append(name)
            print(f"      FAILED: {str(exc).strip().splitlines()[-1][:300]}", flush=True)
            continue
        stamp = deck_stamp(name, run_stamp(name, fast), local)
        ran = "from the run kept in .work/" if seconds is None else f"ran in {seconds:.0f} s"
        if not force and deck.exists() and _read_stamp(stamp_path) == stamp:
            print(f"      {deck}: up to date ({ran})", flush=True)
        else:
            now = nbformat.read(NOTEBOOKS / name, as_version=4)
            _write_text(deck, slides_html(with_outputs(now, nb), local, build_paths(ran_with)))
            _write_text(stamp_path, json.dumps(stamp, indent=1))
            print(f"      {deck}: written ({ran})", flush=True)
        pdf_path = deck.with_suffix(".pdf")
        if pdf and (force or not pdf_path.exists() or pdf_path.stat().st_mtime < deck.stat().st_mtime):
            to_print.append((deck, pdf_path))
        written.append(deck)
    if to_print:
        write_pdfs(to_print, local)
    print(f"{len(written)} decks in {out} ({time.perf_counter() - t_all:.0f} s)", flush=True)
    if failed:
        raise SystemExit(f"no deck for {', '.join(failed)}: the notebook failed (above)")
    if not local:
        print(f"note: the decks load reveal.js from {REVEAL_CDN}; offline they show as one long page. "
              f"`make reveal` puts a local copy in {out / LOCAL_REVEAL}.")
    return written


def write_pdfs(decks_and_pdfs: list[tuple[Path, Path]], local_reveal: bool) -> None:
    """Each deck printed to its PDF with chromium (Playwright), one page per slide; skipped, with a
    note, without chromium, Playwright or a local reveal.js."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("note: no PDFs (Playwright is not installed)")
        return
    if not local_reveal or not Path(CHROMIUM).exists():
        print(f"note: no PDFs ({'no ' + CHROMIUM if local_reveal else 'no local reveal.js: make reveal'})")
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            for deck, pdf in decks_and_pdfs:
                decks.write_pdf(deck, pdf, browser)
                print(f"      {pdf}: written", flush=True)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("edition", choices=["student", "slides"])
    parser.add_argument("only", nargs="*", metavar="NN", help="notebook numbers or names (default: all)")
    parser.add_argument("--out", type=Path, help="output folder (default: build/student or build/slides)")
    parser.add_argument("--full", action="store_true", help="slides: run the full sweeps, not FAST mode")
    parser.add_argument("--force", action="store_true",
                        help="slides: rebuild every deck (after changing the package without a new version)")
    parser.add_argument("--no-pdf", action="store_true", help="slides: no PDF handouts")
    args = parser.parse_args(argv)
    names = _names(args.only)
    if args.edition == "student":
        for path in write_student(names, args.out or BUILD / "student"):
            print(path)
    else:
        write_slides(names, args.out or BUILD / "slides", fast=not args.full, force=args.force,
                     pdf=not args.no_pdf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
