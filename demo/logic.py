"""The demo's work, as plain functions of a model and a file path.

Nothing here knows about Gradio: :mod:`demo.app` wires these functions to
the page, and the tests call them directly. Bad input raises
:class:`UserError` with a message meant for the visitor (no traceback).
Here: reading an image, predicting, the region and heatmap, fitting and
downloads; :mod:`demo.explain` answers "why?", :mod:`demo.models` holds the
model card, the cached default model and the built-in examples.
"""

from __future__ import annotations

import atexit
import copy
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("demo")

# A session may fit on at most this many images (2 CPU cores: ~0.3 s each).
MAX_FIT_IMAGES = 64
# Colour scale of heatmaps, as multiples of the model's threshold: the same
# colour means the same score on every image, and the threshold sits low
# enough that normal texture stays dark.
VMIN_FACTOR, VMAX_FACTOR = 0.5, 2.0
# "Unlike the training images": when more than this share of an image's patches score above
# the threshold (calibrated on held-out good images: almost no good patch reaches it), the image
# as a whole is unlike what the model knows, not a part of it (demo/README.md, "Unfamiliar
# images", for how often it fires on real sets; benchmarks/bench_unfamiliar.py measures it).
UNLIKE_SHARE = 0.5
UNLIKE_WARNING = ("most of this image ({share:.0%} of its patches) is unlike anything in the training "
                  "images: is this the right model?")
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


def path_of(image) -> str:
    if image is None:
        raise UserError("No image yet: upload one or pick an example.")
    if isinstance(image, dict):  # FileData-like dict from an API call
        image = image.get("path")
    return str(image)


def check_image(image):
    """Read ``image`` (a path) with the package's guards; the RGB PIL image."""
    from patchcore_core.util.images import DataError, ImageTooLargeError, read_image

    path = path_of(image)
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
    per_image: bool = False      # colour scale: this map's own min..max instead of the fixed one
    unlike_share: float | None = None  # share of patches above the threshold (see is_unlike)

    @property
    def scale(self) -> tuple[float, float]:
        """(vmin, vmax) of the colour scale: fixed (multiples of the threshold,
        the same for every image) unless ``per_image`` or uncalibrated."""
        if self.threshold and not self.per_image:  # fixed: higher scores take the top colour
            return VMIN_FACTOR * self.threshold, VMAX_FACTOR * self.threshold
        return float(self.anomaly_map.min()), float(self.anomaly_map.max())

    @property
    def reference(self) -> float:
        """What the slider's factor multiplies: the threshold, or (uncalibrated) the map's maximum."""
        return self.threshold if self.threshold else float(self.anomaly_map.max())


def unlike_share(patch_scores, threshold: float | None) -> float | None:
    """The share of patches (0..1) scoring above ``threshold``; None without a threshold."""
    if not threshold or patch_scores is None or np.size(patch_scores) == 0:
        return None
    return float((np.asarray(patch_scores) > threshold).mean())


def is_unlike(share: float | None) -> bool:
    """Does the image as a whole look unlike the training images? (:data:`UNLIKE_SHARE`)"""
    return share is not None and share > UNLIKE_SHARE


def predict(model, image) -> Inspection:
    """Score one image (a path): heatmap, score, normalised score, verdict."""
    path = path_of(image)
    pil = check_image(path)
    pred = model.predict([pil])[0]
    norm = None if pred.normalised_score is None else float(pred.normalised_score)
    return Inspection(path=path, display=model.display(pil), anomaly_map=pred.anomaly_map,
                      score=float(pred.score), normalised_score=norm,
                      verdict=pred.verdict, threshold=model.threshold,
                      unlike_share=unlike_share(pred.patch_scores, model.threshold))


def overlay(insp: Inspection, alpha: float = 0.55) -> np.ndarray:
    """The image with its heatmap blended over it, ``uint8 [224, 224, 3]``."""
    from patchcore_core.util.viz import overlay_heatmap

    vmin, vmax = insp.scale
    return overlay_heatmap(insp.display, insp.anomaly_map, alpha=alpha, vmin=vmin, vmax=vmax)


def mark_patch(image: np.ndarray, box) -> np.ndarray:
    """``image`` with the patch ``box`` (x0, y0, x1, y1) outlined: where the visitor clicked."""
    from patchcore_core.util.viz import draw_box

    return draw_box(image, tuple(int(v) for v in box), BOX_TEST)


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
    # the fixed scale stops at 2x the threshold: scores above it share the top colour (the arrow)
    over = insp.threshold and not insp.per_image and insp.anomaly_map.max() > vmax
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, extend="max" if over else "neither")
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
    text = (f"Image score {insp.score:.1f} is {insp.normalised_score:.2f} x the threshold "
            f"({insp.threshold:.1f}), {side} it: **{insp.verdict}**.")
    if is_unlike(insp.unlike_share):
        text += "  \n**Careful:** " + UNLIKE_WARNING.format(share=insp.unlike_share)
    return text


# ---------------------------------------------------------------------- fit
def fit(images, device: str = "cpu", progress=None, **config):
    """Fit a new model on the visitor's good images (paths).

    Unreadable files are skipped and named. ``progress(fraction, text)`` is
    called while the images are read. Returns ``(model, skipped_messages)``.
    """
    from patchcore_core import PatchCore

    paths = [path_of(p) for p in (images or [])]
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


# Outputs of each kind (batch results, fitted models) kept in the downloads folder; older
# ones are deleted. Gradio copies a returned file into its own cache before the request
# ends, and fits and batches each run one at a time, so a kept file is never one that a
# request still needs (see demo/README.md, "Disk").
KEEP_OUTPUTS = 4


def new_output_folder(kind: str, keep: int = KEEP_OUTPUTS) -> Path:
    """A fresh folder ``<kind>-*`` of :func:`downloads_folder` for one request's
    downloads; the oldest folders of that kind beyond ``keep`` are removed."""
    def age(folder: Path) -> int:
        try:
            return folder.stat().st_mtime_ns
        except OSError:  # removed meanwhile
            return 0

    old = sorted(downloads_folder().glob(f"{kind}-*"), key=age)
    for folder in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=downloads_folder()))


def save_for_download(model, folder=None, name: str = "my_patchcore.safetensors") -> str:
    """Save ``model`` (safetensors, never pickle) to a fresh folder; the path.

    Each call gets its own subfolder of :func:`downloads_folder`, so two
    visitors never share a file; only the newest :data:`KEEP_OUTPUTS` are kept.
    """
    from patchcore_core import save

    folder = Path(folder or new_output_folder("model"))
    # A session's model names its images by their paths in Gradio's temp folder; the
    # file a visitor takes away names them by file name only. (A shallow copy: the
    # session keeps the full paths, which explain() reads its training patches from.)
    shared = copy.copy(model)
    if getattr(model, "train_names", None):
        shared.train_names = [Path(n).name for n in model.train_names]
    save(shared, folder / name)
    return str(folder / name)

