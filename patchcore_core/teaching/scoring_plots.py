"""Looking at scoring (notebook 03): Eq. 7 term by term, the anomaly map
step by step, and the nearest normal patch that explains a score.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from patchcore_core.pipeline.scoring import anomaly_map, reweighted_image_scores
from patchcore_core.util.viz import draw_box, zoom_box

from .patch_features import one_backbone, upsample_nearest

__all__ = ["eq7_breakdown", "map_stages", "plot_explanation"]


def eq7_breakdown(model, image, b: int = 3) -> dict:
    """The paper's Eq. 7 for one image, every quantity named.

    The terms come from :func:`~patchcore_core.pipeline.scoring.reweighted_image_scores`
    itself (the formula is written once). Returns a dict: ``row``/``col`` of
    the most anomalous patch ``m^test,*``, ``s_star`` (its distance to the
    nearest bank patch ``m*``), ``m_star`` (bank row), ``neighbours``
    (``N_b(m*)``, ``m*`` first), ``distances`` (from ``m^test,*`` to each of
    them), ``softmax`` (``exp d / sum exp d``), ``weight`` (``1 - softmax[0]``)
    and ``score`` (``weight * s_star``).
    """
    model = one_backbone(model, "eq7_breakdown (Eq. 7 reweights with one memory bank)")
    feats = model.extract([image])[0]  # [h, w, D]
    h, w, d = feats.shape
    flat = feats.reshape(-1, d)
    dist, idx = model.bank.search(flat, k=1)
    score, terms = reweighted_image_scores(flat[None], dist[:, 0][None], idx[:, 0][None], model.bank, b,
                                           return_terms=True)
    i = int(terms["patch"][0])
    return {"row": i // w, "col": i % w, "s_star": float(terms["s_star"][0]),
            "m_star": int(terms["m_star"][0]), "neighbours": terms["neighbours"][0].tolist(),
            "distances": terms["distances"][0].tolist(), "softmax": terms["softmax"][0].tolist(),
            "weight": float(terms["weight"][0]), "score": float(score[0])}


def map_stages(patch_scores, size: int = 224, sigma: float = 4.0) -> dict:
    """From ``[h, w]`` patch scores to the anomaly map, one step at a time:
    ``patch`` (as is), ``nearest`` (each patch a block), ``bilinear``
    (interpolated) and ``smoothed`` (bilinear + Gaussian ``sigma``)."""
    p = torch.as_tensor(np.asarray(patch_scores), dtype=torch.float32)
    return {"patch": p.numpy(),
            "nearest": upsample_nearest(p.numpy(), size),
            "bilinear": anomaly_map(p[None], size, 0.0)[0].numpy(),
            "smoothed": anomaly_map(p[None], size, sigma)[0].numpy()}


def _train_display(model, index: int) -> np.ndarray:
    name = model.train_names[index]
    if Path(name).is_file():
        return model.display(name)
    size = model.config.image_size
    return np.full((size, size, 3), 128, dtype=np.uint8)  # fitted from in-memory images


def plot_explanation(model, image, row: int | None = None, col: int | None = None, vmax=None):
    """Figure: the test image with its anomaly map and the chosen patch, and
    the training image holding the nearest normal patch (both boxed, and
    zoomed). ``row``/``col`` default to the most anomalous patch."""
    ex = model.explain(image, row, col)
    pred = model.predict([image])[0]
    test = model.display(image)
    train = _train_display(model, ex.train_index)

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    im = axes[0].imshow(pred.anomaly_map, cmap="inferno", vmin=0, vmax=vmax)
    axes[0].imshow(draw_box(test, ex.box, (0, 255, 0)), alpha=0.55)
    label = "patch distance" if len(model.members) == 1 else "combined score (exp of the mean z)"
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04, label=label)
    axes[0].set_title(f"test patch ({ex.row}, {ex.col}): score {ex.distance:.1f}")
    axes[1].imshow(zoom_box(test, ex.box, pad=16))
    axes[1].set_title("test patch, zoomed")
    axes[2].imshow(draw_box(train, ex.train_box, (0, 200, 255)))
    axes[2].set_title(f"nearest normal: {Path(ex.train_name).name}\npatch ({ex.train_row}, {ex.train_col})")
    axes[3].imshow(zoom_box(train, ex.train_box, pad=16))
    axes[3].set_title("nearest normal patch, zoomed")
    for ax in axes:
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    fig.tight_layout()
    return fig
