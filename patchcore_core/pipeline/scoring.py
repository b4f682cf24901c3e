"""From nearest-neighbour distances to scores and heatmaps (Section 3.3).

* patch score ``s_i = min_{m in M} ||m_i^test - m||_2`` (L2, not squared);
* image score ``s* = max_i s_i``, optionally reweighted (Eq. 7) by how
  isolated the nearest bank patch ``m*`` is among its ``b`` neighbours;
* anomaly map: patch scores upsampled (bilinear) to the input size and
  smoothed with a Gaussian of ``sigma = 4`` pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from .memory_bank import MemoryBank

__all__ = ["UPSAMPLE_MODES", "image_scores", "reweighted_image_scores", "anomaly_map"]

UPSAMPLE_MODES = ("bilinear", "nearest")  # see anomaly_map


def image_scores(patch_scores: torch.Tensor) -> torch.Tensor:
    """``s* = max_i s_i``: ``[B, H, W]`` (or ``[B, N]``) -> ``[B]``."""
    return patch_scores.flatten(1).amax(dim=1)


def reweighted_image_scores(patch_features: torch.Tensor, patch_scores: torch.Tensor,
                            nearest: torch.Tensor, bank: MemoryBank, b: int, return_terms: bool = False):
    """The paper's Eq. 7 for a batch of images, as one tensor computation.

    ``s = (1 - exp ||m^test,* - m*|| / sum_{m in N_b(m*)} exp ||m^test,* - m||) * s*``

    ``m*`` is the nearest bank patch, so its distance is the smallest in the
    softmax and the weight lies in ``[1 - 1/b, 1)``: a score whose ``m*`` is
    isolated (its neighbours far from the test patch) keeps nearly all of
    ``s*``; one whose ``m*`` sits in a dense neighbourhood is discounted
    towards ``(1 - 1/b) s*``.

    Args:
        patch_features: ``[B, N, D]`` the images' patches ``m^test``.
        patch_scores: ``[B, N]`` their distances ``s_i``.
        nearest: ``[B, N]`` index of each patch's nearest bank row.
        bank: the memory bank ``M``.
        b: neighbourhood size of ``m*`` (``N_b`` includes ``m*`` itself).
        return_terms: also return every intermediate term, named.

    Returns:
        ``[B]`` reweighted image scores; with ``return_terms``, also a dict of
        ``[B]`` / ``[B, b]`` tensors: ``patch`` (index of ``m^test,*``),
        ``s_star``, ``m_star``, ``neighbours``, ``distances``, ``softmax``, ``weight``.
    """
    rows = torch.arange(len(patch_scores), device=patch_scores.device)
    i = patch_scores.argmax(dim=1)                           # m^test,*: each image's most anomalous patch
    s_star = patch_scores[rows, i]                           # s*
    m_test = patch_features[rows, i]                         # [B, D]
    m_star = nearest[rows, i]                                # bank row of m*, its nearest normal patch
    feats = bank.features
    _, support = bank.search(feats[m_star.to(feats.device)].to(m_test), k=b)  # N_b(m*), m* first
    neighbours = feats[support.to(feats.device)].to(m_test)  # [B, b, D]
    dists = torch.linalg.vector_norm(neighbours - m_test[:, None], dim=2)
    soft = torch.softmax(dists, dim=1)
    weight = 1.0 - soft[:, 0]                                # 1 - exp(d(m*)) / sum exp(d(N_b))
    scores = weight * s_star
    if not return_terms:
        return scores
    return scores, {"patch": i, "s_star": s_star, "m_star": m_star, "neighbours": support,
                    "distances": dists, "softmax": soft, "weight": weight}


def anomaly_map(patch_scores: torch.Tensor, size: int | tuple[int, int], sigma: float = 4.0,
                upsample: str = "bilinear") -> torch.Tensor:
    """Upsample ``[B, h, w]`` patch scores to ``size`` and smooth them.

    Returns ``[B, H, W]``. ``upsample="bilinear"`` as in the paper's code;
    ``"nearest"`` (each patch fills its own cell, as anomalib does) blurs
    less: a little better on grid and hazelnut, a little worse on magnetic
    tile in our measurements (README). The
    Gaussian kernel is truncated at 4 sigma, as
    ``scipy.ndimage.gaussian_filter`` does, with reflected borders.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, not {upsample!r}")
    how = dict(mode="bilinear", align_corners=False) if upsample == "bilinear" else dict(mode="nearest-exact")
    maps = F.interpolate(patch_scores[:, None].float(), size=size, **how)
    if sigma > 0:
        radius = int(4.0 * sigma + 0.5)
        maps = gaussian_blur(maps, kernel_size=2 * radius + 1, sigma=sigma)
    return maps[:, 0]
