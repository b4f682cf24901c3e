"""Why an image scored as it did: the nearest normal patch of the memory bank.

A plain function of a model and a file path, like :mod:`demo.logic`
(whose input checks it shares); no Gradio here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .logic import BOX_TEST, BOX_TRAIN, check_image, log, path_of
from .numbers import check_number


@dataclass
class ExplainResult:
    test_image: np.ndarray           # the test image with the patch boxed
    train_image: np.ndarray | None   # the training image with its patch boxed (None: file gone)
    zoom: np.ndarray                 # test patch | nearest normal patch, enlarged
    text: str
    details: dict                    # row, col, distance, train_name, boxes, ...


def markdown_text(text: str) -> str:
    """``text`` as a Markdown code span: a file name from a model file (untrusted) shows as
    it is and can start no link, image, emphasis or HTML."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


def explain(model, image, x: float | None = None, y: float | None = None,
            find_training_image: Callable[[str], str | None] | None = None) -> ExplainResult:
    """The nearest normal patch for the patch under pixel (x, y) of the
    224 px model view (the most anomalous patch when x or y is None).

    ``find_training_image(name)``: where the training image a model names may
    be read from, or None (then only its name is shown). The demo always passes
    one: a model file is untrusted input (demo/training_images.py). Without it
    the name is opened as it is (a notebook's own model).
    """
    from patchcore_core.util.viz import draw_box, zoom_box

    path = path_of(image)
    pil = check_image(path)
    row = col = None
    if x is not None and y is not None:
        size = model.config.image_size
        x, y = (check_number(v, name, 0, size - 1, f"a pixel of the {size} px view")
                for v, name in ((x, "x"), (y, "y")))
        row, col = model.pixel_to_patch(x, y)
    members = [m.explain(pil, row, col) for m in model.members]  # one per backbone
    e = members[0]
    test = model.display(pil)
    train = None
    source = e.train_name if find_training_image is None else find_training_image(e.train_name)
    try:
        if source is not None:
            train = model.display(source)
    except Exception:  # the training file is not on this machine (a model from elsewhere)
        log.info("training image %s not available", e.train_name)
    gap = np.full((96, 8, 3), 255, np.uint8)
    zoom_test = zoom_box(draw_box(test, e.box, BOX_TEST, width=1), e.box, size=96)
    zoom_train = (zoom_box(draw_box(train, e.train_box, BOX_TRAIN, width=1), e.train_box, size=96)
                  if train is not None
                  else np.full((96, 96, 3), 200, np.uint8))
    zoom = np.concatenate([zoom_test, gap, zoom_train], axis=1)
    which = ("the most anomalous patch" if row is None
             else f"the patch you picked (row {e.row}, column {e.col})")
    verdict = ""
    if len(members) > 1:  # distances of different backbones: each against its own member's threshold
        parts = [f"{m.config.backbone}: **{markdown_text(Path(x.train_name).name)}** "
                 f"(row {x.train_row}, column {x.train_col}), distance {x.distance:.1f}"
                 + (" (above its threshold)" if m.threshold and x.distance > m.threshold else "")
                 for m, x in zip(model.members, members)]
        verdict = " Nearest normal patch per backbone: " + "; ".join(parts) + "."
    elif model.threshold:
        verdict = (" That is above the threshold: no normal patch looks like it."
                   if e.distance > model.threshold else " That is below the threshold: it looks normal.")
    text = (f"For {which}, the closest normal patch in the memory bank comes from training image "
            f"**{markdown_text(Path(e.train_name).name)}** (row {e.train_row}, column {e.train_col}); "
            f"distance **{e.distance:.1f}**.{verdict}")
    if train is None:
        text += " (That training image is not available to this demo, so only its name is shown.)"
    # the training file's name only: its folder is the server's business (a cache, Gradio's temp files)
    details = {"row": e.row, "col": e.col, "distance": e.distance, "bank_index": e.bank_index,
               "train_index": e.train_index, "train_name": Path(e.train_name).name, "train_row": e.train_row,
               "train_col": e.train_col, "box": list(e.box), "train_box": list(e.train_box)}
    if len(members) > 1:
        details["members"] = [{"backbone": m.config.backbone, "distance": x.distance,
                               "train_name": Path(x.train_name).name, "train_row": x.train_row,
                               "train_col": x.train_col} for m, x in zip(model.members, members)]
    return ExplainResult(draw_box(test, e.box, BOX_TEST),
                         None if train is None else draw_box(train, e.train_box, BOX_TRAIN),
                         zoom, text, details)
