"""Turn an executed notebook into a lecture deck: a reveal.js page and its PDF.

What a deck shows, from the notebook's cells (``course_editions.py slides`` builds them):

- text, figures, tables and printed numbers; code only in cells tagged ``show-code`` (a few per deck),
  its long lines wrapped below their own indentation;
- nothing of the exercises' code cells (tags ``exercise``, ``solution``, ``check``), of stderr
  (warnings, progress bars), of prompts (``In [3]:``), or of the build machine's paths;
- a one-row table of many columns (a model card) as rows of (setting, value);
- a widget as the figure and text it drew when the notebook ran (a static picture of its first state);
- a slide for each section (``## `` heading), also where a heading sits inside a cell;
- the title slide: the title, the one-line summary and the objectives ("You will learn"); the rest of
  the first cell becomes that slide's speaker notes;
- speaker notes (reveal's notes view, key ``s``) from Markdown cells tagged ``notes`` (or of slide
  type "Notes"), so the teacher's words live in the notebook's source.

Figures are shrunk in the browser until each slide fits 1280x720 (``deck_template/index.html.j2``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
TEMPLATE = "deck_template"  # a folder beside this file: nbconvert's reveal template, adapted
SOLUTION, EXERCISE, CHECK = "solution", "exercise", "check"
SHOW_CODE, NOTES = "show-code", "notes"
REVEAL_CDN = "https://unpkg.com/reveal.js@4.0.2"  # the version nbconvert's template is written for
LOCAL_REVEAL = "reveal.js"  # a folder beside the decks (make reveal): reveal.js 4.0.2 plus require.js
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
OBJECTIVES = "**You will learn**"


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def _slide_type(cell) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "-")


def _set_slide_type(cell, slide_type: str) -> None:
    cell.metadata.setdefault("slideshow", {})["slide_type"] = slide_type


def widget_outputs(nb, model_id: str, seen: set | None = None) -> list:
    """The outputs a widget drew when the notebook ran: those of each ``Output`` widget inside it
    (``interact`` and ``interactive`` draw into one), from the widget state nbclient stores."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    seen = set() if seen is None else seen
    model = state.get(model_id)
    if model is None or model_id in seen:
        return []
    seen.add(model_id)
    found = list(model["state"].get("outputs", [])) if model.get("model_name") == "OutputModel" else []
    for child in model.get("state", {}).get("children", []):
        found += widget_outputs(nb, str(child).removeprefix("IPY_MODEL_"), seen)
    return found


def _clean_text(text: str, paths: dict[str, str]) -> str:
    for path, shown in paths.items():
        text = text.replace(path, shown)
    return text


WIDE_TABLE = 6  # a one-row Markdown table with more columns is shown as rows of (setting, value)


