"""Where should the threshold go? A labelled set scored once, then read at
any threshold without running the model again. No Gradio here.

:func:`score_set` runs the model (the slow part) and keeps what every
threshold needs: scores, labels and small overlays. :func:`at_threshold`,
the figures and :func:`mistakes` only read that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .logic import UserError, check_image

# A session keeps one 224 px overlay per image (150 kB each): 240 images is ~36 MB.
MAX_SET_IMAGES = 240
GOOD_COLOUR, BAD_COLOUR, THR_COLOUR, CAL_COLOUR = "#3b82f6", "#f97316", "#111827", "#16a34a"


@dataclass
class LabelledSet:
    """A labelled set scored by one model: everything a threshold needs."""

    names: list[str]                 # file names (shown), e.g. "hole/003.png"
    defects: list[str]               # "good" or the defect type
    scores: np.ndarray               # float [N]
    calibrated: float | None         # the model's own threshold (from good images only)
    source: str                      # what was scored, for the page
    overlays: list[np.ndarray] = field(repr=False, default_factory=list)  # uint8 [224, 224, 3] each
    skipped: list[str] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([d != "good" for d in self.defects], dtype=int)


def labelled_items(folder: Path) -> list[tuple[Path, str]]:
    """(image, defect) of a folder in the MVTec layout: ``<...>/test/<defect>/*.png``
    (``good`` for normal images). The ``test`` folder may sit at any depth
    up to three (a zip of ``bottle/`` or of ``bottle/test/``'s parent)."""
    from .archives import images_in

    folder = Path(folder)
    tests = sorted(p for p in [folder, *folder.glob("*"), *folder.glob("*/*"), *folder.glob("*/*/*")]
                   if p.is_dir() and p.name == "test")
    if not tests:
        raise UserError("No `test` folder found: a labelled set needs the MVTec layout, "
                        "`test/good/*.png` and `test/<defect>/*.png` (masks in `ground_truth/` are "
                        "optional).")
    test = tests[0]
    parts = [(p, p.relative_to(test).parts) for p in images_in(test)]
    items = [(p, rel[0]) for p, rel in parts if len(rel) == 2]
    defects = {d for _, d in items}
    if "good" not in defects or len(defects) < 2:
        raise UserError(f"The test folder needs good images (`test/good/`) and at least one defect folder; "
                        f"found: {', '.join(sorted(defects)) or 'no images'}.")
    return items


def score_set(model, items: list[tuple[Path, str]], source: str, progress=None) -> LabelledSet:
    """Score every image of ``items`` (path, defect) with ``model``.
    Unreadable files are skipped and named. ``progress(fraction, text)``."""
    from patchcore_core.util.viz import overlay_heatmap

    if len(items) > MAX_SET_IMAGES:
        raise UserError(f"{len(items)} test images is more than this demo scores at once ({MAX_SET_IMAGES}).")
    readable, skipped = [], []
    for path, defect in items:
        try:
            check_image(path)
            readable.append((path, defect))
        except UserError as exc:
            skipped.append(str(exc))
    if not readable:
        raise UserError("None of the test images is readable.")
    scores, overlays = [], []
    thr = model.threshold
    bs = max(1, model.config.batch_size)
    for start in range(0, len(readable), bs):
        if progress:
            progress(start / len(readable), f"scoring images {start + 1}-{min(start + bs, len(readable))} "
                                            f"of {len(readable)}")
        chunk = readable[start:start + bs]
        for (path, _), pred in zip(chunk, model.predict([p for p, _ in chunk])):
            scores.append(pred.score)
            lo, hi = (0.5 * thr, 2.0 * thr) if thr else (None, None)  # the inspect tab's fixed scale
            overlays.append(overlay_heatmap(model.display(path), pred.anomaly_map, 0.55, lo, hi))
    names = [f"{d}/{Path(p).name}" for p, d in readable]
    return LabelledSet(names, [d for _, d in readable], np.asarray(scores, float), thr, source, overlays,
                       skipped)


def at_threshold(s: LabelledSet, threshold: float) -> dict:
    """Image-level decisions at ``threshold`` (score above it: anomalous)."""
    from patchcore_core.evaluation.metrics import image_auroc

    labels, pred = s.labels, s.scores > threshold
    tp, fp = int((pred & (labels == 1)).sum()), int((pred & (labels == 0)).sum())
    fn, tn = int((~pred & (labels == 1)).sum()), int((~pred & (labels == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "image_auroc": image_auroc(labels, s.scores),
        "threshold": float(threshold),
        "calibrated_threshold": s.calibrated,
        "confusion": {"true_positive": tp, "false_positive": fp, "false_negative": fn, "true_negative": tn},
        "precision": precision, "recall": recall, "f1": f1,
        "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
        "n_good": int((labels == 0).sum()), "n_defective": int((labels == 1).sum()),
        "misses": [n for n, y, p in zip(s.names, labels, pred) if y == 1 and not p],
        "false_alarms": [n for n, y, p in zip(s.names, labels, pred) if y == 0 and p],
    }


def slider_range(s: LabelledSet) -> tuple[float, float]:
    """A slider range that holds every score and the calibrated threshold."""
    values = list(s.scores) + ([s.calibrated] if s.calibrated else [])
    lo, hi = min(values), max(values)
    pad = 0.05 * (hi - lo or 1.0)
    return round(max(0.0, lo - pad), 3), round(hi + pad, 3)


def default_threshold(s: LabelledSet) -> float:
    """The model's calibrated threshold, else the midpoint of the score range."""
    return float(s.calibrated) if s.calibrated else float(np.mean(slider_range(s)))


def _mark(ax, s: LabelledSet, threshold: float, vertical: bool = True):
    line = ax.axvline if vertical else ax.axhline
    line(threshold, color=THR_COLOUR, lw=2, label=f"slider {threshold:.2f}")
    if s.calibrated:
        line(s.calibrated, color=CAL_COLOUR, lw=1.5, ls="--", label=f"calibrated {s.calibrated:.2f}")


def distribution_figure(s: LabelledSet, threshold: float):
    """Histograms of good and defective image scores with both thresholds."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 3.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    bins = np.linspace(*slider_range(s), 25)
    ax.hist(s.scores[s.labels == 0], bins, color=GOOD_COLOUR, alpha=0.65, label="good")
    ax.hist(s.scores[s.labels == 1], bins, color=BAD_COLOUR, alpha=0.65, label="defective")
    _mark(ax, s, threshold)
    ax.set_xlabel("image score")
    ax.set_ylabel("images")
    ax.set_title("Scores: right of the line = called anomalous", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def roc_figure(s: LabelledSet, threshold: float):
    """The ROC curve, the slider's operating point and the calibrated one."""
    from matplotlib.figure import Figure

    from patchcore_core.evaluation.metrics import image_roc

    fpr, tpr, _ = image_roc(s.labels, s.scores)
    fig = Figure(figsize=(3.4, 3.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color=BAD_COLOUR, lw=2)
    ax.plot([0, 1], [0, 1], color="#9ca3af", lw=1, ls=":")
    now = at_threshold(s, threshold)
    ax.plot(now["false_positive_rate"], now["recall"], "o", color=THR_COLOUR, ms=9, label="slider")
    if s.calibrated:
        cal = at_threshold(s, s.calibrated)
        ax.plot(cal["false_positive_rate"], cal["recall"], "s", color=CAL_COLOUR, ms=7, mfc="none", mew=2,
                label="calibrated")
    ax.set_xlabel("false alarm rate (good called anomalous)")
    ax.set_ylabel("recall (defects found)")
    ax.set_title(f"ROC, image AUROC {now['image_auroc']:.3f}", fontsize=9)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def confusion_figure(stats: dict):
    """The 2 x 2 confusion matrix at the slider's threshold."""
    from matplotlib.figure import Figure

    c = stats["confusion"]
    cells = np.array([[c["true_negative"], c["false_positive"]], [c["false_negative"], c["true_positive"]]])
    fig = Figure(figsize=(3.0, 3.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(np.array([[1, 0], [0, 1]]), cmap="RdYlGn", vmin=-0.6, vmax=1.6)
    words = [["correct: good", "false alarm"], ["miss", "found"]]
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{cells[i, j]}\n{words[i][j]}", ha="center", va="center", fontsize=10)
    ax.set_xticks([0, 1], ["called normal", "called anomalous"], fontsize=8)
    ax.set_yticks([0, 1], ["good", "defective"], fontsize=8)
    ax.set_title(f"P {stats['precision']:.2f}  R {stats['recall']:.2f}  F1 {stats['f1']:.2f}", fontsize=9)
    return fig


def mistakes(s: LabelledSet, threshold: float) -> list[tuple[np.ndarray, str]]:
    """(overlay, caption) of every miss and false alarm at ``threshold``, the worst first."""
    out = []
    for i, (name, y, score) in enumerate(zip(s.names, s.labels, s.scores)):
        if y == 1 and score <= threshold:
            out.append((threshold - score, s.overlays[i], f"miss: {name} ({score:.2f})"))
        elif y == 0 and score > threshold:
            out.append((score - threshold, s.overlays[i], f"false alarm: {name} ({score:.2f})"))
    return [(img, cap) for _, img, cap in sorted(out, key=lambda t: -t[0])]


def summary_markdown(s: LabelledSet, stats: dict) -> str:
    c = stats["confusion"]
    cal = (f"the model's calibrated threshold is **{s.calibrated:.2f}** (set from good images only)"
           if s.calibrated else "the model has no calibrated threshold")
    source = s.source[:1].upper() + s.source[1:]
    text = (f"**{source}**: {stats['n_good']} good and {stats['n_defective']} defective images; image "
            f"AUROC **{stats['image_auroc']:.3f}**; {cal}. At **{stats['threshold']:.2f}**: "
            f"{c['true_positive']} defects found, {c['false_negative']} missed, {c['false_positive']} "
            f"false alarms; precision {stats['precision']:.2f}, recall {stats['recall']:.2f}, "
            f"F1 {stats['f1']:.2f}.")
    if s.skipped:
        text += "  \nSkipped (unreadable): " + "; ".join(s.skipped)
    return text
