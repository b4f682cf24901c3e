"""Many images at once: a table of scores, a CSV file and a zip of overlays.
No Gradio here.

A file that cannot be read gets its own row saying why; the others are
scored all the same, in batches (as fast as the model goes).
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

from PIL import Image

from .logic import Inspection, UserError, check_image, new_output_folder, overlay

MAX_BATCH_IMAGES = 200
COLUMNS = ["file", "score", "score / threshold", "verdict"]


def score_batch(model, items: list[tuple[str, str]], progress=None) -> tuple[list[dict], dict]:
    """Score ``items`` (shown name, path). Returns (rows, overlays by name).

    Each row has :data:`COLUMNS`; an unreadable file's verdict is
    ``error: <why>`` and its score is None. ``progress(fraction, text)``.
    """
    if not items:
        raise UserError("Upload images (or a zip of images) to score.")
    if len(items) > MAX_BATCH_IMAGES:
        raise UserError(f"{len(items)} images is more than this demo scores at once ({MAX_BATCH_IMAGES}).")
    rows: dict[int, dict] = {}
    readable = []
    for i, (name, path) in enumerate(items):
        try:
            check_image(path)
            readable.append((i, name, path))
        except UserError as exc:
            rows[i] = {"file": name, "score": None, "score / threshold": None, "verdict": f"error: {exc}"}
    overlays = {}
    bs = max(1, model.config.batch_size)
    for start in range(0, len(readable), bs):
        chunk = readable[start:start + bs]
        if progress:
            progress(start / max(1, len(readable)),
                     f"scoring {start + 1}-{start + len(chunk)} of {len(readable)}")
        try:
            preds = model.predict([p for _, _, p in chunk])
        except Exception:  # one file the guards let through but the model cannot take: go one by one
            preds = None
        for k, (i, name, path) in enumerate(chunk):
            try:
                pred = preds[k] if preds is not None else model.predict([path])[0]
            except Exception as exc:
                rows[i] = {"file": name, "score": None, "score / threshold": None,
                           "verdict": f"error: could not score this image ({type(exc).__name__})"}
                continue
            norm = None if pred.normalised_score is None else round(float(pred.normalised_score), 3)
            rows[i] = {"file": name, "score": round(float(pred.score), 3), "score / threshold": norm,
                       "verdict": pred.verdict}
            insp = Inspection(path, model.display(path), pred.anomaly_map, float(pred.score), norm,
                              pred.verdict, model.threshold)
            overlays[name] = overlay(insp)
    return [rows[i] for i in range(len(items))], overlays


def unique_names(paths: list[str]) -> list[str]:
    """Shown names for uploaded files: their file names, made unique (``a.png``, ``a (2).png``)."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        name = Path(p).name
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{Path(name).stem} ({seen[name]}){Path(name).suffix}"
        out.append(name)
    return out


# A text cell starting with one of these is run as a formula by spreadsheets (CSV injection):
# an upload named "=HYPERLINK(...).png" would be one. OWASP: prefix such a cell with a quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """``value`` as written to the CSV: numbers as numbers (-1.5 stays a number),
    text that a spreadsheet would take for a formula behind a single quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_outputs(rows: list[dict], overlays: dict) -> tuple[str, str]:
    """(CSV path, zip path) in a fresh folder of the downloads folder."""
    folder = new_output_folder("batch")  # the oldest batches' files go
    csv_path = folder / "scores.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    zip_path = folder / "overlays.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for name, img in overlays.items():
            png = folder / "overlay.png"
            Image.fromarray(img).save(png)
            zf.write(png, f"overlays/{Path(name).with_suffix('')}.png")
            png.unlink()
    return str(csv_path), str(zip_path)


def summary_text(rows: list[dict], threshold: float | None) -> str:
    bad = sum(r["verdict"] == "anomalous" for r in rows)
    err = sum(str(r["verdict"]).startswith("error") for r in rows)
    text = f"**{len(rows)} files**: {bad} anomalous, {len(rows) - bad - err} normal"
    if threshold is None:
        text = f"**{len(rows)} files** scored; the model has no threshold, so no verdicts"
    if err:
        text += f", {err} could not be read (marked `error` in the table)"
    return text + ". Click a column header to sort."
