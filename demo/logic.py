"""The demo's work, as plain functions of a model and a file path.

Nothing here knows about Gradio: :mod:`demo.app` wires these functions to
the page, and the tests call them directly. Bad input raises
:class:`UserError` with a message meant for the visitor (no traceback).
"""

from __future__ import annotations

import atexit
import copy
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

log = logging.getLogger("demo")

# A session may fit on at most this many images (2 CPU cores: ~0.3 s each).
MAX_FIT_IMAGES = 64
# Colour scale of heatmaps, as multiples of the model's threshold: the same
# colour means the same score on every image, and the threshold sits low
# enough that normal texture stays dark.
VMIN_FACTOR, VMAX_FACTOR = 0.5, 2.0
REGION_COLOUR = np.array([0, 230, 255], np.uint8)   # cyan: stands out of brick and grass
BOX_TEST, BOX_TRAIN = (0, 230, 255), (80, 255, 80)


class UserError(ValueError):
    """Something the visitor can fix: the message says what and how."""


# ------------------------------------------------------------------ helpers
def _friendly(exc: Exception, path=None) -> str:
    """A DataError's message with the server's temp path replaced by the file's name."""
    msg = str(exc)
    if path is not None:
        msg = msg.replace(str(path), Path(path).name)
    return msg


def _path_of(image) -> str:
    if image is None:
        raise UserError("No image yet: upload one or pick an example.")
    if isinstance(image, dict):  # FileData-like dict from an API call
        image = image.get("path")
    return str(image)


def check_image(image):
    """Read ``image`` (a path) with the package's guards; the RGB PIL image."""
    from patchcore_core.data import DataError, ImageTooLargeError, read_image

    path = _path_of(image)
    try:
        return read_image(path)
    except ImageTooLargeError as exc:  # the library's advice (an environment variable) is the server's
        raise UserError(f"{Path(path).name}: {exc.pixels:,} pixels is over this demo's limit of "
                        f"{exc.limit:,} pixels; make the image smaller and upload it again.") from None
    except DataError as exc:
        raise UserError(_friendly(exc, path)) from None
    except Exception as exc:  # anything PIL throws that the guards don't name
        name = Path(path).name
        raise UserError(f"{name}: could not read this image "
                        f"({type(exc).__name__}: {_friendly(exc, path)})") from None


def describe_model(model, label: str | None = None) -> str:
    """One line saying which model is in use."""
    card = model.summary()
    thr = card.get("threshold")
    thr = f"threshold {thr:.1f}" if thr else "no threshold (fit on 2+ images to calibrate one)"
    name = label or "model"
    return (f"**Model in use:** {name}: {card.get('n_train', '?')} good images, "
            f"memory bank of {card.get('memory_bank_size', '?')} patches, {thr}.")


# ------------------------------------------------------------------ predict
@dataclass
class Inspection:
    """One image's result, kept in the session so the threshold slider
    redraws the region without running the model again."""

    path: str
    display: np.ndarray          # uint8 [224, 224, 3]: the pixels the model saw
    anomaly_map: np.ndarray      # float32 [224, 224], score units
    score: float
    normalised_score: float | None
    verdict: str
    threshold: float | None      # the model's calibrated threshold

    @property
    def scale(self) -> tuple[float, float]:
        """(vmin, vmax) of the colour scale."""
        if self.threshold:
            top = max(VMAX_FACTOR * self.threshold, float(self.anomaly_map.max()))
            return VMIN_FACTOR * self.threshold, top
        return float(self.anomaly_map.min()), float(self.anomaly_map.max())

    @property
    def reference(self) -> float:
        """What the slider's factor multiplies: the threshold, or (uncalibrated) the map's maximum."""
        return self.threshold if self.threshold else float(self.anomaly_map.max())


def predict(model, image) -> Inspection:
    """Score one image (a path): heatmap, score, normalised score, verdict."""
    path = _path_of(image)
    pil = check_image(path)
    pred = model.predict([pil])[0]
    norm = None if pred.normalised_score is None else float(pred.normalised_score)
    return Inspection(path=path, display=model.display(pil), anomaly_map=pred.anomaly_map,
                      score=float(pred.score), normalised_score=norm,
                      verdict=pred.verdict, threshold=model.threshold)


