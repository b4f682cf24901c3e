"""The "Batch" tab: many images (or zips of images) -> a table, a CSV file
and a zip of overlays (``/batch``)."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import gradio as gr

from . import archives, batch
from .logic import downloads_folder
from .ui import PageContext, failure, starting
from .uploads import files_input


def expand(paths: list[str], workdir) -> list[tuple[str, str]]:
    """(shown name, path) of every image: uploaded files as they are, zips
    unpacked into ``workdir`` (each member named ``<zip>/<member>``); all the
    zips of one request together unpack to at most ``archives.MAX_UNPACKED_BYTES``.
    The caller removes ``workdir``, whatever fails."""
    items, unpacked = [], 0
    for name, path in zip(batch.unique_names(paths), paths):
        if Path(path).suffix.lower() == ".zip" and zipfile.is_zipfile(path):
            folder = archives.extract_zip(path, max_bytes=archives.MAX_UNPACKED_BYTES, into=workdir,
                                          already=unpacked)
            unpacked += archives.unpacked_bytes(folder)
            items += [(f"{name}/{p.relative_to(folder).as_posix()}", str(p))
                      for p in archives.images_in(folder)]
        else:
            items.append((name, path))  # not an image? its row says so
    return items


def build(ctx: PageContext, session: gr.State) -> None:
    """The tab and its event; call inside ``gr.Blocks`` and ``gr.Tabs``."""

    def do_batch(files, session_value, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        # what this request unpacks lives in one folder that goes when it ends, whatever fails
        with tempfile.TemporaryDirectory(prefix="unpacked-", dir=downloads_folder(),
                                         ignore_cleanup_errors=True) as workdir:
            try:
                model, label = ctx.active(session_value)
                progress(0, desc="unpacking")
                items = expand(files or [], workdir)
                rows, overlays = batch.score_batch(model, items, progress=lambda f, t: progress(f, desc=t))
                progress(0.98, desc="writing the CSV and the overlays")
                csv_path, zip_path = batch.write_outputs(rows, overlays)
                table = [[r[c] for c in batch.COLUMNS] for r in rows]
                summary = f"{batch.summary_text(rows, model.threshold)} Model: {label}."
                return table, csv_path, zip_path, summary
            except Exception as exc:
                return [], None, None, failure(exc)

    with gr.Tab("Batch", id="batch"):
        gr.Markdown("### Many images at once\nUpload images, or zips of images, and score them all with the "
                    "model in use. A file that cannot be read gets its own row; the others are scored.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=260):
                files = files_input(ctx.uploads, elem_id="batch-files", height=160,
                                    label=f"Images or zips (up to {batch.MAX_BATCH_IMAGES} images)")
                run = gr.Button("Score them all", variant="primary", elem_id="batch-run")
                summary = gr.Markdown(elem_id="batch-summary", label="batch summary")
                csv_out = gr.File(label="Table (CSV)", interactive=False, elem_id="batch-csv")
                zip_out = gr.File(label="Overlays (zip of PNGs)", interactive=False, elem_id="batch-zip")
            with gr.Column(scale=7):
                table = gr.Dataframe(headers=batch.COLUMNS, datatype=["str", "number", "number", "str"],
                                     interactive=False, wrap=True, elem_id="batch-table", label="Scores",
                                     max_height=420, column_widths=["30%", "19%", "23%", "28%"])
    run.click(starting("Scoring..."), None, summary, queue=False, api_visibility="undocumented",
              ).then(do_batch, [files, session], [table, csv_out, zip_out, summary], api_name="batch",
                     concurrency_id="batch", concurrency_limit=1)

