"""Lecture decks (notebooks/decks.py, course_editions.py slides) without a browser: what a deck keeps
of a notebook, and which decks a build redoes. tests/test_slides_browser.py opens the real decks."""

from __future__ import annotations

import json
import re
import sys

import nbformat
import pytest
from paths import NOTEBOOKS

sys.path.insert(0, str(NOTEBOOKS))
import course_editions  # noqa: E402
import decks  # noqa: E402
import run_notebooks  # noqa: E402

sys.path.pop(0)
v4 = nbformat.v4
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def code(source, outputs=(), tags=(), slide_type=None):
    cell = v4.new_code_cell(source, outputs=list(outputs))
    if tags:
        cell.metadata["tags"] = list(tags)
    if slide_type:
        cell.metadata["slideshow"] = {"slide_type": slide_type}
    return cell


def widget_notebook():
    """A cell whose only output is an ``interactive`` widget: a VBox of a slider and an Output widget
    that holds the figure it drew, as nbclient stores them."""
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# 07 Title"), code(
        "widgets.interactive(show, n=slider)",
        [v4.new_output("execute_result", {"application/vnd.jupyter.widget-view+json": {"model_id": "box"},
                                          "text/plain": "interactive(...)"}, execution_count=11)])])
    nb.metadata["widgets"] = {decks.WIDGET_STATE: {"state": {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
        "slider": {"model_name": "SelectionSliderModel", "state": {}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<Figure>"},
             "metadata": {}},
            {"output_type": "stream", "name": "stdout", "text": "nprobe 4: recall 0.9\n"}]}}}}}
    return nb


def test_a_deck_hides_code_unless_its_cell_is_tagged_show_code():
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("# 00 Title"),
        code("import numpy", slide_type="skip"),
        code("fig = plot()\nassert fig", [v4.new_output("display_data", {"image/png": PNG})]),
        code("model = PatchCore().fit(paths)", [v4.new_output("stream", name="stdout", text="fitted\n")],
             tags=[decks.SHOW_CODE]),
        code("x = 1"),  # no output, code hidden: nothing left to show
    ])
    deck = decks.deck_notebook(nb)
    hidden = [c.metadata.get("transient", {}).get("remove_source", False) for c in deck.cells
              if c.cell_type == "code"]
    assert hidden == [True, True, False]
    html = decks.slides_html(nb)
    body = html[html.index("<main>"):html.index("</main>")]
    text = re.sub(r"<[^>]+>", "", body)
    assert "PatchCore().fit" in text and "assert fig" not in text and "x = 1" not in text
    assert "In&nbsp;[" not in body and "Out[" not in body


def test_a_deck_drops_stderr_and_the_build_machines_paths():
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# 02 Title"), code("umap.UMAP().fit(x)", [
        v4.new_output("stream", name="stderr",
                      text="/work/main/.venv/lib/python3.11/site-packages/umap/umap_.py:1952: UserWarning: "
                           "n_jobs\n"),
        v4.new_output("stream", name="stdout", text="data in /tmp/build-xyz/cache/builtin/brick\n"),
        v4.new_output("display_data", {"text/markdown": "| file |\n|---|\n| /tmp/build-xyz/cache/a.png |"}),
    ])])
    deck = decks.deck_notebook(nb, {"/tmp/build-xyz/cache": "$PATCHCORE_CACHE", "/tmp": "<tmp>"})
    outputs = deck.cells[1].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data"]
    assert outputs[0].text == "data in $PATCHCORE_CACHE/builtin/brick\n"
    assert "$PATCHCORE_CACHE/a.png" in outputs[1].data["text/markdown"]
    html = decks.slides_html(nb, paths={"/tmp/build-xyz/cache": "$PATCHCORE_CACHE"})
    assert "UserWarning" not in html and "/tmp/build-xyz" not in html


def test_a_widget_becomes_the_figure_and_text_it_drew():
    deck = decks.deck_notebook(widget_notebook())
    outputs = deck.cells[-1].outputs
    assert [o.output_type for o in outputs] == ["display_data", "stream"]
    assert outputs[0].data["image/png"] == PNG and "recall 0.9" in outputs[1].text
    assert "widgets" not in deck.metadata
    html = decks.slides_html(widget_notebook())
    assert f"data:image/png;base64,{PNG}" in html and "Out[11]" not in html


def test_the_title_slide_keeps_the_objectives_and_moves_the_rest_into_speaker_notes():
    first = nbformat.read(NOTEBOOKS / "00_quickstart.ipynb", as_version=4).cells[0]
    title, notes = decks.split_title_cell(first)
    assert title.source.startswith("# 00")
    assert title.source.rstrip().endswith("which notebook explains which step of the paper")
    assert decks.OBJECTIVES in title.source and "Everything runs on a laptop" not in title.source
    assert notes.source.startswith("Everything runs on a laptop")
    assert notes.metadata["slideshow"]["slide_type"] == "notes"
    html = decks.slides_html(nbformat.read(NOTEBOOKS / "00_quickstart.ipynb", as_version=4))
    assert '<aside class="notes">' in html


def test_cells_tagged_notes_are_speaker_notes():
    notes = v4.new_markdown_cell("Ask the class where the threshold comes from.")
    notes.metadata["tags"] = [decks.NOTES]
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# 01 Title"), v4.new_markdown_cell("## A slide"),
                                notes])
    html = decks.slides_html(nb)
    aside = html[html.index('<aside class="notes">'):]
    assert "Ask the class" in aside[:aside.index("</aside>")]


def test_wrapped_code_lines_keep_their_indentation():
    pre = ('<span class="k">def</span> <span class="nf">f</span>():\n'
           '    <span class="s2">"""a docstring\n    over two lines"""</span>\n'
           '        <span class="n">x</span> = 1\n\nend')
    html = decks.hang_indent(pre)
    lines = html.split('<span class="code-line"')[1:]
    assert [line.split('"')[1] for line in lines] == ["--indent:0ch", "--indent:4ch", "--indent:4ch",
                                                      "--indent:8ch", "--indent:0ch", "--indent:0ch"]
    assert html.count("<span") == html.count("</span>"), "a string across lines is closed and reopened"
    assert "\n" not in html, "each line is a block of its own"


@pytest.fixture
def tiny_course(tmp_path, monkeypatch):
    """Two notebooks in a folder of their own; running one counts the run and prints a number."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("00_a.ipynb", "01_b.ipynb"):
        nbformat.write(v4.new_notebook(cells=[v4.new_markdown_cell(f"# {name}"), code("print(1)")]),
                       folder / name)
    runs = []

    def execute(name, cache, fast=True):
        runs.append(name)
        nb = nbformat.read(folder / name, as_version=4)
        nb.cells[1].outputs = [v4.new_output("stream", name="stdout", text=f"run {len(runs)}\n")]
        return nb, 0.1

    monkeypatch.setattr(course_editions, "NOTEBOOKS", folder)
    monkeypatch.setattr(run_notebooks, "execute", execute)
    return folder, runs


def test_a_build_redoes_only_the_decks_whose_notebook_changed(tiny_course, tmp_path, capsys):
    folder, runs = tiny_course
    out = tmp_path / "slides"
    names = ["00_a.ipynb", "01_b.ipynb"]
    course_editions.write_slides(names, out, pdf=False)
    assert runs == names
    first = {n: (out / n.replace(".ipynb", ".slides.html")).read_text() for n in names}
    stamp = json.loads((out / "00_a.slides.stamp.json").read_text())
    assert stamp["package_version"] and stamp["notebook_sha256"] and stamp["code_sha256"]
    course_editions.write_slides(names, out, pdf=False)
    assert runs == names, "nothing changed: nothing runs again"
    assert "up to date" in capsys.readouterr().out
    nb = nbformat.read(folder / "01_b.ipynb", as_version=4)
    nb.cells[0].source += " edited"  # text only: the deck is redone from the outputs kept
    nbformat.write(nb, folder / "01_b.ipynb")
    course_editions.write_slides(names, out, pdf=False)
    assert runs == names
    assert (out / "00_a.slides.html").read_text() == first["00_a.ipynb"]
    assert "edited" in (out / "01_b.slides.html").read_text() and "run 2" in first["01_b.ipynb"]
    nb.cells[1].source = "print(2)"  # code: the notebook runs again
    nbformat.write(nb, folder / "01_b.ipynb")
    course_editions.write_slides(names, out, pdf=False)
    assert runs == names + ["01_b.ipynb"] and "run 3" in (out / "01_b.slides.html").read_text()
    assert (out / "00_a.slides.html").read_text() == first["00_a.ipynb"]
    course_editions.write_slides(names[:1], out, pdf=False, force=True)
    assert runs[-1] == "00_a.ipynb"


def test_a_new_package_version_reruns_the_notebooks(tiny_course, tmp_path, monkeypatch):
    import patchcore_core

    folder, runs = tiny_course
    course_editions.write_slides(["00_a.ipynb"], tmp_path / "slides", pdf=False)
    monkeypatch.setattr(patchcore_core, "__version__", patchcore_core.__version__ + ".post1")
    course_editions.write_slides(["00_a.ipynb"], tmp_path / "slides", pdf=False)
    assert runs == ["00_a.ipynb"] * 2


def test_a_failing_notebook_does_not_stop_the_other_decks(tiny_course, tmp_path, monkeypatch, capsys):
    folder, runs = tiny_course
    ok = run_notebooks.execute

    def execute(name, cache, fast=True):
        if name == "00_a.ipynb":
            raise RuntimeError("a cell raised\nValueError: broken notebook")
        return ok(name, cache, fast)

    monkeypatch.setattr(run_notebooks, "execute", execute)
    with pytest.raises(SystemExit, match="no deck for 00_a.ipynb"):
        course_editions.write_slides(["00_a.ipynb", "01_b.ipynb"], tmp_path / "slides", pdf=False)
    assert "FAILED: ValueError: broken notebook" in capsys.readouterr().out
    assert (tmp_path / "slides" / "01_b.slides.html").exists()
    assert not (tmp_path / "slides" / "00_a.slides.html").exists()


def test_a_wide_one_row_table_is_shown_as_rows_of_settings():
    keys = [f"k{i}" for i in range(25)]
    values = [str(i) for i in range(25)]
    wide = "| " + " | ".join(keys) + " |\n|" + "---|" * 25 + "\n| " + " | ".join(values) + " |"
    rows = decks.one_row_table_as_rows(wide).splitlines()
    assert rows[0] == "| setting | value | setting | value | setting | value |"
    assert len(rows) == 2 + 9 and rows[2].startswith("| k0 | 0 | k9 | 9 | k18 | 18 |")
    narrow = "| a | b |\n|---|---|\n| 1 | 2 |"
    assert decks.one_row_table_as_rows(narrow) == narrow
    two_rows = "| " + " | ".join(keys) + " |\n|" + "---|" * 25 + "\n| x |\n| y |"
    assert decks.one_row_table_as_rows(two_rows) == two_rows


def test_the_title_slide_holds_the_title_and_the_objectives_only():
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("# 04 Evaluation\n\n> One line.\n\n**You will learn**\n\n- a\n- b"),
        code("import os", slide_type="skip"),
        v4.new_markdown_cell("`evaluate_category` fits and scores."),
        code("res = evaluate()", [v4.new_output("stream", name="stdout", text="AUROC 1.0\n")])])
    deck = decks.deck_notebook(nb)
    assert deck.cells[2].metadata["slideshow"]["slide_type"] == "slide"
    html = decks.slides_html(nb)
    first = html[html.index("<section"):html.index("</section>")]
    assert "You will learn" in first and "evaluate_category" not in first
