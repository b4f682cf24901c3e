"""The paper's two main baselines, on PatchCore's own patch features (notebook 09).

* **SPADE** (Cohen & Hoshen, 2020): first an *image-level* kNN (each test
  image's ``k_images`` nearest training images, by a global feature), which
  gives the image score; then a *pixel-level* kNN of every test patch
  against all patches of those few images only. SPADE's global feature is
  the pooled last layer of a WideResNet; here it is the mean of the patch
  features, so that the three methods share one set of features.
* **PaDiM** (Defard et al., 2021): one Gaussian per patch *position*:
  a mean and a covariance over the training images at that position;
  a test patch's score is its Mahalanobis distance to the Gaussian of its
  own position. PaDiM keeps a random subset of the channels and adds
  ``eps * I`` to each covariance (0.01 in its code) so that it inverts.

Both take ``[N, h, w, D]`` features (``PatchCore.extract``) and return
``(image scores [T], patch scores [T, h, w])``, as PatchCore's scoring does.
"""

from __future__ import annotations

import numpy as np
import torch

from patchcore_core.pipeline.coreset import greedy_coreset
from patchcore_core.pipeline.memory_bank import MemoryBank, knn_search

__all__ = ["patchcore_fit", "patchcore_scores", "spade_scores", "padim_fit", "padim_scores", "padim_nbytes",
           "shifted"]


def patchcore_fit(train: torch.Tensor, ratio: float = 0.1, seed: int = 0) -> MemoryBank:
    """PatchCore's memory bank from the same features: a greedy coreset of
    all training patches (``ratio`` of them)."""
    flat = train.reshape(-1, train.shape[-1])
    idx = greedy_coreset(flat, ratio, seed=seed).indices
    return MemoryBank(flat[idx].contiguous(), torch.zeros(len(idx), 3, dtype=torch.long))


def patchcore_scores(bank: MemoryBank, test: torch.Tensor):
    """PatchCore: each patch's distance to its nearest bank patch, wherever
    in whichever training image that patch came from; the image score is the
    largest (without Eq. 7)."""
    t, h, w, d = test.shape
    dist, _ = bank.search(test.reshape(-1, d), k=1)
    patches = dist[:, 0].view(t, h, w)
    return patches.flatten(1).amax(dim=1), patches


def spade_scores(train: torch.Tensor, test: torch.Tensor, k_images: int = 50, k_patches: int = 1):
    """SPADE: image kNN on mean-pooled features, then patch kNN within the
    ``k_images`` nearest training images. The image score is the mean
    distance to those images; a patch score the mean distance to its
    ``k_patches`` nearest patches among them."""
    n, h, w, d = train.shape
    k_images = min(k_images, n)
    g_train, g_test = train.float().mean(dim=(1, 2)), test.float().mean(dim=(1, 2))
    near_d, near_i = knn_search(g_test, g_train, k_images, backend="torch")  # [T, k_images]
    image = near_d.mean(dim=1)
    patches = []
    for t in range(len(test)):
        gallery = train[near_i[t]].reshape(-1, d).float()      # every patch of the nearest images
        pd, _ = knn_search(test[t].reshape(-1, d).float(), gallery, k_patches)
        patches.append(pd.mean(dim=1).view(h, w))
    return image, torch.stack(patches)


def padim_fit(train: torch.Tensor, dims: int | None = None, eps: float = 0.01, seed: int = 0) -> dict:
    """Per position ``(i, j)``: the mean ``[h, w, d]`` and the inverse of the
    regularised covariance ``[h, w, d, d]`` over the training images, on
    ``dims`` channels drawn at random (all when None).

    With fewer training images than channels a covariance is singular and
    ``eps`` alone decides how far off-sample directions count: PaDiM is
    meant for hundreds of training images.
    """
    n, h, w, d = train.shape
    if n < 2:
        raise ValueError(f"PaDiM needs at least 2 training images for a covariance, got {n}")
    g = torch.Generator().manual_seed(seed)
    channels = torch.randperm(d, generator=g)[:dims].sort().values if dims and dims < d else torch.arange(d)
    x = train[..., channels].double()                         # [N, h, w, d']
    mean = x.mean(dim=0)
    centred = (x - mean).permute(1, 2, 0, 3)                  # [h, w, N, d']
    cov = centred.transpose(-1, -2) @ centred / (n - 1)       # [h, w, d', d']
    cov = cov + eps * torch.eye(len(channels), dtype=cov.dtype)
    return {"mean": mean.float(), "inv_cov": torch.linalg.inv(cov).float(), "channels": channels}


def padim_scores(fitted: dict, test: torch.Tensor):
    """Mahalanobis distance of each test patch to its position's Gaussian;
    the image score is the largest over positions."""
    x = test[..., fitted["channels"]].float() - fitted["mean"]        # [T, h, w, d']
    m2 = torch.einsum("thwi,hwij,thwj->thw", x, fitted["inv_cov"], x)
    patches = m2.clamp_min(0).sqrt()
    return patches.flatten(1).amax(dim=1), patches


def padim_nbytes(fitted: dict) -> int:
    """Memory the fitted Gaussians take (float32): means and inverse covariances."""
    return sum(fitted[k].numel() * 4 for k in ("mean", "inv_cov"))


def shifted(image: np.ndarray, dx: int, dy: int = 0) -> np.ndarray:
    """``image`` moved by ``(dx, dy)`` pixels; the uncovered border is the
    mirror image of the strip beside it (a black or smeared band would
    itself look anomalous)."""
    img = np.asarray(image)
    pad = ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0))) + ((0, 0),) * (img.ndim - 2)
    big = np.pad(img, pad, mode="reflect")
    h, w = img.shape[:2]
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return big[y0:y0 + h, x0:x0 + w].copy()