def one_row_table_as_rows(markdown: str) -> str:
    """A Markdown table of one row and many columns (a model card, say) as a two-column table of its
    (column, value) pairs, which fits a slide's width; any other text as it is."""
    lines = markdown.strip().splitlines()
    if len(lines) != 3 or not all(line.strip().startswith("|") for line in lines):
        return markdown

    def cells(line):
        return [c.strip() for c in line.strip().strip("|").split("|")]

    header, row = cells(lines[0]), cells(lines[2])
    if len(header) <= WIDE_TABLE or len(header) != len(row):
        return markdown
    pairs = list(zip(header, row))
    groups = min(3, -(-len(pairs) // 10))  # side by side, so that about ten rows remain
    n_rows = -(-len(pairs) // groups)
    columns = [pairs[g * n_rows:(g + 1) * n_rows] for g in range(groups)]
    lines = ["| setting | value " * groups + "|", "|---|---" * groups + "|"]
    for i in range(n_rows):
        lines.append("".join(f"| {c[i][0]} | {c[i][1]} " if i < len(c) else "| | " for c in columns) + "|")
    return "\n".join(lines)


def _clean_outputs(nb, outputs: list, paths: dict[str, str]) -> list:
    """The outputs a deck shows: no stderr, a widget replaced by what it drew, no machine paths."""
    import nbformat

    kept = []
    for out in outputs:
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            continue  # warnings, progress bars: not for the audience
        data = out.get("data", {})
        if WIDGET_VIEW in data:
            kept += _clean_outputs(nb, [nbformat.from_dict(o) for o in
                                        widget_outputs(nb, data[WIDGET_VIEW]["model_id"])], paths)
            continue
        out = copy.deepcopy(out)
        if "text" in out:
            out["text"] = _clean_text("".join(out["text"]) if isinstance(out["text"], list) else out["text"],
                                      paths)
        for mime in ("text/plain", "text/html", "text/markdown"):
            if mime in out.get("data", {}):
                value = out["data"][mime]
                out["data"][mime] = _clean_text("".join(value) if isinstance(value, list) else value, paths)
        if "text/markdown" in out.get("data", {}):
            out["data"]["text/markdown"] = one_row_table_as_rows(out["data"]["text/markdown"])
        kept.append(out)
    return kept


def split_title_cell(cell):
    """The first cell as two: the title slide (title, summary, objectives) and its speaker notes
    (whatever follows the objectives' list); ``(cell, None)`` when there is nothing to move."""
    import nbformat

    lines = cell.source.splitlines()
    if OBJECTIVES not in lines:
        return cell, None
    end = lines.index(OBJECTIVES) + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].lstrip().startswith(("- ", "* "))
                                or lines[end].startswith("  ")):
        end += 1
    rest = "\n".join(lines[end:]).strip()
    if not rest:
        return cell, None
    title = copy.deepcopy(cell)
    title.source = "\n".join(lines[:end]).rstrip()
    notes = nbformat.v4.new_markdown_cell(rest, metadata={"slideshow": {"slide_type": "notes"}})
    return title, notes


def split_at_sections(cell) -> list:
    """A Markdown cell cut before each ``## `` heading; each part that opens with one starts a slide
    (a section heading in the middle of a cell would otherwise land at the bottom of a full slide)."""
    import nbformat

    lines = cell.source.splitlines()
    cuts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    if not cuts or _slide_type(cell) == "notes":
        return [cell]
    parts, starts = [], ([0] if cuts[0] else []) + cuts
    for start, end in zip(starts, starts[1:] + [len(lines)]):
        part = copy.deepcopy(cell) if not parts else nbformat.v4.new_markdown_cell(metadata={})
        part.source = "\n".join(lines[start:end]).strip("\n")
        if lines[start].startswith("## "):
            _set_slide_type(part, "slide")
        parts.append(part)
    return parts


def deck_notebook(executed_nb, paths: dict[str, str] | None = None):
    """A copy of an executed notebook as a deck shows it (see the module's docstring).
    ``paths`` maps paths of the build machine to what the deck prints instead."""
    nb = copy.deepcopy(executed_nb)
    paths = dict(sorted((paths or {}).items(), key=lambda kv: -len(kv[0])))  # longest (most specific) first
    cells = []
    for i, cell in enumerate(nb.cells):
        if {EXERCISE, SOLUTION, CHECK} & set(tags(cell)) and cell.cell_type == "code":
            continue
        if SOLUTION in tags(cell):
            continue
        if i == 0 and cell.cell_type == "markdown":
            cell, notes = split_title_cell(cell)
            cells += [cell] + ([notes] if notes else [])
            continue
        if cell.cell_type == "markdown" and NOTES in tags(cell):
            _set_slide_type(cell, "notes")
        if cell.cell_type == "markdown":
            cells += split_at_sections(cell)
            continue
        if cell.cell_type == "code":
            cell.outputs = _clean_outputs(nb, cell.get("outputs", []), paths)
            if SHOW_CODE not in tags(cell):
                cell.metadata["transient"] = {"remove_source": True}
                if not cell.outputs and _slide_type(cell) in ("-", "fragment"):
                    continue  # nothing to show: no empty box on the slide
            else:
                cell.source = _clean_text(cell.source, paths)
        cells.append(cell)
    # The title slide holds the title and the objectives only: what follows starts a slide of its own.
    after_title = next((c for c in cells[1:] if _slide_type(c) not in ("notes", "skip")), None)
    if after_title is not None and _slide_type(after_title) in ("-", "fragment"):
        _set_slide_type(after_title, "slide")
    nb.cells = cells
    nb.metadata.pop("widgets", None)  # its pictures are in the outputs now; no widget manager needed
    return nb


_SPAN = re.compile(r"<span\b[^>]*>|</span>")


def hang_indent(pre_html: str) -> str:
    """The lines of a highlighted ``<pre>`` as blocks whose wrapped parts start below the line's own
    indentation plus four columns (deck.css: ``.code-line``). Spans that cross a line are closed at
    its end and reopened on the next line."""
    lines, open_spans = [], []
    for line in pre_html.removesuffix("\n").split("\n"):
        text = "".join(open_spans) + line
        for tag in _SPAN.findall(line):
            if tag == "</span>":
                if open_spans:
                    open_spans.pop()
            else:
                open_spans.append(tag)
        visible = re.sub(r"<[^>]+>", "", line)
        indent = len(visible) - len(visible.lstrip(" "))
        lines.append(f'<span class="code-line" style="--indent:{indent}ch">{text or " "}'
                     f'{"</span>" * len(open_spans)}</span>')
    return "".join(lines)


def _wrap_code_blocks(html: str) -> str:
    def one(match):
        return match.group(1) + hang_indent(match.group(2)) + match.group(3)

    return re.sub(r'(<div class="highlight[^"]*"><pre>)(.*?)(</pre>)', one, html, flags=re.S)


def slides_html(executed_nb, local_reveal: bool = False, paths: dict[str, str] | None = None) -> str:
    """The reveal.js deck (HTML) of an executed notebook."""
    from nbconvert import SlidesExporter

    # local copies (make reveal) work offline: MathJax too, else Eq. 7 shows as raw TeX
    urls = {"reveal_url_prefix": LOCAL_REVEAL, "require_js_url": f"{LOCAL_REVEAL}/require.js",
            "mathjax_url": f"{LOCAL_REVEAL}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"} \
        if local_reveal else {"reveal_url_prefix": REVEAL_CDN}
    exporter = SlidesExporter(extra_template_basedirs=[str(NOTEBOOKS)], template_name=TEMPLATE,
                              exclude_input_prompt=True, exclude_output_prompt=True, **urls)
    html, _ = exporter.from_notebook_node(deck_notebook(executed_nb, paths))
    return _wrap_code_blocks(html)


def write_pdf(deck: Path, pdf: Path, browser) -> None:
    """``deck`` printed to ``pdf``, one page per slide: reveal.js's ``?print-pdf`` view in chromium
    (a Playwright ``browser``), after each slide's figures were fitted."""
    from patchcore_core.util.atomic import atomic_path

    page = browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        page.goto(deck.resolve().as_uri() + "?print-pdf")
        page.wait_for_selector("body[data-fitted='1']", timeout=60_000)
        with atomic_path(pdf) as tmp:  # the page size is the one reveal.js sets with @page
            page.pdf(path=str(tmp), prefer_css_page_size=True, print_background=True)
    finally:
        page.close()
