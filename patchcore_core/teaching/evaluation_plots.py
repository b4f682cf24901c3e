"""Looking at evaluation (notebook 04): per-defect tables, the worst
failures, and a grid of predictions with their heatmaps.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cm, colors

from patchcore_core.util.viz import overlay_heatmap

__all__ = ["per_defect_table", "worst_failures", "plot_predictions"]


def per_defect_table(defects, scores, threshold: float | None) -> list[dict]:
    """One row per defect type (``good`` first): count, score range and the
    share flagged anomalous (score above ``threshold``)."""
    defects, scores = list(defects), np.asarray(scores, dtype=float)
    kinds = sorted(set(defects), key=lambda k: (k != "good", k))
    rows = []
    for kind in kinds:
        s = scores[[d == kind for d in defects]]
        row = {"defect": kind, "n": len(s), "mean score": float(s.mean()),
               "min score": float(s.min()), "max score": float(s.max())}
        if threshold is not None:
            row["flagged"] = float((s > threshold).mean())
        rows.append(row)
    return rows


def worst_failures(labels, scores, threshold: float, n: int = 4) -> list[dict]:
    """The ``n`` images the threshold gets most wrong (or nearly wrong).

    ``margin`` is how far on the wrong side an image is: ``score -
    threshold`` for normal images, ``threshold - score`` for defective
    ones; positive means misclassified. Sorted worst first.
    """
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    margin = np.where(labels == 1, threshold - scores, scores - threshold)
    order = np.argsort(-margin, kind="stable")[:n]
    return [{"index": int(i), "label": int(labels[i]), "score": float(scores[i]),
             "margin": float(margin[i]), "wrong": bool(margin[i] > 0),
             "kind": ("missed defect" if labels[i] else "false alarm") if margin[i] > 0 else
                     ("closest defect" if labels[i] else "closest normal")} for i in order]


def plot_predictions(model, images, predictions, titles=None, ncols: int = 4, vmax=None, masks=None):
    """Grid of images with their anomaly maps overlaid; each titled with
    its score and verdict. One shared colour scale (``vmax``: default the
    largest map value) with a colour bar. ``masks``: ground truth per image
    (``[crop, crop]`` bool, or None), drawn as lime contours."""
    n = len(images)
    nrows = math.ceil(n / ncols)
    vmax = vmax or max(float(p.anomaly_map.max()) for p in predictions)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.5 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        p = predictions[k]
        ax.imshow(overlay_heatmap(model.display(images[k]), p.anomaly_map, 0.5, 0, vmax))
        if masks is not None and masks[k] is not None and np.any(masks[k]):
            ax.contour(masks[k], levels=[0.5], colors="lime", linewidths=1.2)
        head = f"{titles[k]}\n" if titles is not None else ""
        norm = f" ({p.normalised_score:.2f}x thr)" if p.normalised_score is not None else ""
        colour = "crimson" if p.is_anomalous else "black"
        ax.set_title(f"{head}score {p.score:.1f}{norm}\n{p.verdict}", fontsize=11, color=colour)
    fig.colorbar(cm.ScalarMappable(colors.Normalize(0, vmax), "inferno"), ax=axes.ravel().tolist(),
                 fraction=0.02, pad=0.02, label="anomaly map (patch distance)")
    return fig