def overlay(insp: Inspection, alpha: float = 0.55) -> np.ndarray:
    """The image with its heatmap blended over it, ``uint8 [224, 224, 3]``."""
    from patchcore_core.viz import overlay_heatmap

    vmin, vmax = insp.scale
    return overlay_heatmap(insp.display, insp.anomaly_map, alpha=alpha, vmin=vmin, vmax=vmax)


def region_mask(insp: Inspection, factor: float = 1.0) -> np.ndarray:
    """Pixels whose anomaly score is above ``factor`` x the reference (the threshold)."""
    return insp.anomaly_map > factor * insp.reference


def region_image(insp: Inspection, factor: float = 1.0) -> tuple[np.ndarray, float]:
    """The image with the predicted defect region tinted and outlined; and
    the share of the image it covers (0..1)."""
    from scipy.ndimage import binary_erosion

    mask = region_mask(insp, factor)
    out = insp.display.astype(np.float32)
    out[mask] = 0.55 * out[mask] + 0.45 * REGION_COLOUR
    edge = mask & ~binary_erosion(mask, iterations=2)
    out[edge] = REGION_COLOUR
    return out.round().astype(np.uint8), float(mask.mean())


def region_text(insp: Inspection, factor: float, share: float) -> str:
    level = factor * insp.reference
    what = f"{factor:.2f} x threshold" if insp.threshold else f"{factor:.2f} x this image's maximum"
    if share == 0:
        return f"No pixel scores above {level:.1f} ({what}): no defect region."
    return f"Region: pixels scoring above {level:.1f} ({what}), {100 * share:.1f}% of the image."


