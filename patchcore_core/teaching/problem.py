"""Looking at the problem before any model (notebook 00): a few good and
defective images of a category, each defect's ground truth drawn as a
contour, in a grid with no empty cells.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from patchcore_core.util.images import read_image, read_mask

__all__ = ["overview_items", "plot_overview"]


def overview_items(cat, per_defect: int = 2, max_good: int = 6, widths=(6, 5, 4)) -> tuple[list, int]:
    """A few test items of ``cat`` (an :class:`~patchcore_core.data.mvtec.MVTecCategory`)
    to show: at most ``per_defect`` of each defect type, then good ones.

    The number of good images (at least 2 when there are, at most ``max_good``)
    is chosen so that the items fill whole rows of one of the ``widths``
    (tried in order), so a figure of them has no empty band. Returns
    ``(items, ncols)``: good images first, then the defects by type.
    """
    defects = []
    for kind in cat.defects:
        defects += [t for t in cat.test if t.defect == kind][:per_defect]
    good = [t for t in cat.test if not t.is_anomalous]
    lowest, highest = min(2, len(good)), min(max_good, len(good))
    if lowest + len(defects) <= widths[0]:  # one row
        n_good = max(lowest, min(highest, widths[0] - len(defects)))
        return good[:n_good] + defects, n_good + len(defects)
    for ncols in widths:
        for n_good in range(lowest, highest + 1):
            if (n_good + len(defects)) % ncols == 0:
                return good[:n_good] + defects, ncols
    # No width fits exactly (too few good images): the fewest empty cells.
    total = lowest + len(defects)
    return good[:lowest] + defects, min(widths, key=lambda c: (-total % c, -c))


def plot_overview(items, ncols: int, size: float = 3.0, title: str | None = None):
    """Each item as it is on disk (no model, no resizing), its ground truth
    as a lime contour, titled with its type (good in blue, defects in red)."""
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.5) * nrows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, items):
        img = np.asarray(read_image(item.path))
        ax.imshow(img)
        if item.mask_path is not None:
            mask = read_mask(item.mask_path)
            if mask.any():
                ax.contour(mask, levels=[0.5], colors="lime", linewidths=1.5)
        h, w = img.shape[:2]
        colour = "tab:blue" if not item.is_anomalous else "crimson"
        ax.set_title(f"{item.defect}  ({w}x{h})", fontsize=11, color=colour)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig
