"""The metrics of MVTec AD: image AUROC, pixel AUROC, AUPRO and F1-max.

* **image AUROC**: how well image scores rank defective above good images;
* **pixel AUROC**: the same for every pixel of the anomaly maps;
* **AUPRO**: area under the per-region-overlap curve up to 30% false
  positive rate, divided by 0.3 so that a perfect map scores 1. Unlike
  pixel AUROC, every connected defect region counts the same, so small
  defects are not drowned by large ones (Bergmann et al., 2021);
* **F1-max**: the best F1 of image-level decisions over all thresholds.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

__all__ = ["image_auroc", "pixel_auroc", "pro_curve", "aupro", "f1_max", "image_roc"]


def image_auroc(labels, scores) -> float:
    """AUROC of image scores; ``labels`` 1 = defective."""
    return float(roc_auc_score(np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)))


def image_roc(labels, scores):
    """(false positive rates, true positive rates, thresholds) for plotting."""
    return roc_curve(np.asarray(labels, dtype=int), np.asarray(scores, dtype=float))


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC over all pixels: ``masks`` bool ``[N, H, W]``, ``maps`` ``[N, H, W]``."""
    masks = np.asarray(masks, dtype=bool).ravel()
    if masks.all() or not masks.any():
        raise ValueError("pixel AUROC needs both defective and normal pixels")
    return float(roc_auc_score(masks, np.asarray(maps, dtype=np.float32).ravel()))


def pro_curve(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-region-overlap curve: (false positive rates, mean region overlaps).

    Every connected defect region (8-connectivity, per image) weighs the
    same. Lowering the threshold past a pixel of region ``r`` raises that
    region's overlap by ``1 / |r|``, so the mean overlap is a cumulative
    sum over pixels sorted by score: exact, with no threshold grid.
    """
    masks = np.asarray(masks, dtype=bool)
    maps = np.asarray(maps, dtype=np.float32)
    labels = np.zeros(masks.shape, dtype=np.int64)
    n_regions = 0
    for i, m in enumerate(masks):  # regions are per image
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        labels[i] = np.where(lab > 0, lab + n_regions, 0)
        n_regions += n
    if n_regions == 0:
        raise ValueError("PRO needs at least one defect region in the masks")
    labels, scores = labels.ravel(), maps.ravel()
    sizes = np.bincount(labels, minlength=n_regions + 1).astype(np.float64)
    n_normal = sizes[0]
    if n_normal == 0:
        raise ValueError("PRO needs normal pixels for the false positive rate")
    weight = np.where(labels > 0, 1.0 / (sizes[labels] * n_regions), 0.0)
    order = np.argsort(-scores, kind="stable")
    pro = np.cumsum(weight[order])
    fpr = np.cumsum(labels[order] == 0) / n_normal
    # One point per distinct threshold: the last pixel of each run of equal scores.
    s = scores[order]
    last = np.r_[s[1:] != s[:-1], True]
    return np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]


def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, ``fpr_limit``], normalised to [0, 1]."""
    fpr, pro = pro_curve(masks, maps)
    cut = np.searchsorted(fpr, fpr_limit, side="right")
    x, y = fpr[:cut], pro[:cut]
    if cut < len(fpr) and x[-1] < fpr_limit:  # interpolate the curve at the limit
        x0, x1, y0, y1 = fpr[cut - 1], fpr[cut], pro[cut - 1], pro[cut]
        x = np.r_[x, fpr_limit]
        y = np.r_[y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)]
    return float(np.trapezoid(y, x) / fpr_limit)


def f1_max(labels, scores) -> float:
    """Best F1 over all thresholds of the image scores."""
    precision, recall, _ = precision_recall_curve(np.asarray(labels, dtype=int),
                                                  np.asarray(scores, dtype=float))
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())
