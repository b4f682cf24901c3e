"""One table formatter for the CLI (plain text), the notebooks and the demo (Markdown)."""

from __future__ import annotations

import math

__all__ = ["format_value", "format_table", "markdown_table"]


def format_value(v, digits: int = 3) -> str:
    """Numbers to ``digits`` decimals (large ones with thousands separators), NaN/None as n/a."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.{digits}f}"
    return str(v)


def format_table(rows: list[dict], keys: list[str] | None = None, markdown: bool = False,
                 digits: int = 3) -> str:
    """Rows of dicts as a table: aligned plain text, or Markdown (for
    ``IPython.display.Markdown`` and Gradio). ``keys``: the columns (default:
    the first row's keys)."""
    if not rows:
        return "(no rows)"
    keys = list(keys or rows[0])
    cells = [[format_value(r.get(k, ""), digits) for k in keys] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]

    def line(vals):
        return "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))

    return "\n".join([line(keys), line(["-" * w for w in widths])] + [line(c) for c in cells])


def markdown_table(rows: list[dict], keys: list[str] | None = None, digits: int = 3) -> str:
    """:func:`format_table` as Markdown."""
    return format_table(rows, keys, markdown=True, digits=digits)