def heatmap_figure(insp: Inspection, factor: float = 1.0):
    """The anomaly map alone, with a colour bar marking the threshold."""
    from matplotlib.figure import Figure

    vmin, vmax = insp.scale
    fig = Figure(figsize=(3.3, 2.9), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(insp.anomaly_map, cmap="inferno", vmin=vmin, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("Anomaly map alone", fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("score (distance to normal)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    if insp.threshold:
        bar.ax.axhline(insp.threshold, color="#00e6ff", lw=2)
        bar.set_label("score (cyan line: threshold)", fontsize=7)
    level = factor * insp.reference
    if insp.anomaly_map.max() > level:
        ax.contour(insp.anomaly_map > level, levels=[0.5], colors=["#00e6ff"], linewidths=1.2)
    return fig


def score_text(insp: Inspection) -> str:
    if insp.normalised_score is None:
        return (f"Image score {insp.score:.1f}. The model has no threshold (it was fit on a single "
                "image), so there is no verdict.")
    side = "above" if insp.normalised_score > 1 else "below"
    return (f"Image score {insp.score:.1f} is {insp.normalised_score:.2f} x the threshold "
            f"({insp.threshold:.1f}), {side} it: **{insp.verdict}**.")


# ------------------------------------------------------------------ explain
@dataclass
class ExplainResult:
    test_image: np.ndarray           # the test image with the patch boxed
    train_image: np.ndarray | None   # the training image with its patch boxed (None: file gone)
    zoom: np.ndarray                 # test patch | nearest normal patch, enlarged
    text: str
    details: dict                    # row, col, distance, train_name, boxes, ...


def explain(model, image, x: float | None = None, y: float | None = None) -> ExplainResult:
    """The nearest normal patch for the patch under pixel (x, y) of the
    224 px model view (the most anomalous patch when x or y is None)."""
    from patchcore_core.viz import draw_box, zoom_box

    path = _path_of(image)
    pil = check_image(path)
    row = col = None
    if x is not None and y is not None:
        row, col = model.pixel_to_patch(float(x), float(y))
    found = model.explain(pil, row, col)
    members = found if isinstance(found, list) else [found]  # an ensemble: one per backbone
    e = members[0]
    test = model.display(pil)
    train = None
    try:
        train = model.display(e.train_name)
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
        parts = [f"{m.config.backbone}: **{Path(x.train_name).name}** (row {x.train_row}, column "
                 f"{x.train_col}), distance {x.distance:.1f}"
                 + (" (above its threshold)" if m.threshold and x.distance > m.threshold else "")
                 for m, x in zip(model.members, members)]
        verdict = " Nearest normal patch per backbone: " + "; ".join(parts) + "."
    elif model.threshold:
        verdict = (" That is above the threshold: no normal patch looks like it."
                   if e.distance > model.threshold else " That is below the threshold: it looks normal.")
    text = (f"For {which}, the closest normal patch in the memory bank comes from training image "
            f"**{Path(e.train_name).name}** (row {e.train_row}, column {e.train_col}); "
            f"distance **{e.distance:.1f}**.{verdict}")
    if train is None:
        text += " (That training image is not available on this machine.)"
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


# ---------------------------------------------------------------------- fit
def fit(images, device: str = "cpu", progress=None, **config):
    """Fit a new model on the visitor's good images (paths).

    Unreadable files are skipped and named. ``progress(fraction, text)`` is
    called while the images are read. Returns ``(model, skipped_messages)``.
    """
    from patchcore_core import PatchCore

    paths = [_path_of(p) for p in (images or [])]
    if not paths:
        raise UserError("Upload at least one good (defect-free) image to fit a model.")
    if len(paths) > MAX_FIT_IMAGES:
        raise UserError(f"{len(paths)} images is more than this demo fits ({MAX_FIT_IMAGES}); "
                        "pick fewer (a dozen is plenty).")
    good, skipped = [], []
    for i, p in enumerate(paths):
        if progress:
            progress(i / len(paths), f"reading {Path(p).name}")
        try:
            check_image(p)
            good.append(p)
        except UserError as exc:
            skipped.append(str(exc))
    if not good:
        raise UserError("None of the files is a readable image: " + "; ".join(skipped))
    model = PatchCore(device=device, **config)
    model.fit(good, names=good, progress=True)
    return model, skipped


_downloads: Path | None = None


def downloads_folder() -> Path:
    """This process's folder for visitors' model files, removed when it exits."""
    global _downloads
    if _downloads is None:
        _downloads = Path(tempfile.mkdtemp(prefix="patchcore-demo-"))
        atexit.register(shutil.rmtree, _downloads, ignore_errors=True)
    return _downloads


def save_for_download(model, folder=None, name: str = "my_patchcore.safetensors") -> str:
    """Save ``model`` (safetensors, never pickle) to a fresh folder; the path.

    Each call gets its own subfolder of :func:`downloads_folder`, so two
    visitors never share a file.
    """
    folder = Path(folder or tempfile.mkdtemp(dir=downloads_folder()))
    # A session's model names its images by their paths in Gradio's temp folder; the
    # file a visitor takes away names them by file name only. (A shallow copy: the
    # session keeps the full paths, which explain() reads its training patches from.)
    shared = copy.copy(model)
    if getattr(model, "train_names", None):
        shared.train_names = [Path(n).name for n in model.train_names]
    shared.save(folder / name)
    return str(folder / name)


# --------------------------------------------------------------- model card
CARD_ROWS = [
    ("backbone", "Backbone (frozen, ImageNet-pretrained)"),
    ("members", "Ensemble members (scores standardised, then averaged)"),
    ("member_summary", "Each member: backbone, memory bank, threshold"),
    ("layers", "Feature layers"),
    ("image_size", "Image size (px, after resize + centre crop)"),
    ("grid", "Patch grid"),
    ("feature_dim", "Stored feature width"),
    ("n_train", "Training images (all good)"),
    ("n_patches", "Patches before the coreset"),
    ("memory_bank_size", "Memory bank size (patches)"),
    ("memory_bank_mb", "Memory bank size (MB)"),
    ("coreset", "Coreset method"),
    ("coreset_ratio", "Coreset ratio"),
    ("threshold", "Threshold (score)"),
    ("fit_seconds", "Fit time (s)"),
    ("predict_seconds_per_image", "Predict time per image (s)"),
    ("device", "Device"),
]


def model_card(model) -> dict:
    """The model's summary as a JSON-friendly dict."""
    card = {}
    summary = model.summary()
    if "member_cards" in summary:  # an ensemble: one line per member in the table
        summary["member_summary"] = [f"{m['backbone']} ({m['memory_bank_size']} patches, threshold "
                                     f"{m['threshold']:.4g})" if m.get("threshold") else m["backbone"]
                                     for m in summary["member_cards"]]
    for k, v in summary.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        card[k] = list(v) if isinstance(v, tuple) else v
    return card


def card_markdown(card: dict, label: str = "") -> str:
    """The card as a Markdown table: the named rows first, then every other setting."""
    from patchcore_core import PatchCoreConfig
    from patchcore_core.tables import markdown_table

    def fmt(v):
        if v is None:
            return "none (fit on 2+ images)"
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list):
            return " x ".join(map(str, v)) if all(isinstance(i, int) for i in v) else ", ".join(map(str, v))
        return str(v)

    rows = []
    for key, name in CARD_ROWS:
        if key in card:
            rows.append({"Setting": name, "Value": fmt(card[key])})
        elif key == "predict_seconds_per_image":
            rows.append({"Setting": name, "Value": "not measured yet: inspect an image"})
    named = {k for k, _ in CARD_ROWS}
    for f in fields(PatchCoreConfig):  # every other setting, as the config names it
        if f.name in card and f.name not in named:
            value = fmt(card[f.name]) if card[f.name] is not None else "default"
            rows.append({"Setting": f"{f.name}: {f.metadata.get('help', '')}", "Value": value})
    return (f"### {label}\n\n" if label else "") + markdown_table(rows)


# ----------------------------------------------------------- default model
def default_model_path(category: str, cache_dir=None) -> Path:
    from patchcore_core.builtin_data import default_cache_dir
    from patchcore_core.serialization import FORMAT_VERSION

    base = Path(cache_dir) if cache_dir else default_cache_dir()
    return base / "demo" / f"builtin-{category}-efficientnet_lite0-v{FORMAT_VERSION}.safetensors"


def load_or_build_default(category: str = "brick", device: str = "auto", cache_dir=None,
                          say=print):
    """The default model: loaded from the cache, or fitted on the built-in
    ``category`` and cached (atomically) for the next start."""
    from patchcore_core import PatchCore
    from patchcore_core.builtin_data import CATEGORIES, builtin_root
    from patchcore_core.data import MVTecCategory
    from patchcore_core.serialization import ModelFileError

    if category not in CATEGORIES:
        raise UserError(f"unknown built-in category {category!r}; choose one of {', '.join(CATEGORIES)}")
    path = default_model_path(category, cache_dir)
    root = builtin_root(cache_dir=cache_dir)
    if path.is_file():
        try:
            model = PatchCore.load(path, device=device)
            if all(os.path.exists(n) for n in model.train_names):
                say(f"loaded the default model from {path}")
                return model
            say(f"{path}: its training images moved; refitting")
        except ModelFileError as exc:
            say(f"{exc}; refitting")
    t0 = time.perf_counter()
    say(f"fitting the default model on the built-in '{category}' images (once; ~10-30 s on a CPU) ...")
    cat = MVTecCategory(root, category)
    model = PatchCore(device=device).fit([str(p) for p in cat.train], progress=False)
    model.save(path)  # temp file + rename: never a half-written model
    say(f"fitted in {time.perf_counter() - t0:.1f} s; cached at {path}")
    return model


def builtin_examples(category: str = "brick", cache_dir=None) -> list[tuple[str, str]]:
    """(path, label) of built-in test images: two good ones and one per defect type."""
    from patchcore_core.builtin_data import builtin_root
    from patchcore_core.data import MVTecCategory

    cat = MVTecCategory(builtin_root(cache_dir=cache_dir), category)
    out, seen = [], {}
    for item in cat.test:
        n = seen.get(item.defect, 0)
        if n < (2 if item.defect == "good" else 1):
            out.append((str(item.path), f"{item.defect} {n + 1}" if item.defect == "good" else item.defect))
            seen[item.defect] = n + 1
    return out
