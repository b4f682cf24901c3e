"""Looking at the memory bank and its coreset (notebook 02): sizes, covering
radii, a coreset trial on precomputed features, 2-D embeddings.

The 2-D toy of the same algorithm is :mod:`.toy`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.decomposition import PCA

from patchcore_core.evaluation.metrics import image_auroc
from patchcore_core.pipeline.coreset import covering_radius, greedy_coreset, random_coreset, random_projection
from patchcore_core.pipeline.memory_bank import MemoryBank
from patchcore_core.pipeline.scoring import image_scores

__all__ = ["bank_footprint", "radius_curves", "coreset_trial", "defect_patches", "embed_2d",
           "projection_distortion"]


def bank_footprint(n_images: int, grid: tuple[int, int], dim: int, bytes_per_value: int = 4) -> dict:
    """Size of the full memory bank: every patch of every training image."""
    patches = n_images * grid[0] * grid[1]
    return {"patches": patches, "dim": dim, "megabytes": patches * dim * bytes_per_value / 2**20}


def radius_curves(features: torch.Tensor, counts, seed: int = 0, projection_dim: int = 128) -> dict:
    """Covering radius (in the full feature space) of greedy and random
    coresets of each size in ``counts``.

    Greedy picks are nested (the first ``k`` of a longer run are the run
    for ``k``), so one run of ``max(counts)`` serves every size.
    """
    counts = sorted(int(c) for c in counts)
    greedy = greedy_coreset(features, count=counts[-1], projection_dim=projection_dim, seed=seed).indices
    rand = random_coreset(features, count=counts[-1], seed=seed).indices
    return {"counts": counts,
            "greedy": [covering_radius(features, greedy[:c]) for c in counts],
            "random": [covering_radius(features, rand[:c]) for c in counts]}


def coreset_trial(train_features: torch.Tensor, test_features: torch.Tensor, labels, ratio: float,
                  method: str = "greedy", seed: int = 0) -> dict:
    """Build a bank from precomputed features and score the test set with it
    (the logic of notebook 02's coreset slider; no backbone runs).

    Args:
        train_features: ``[..., D]`` training patch features (all patches).
        test_features: ``[T, h, w, D]`` test patch features.
        labels: ``[T]`` 1 = defective.
        ratio: share of training patches kept; ``method``: greedy | random.

    Returns:
        dict with ``size``, ``megabytes``, ``covering_radius`` (full
        feature space), ``image_auroc``, ``scores`` and ``seconds`` (coreset
        selection time).
    """
    flat = train_features.reshape(-1, train_features.shape[-1])
    t0 = time.perf_counter()
    if method == "greedy":
        idx = greedy_coreset(flat, ratio, seed=seed).indices
    elif method == "random":
        idx = random_coreset(flat, ratio, seed=seed).indices
    else:
        raise ValueError(f"method must be 'greedy' or 'random', not {method!r}")
    seconds = time.perf_counter() - t0
    bank = MemoryBank(flat[idx].contiguous(), torch.zeros(len(idx), 3, dtype=torch.long))
    t = test_features
    dist, _ = bank.search(t.reshape(-1, t.shape[-1]), k=1)
    scores = image_scores(dist[:, 0].view(t.shape[0], -1)).numpy()
    labels = np.asarray(labels, dtype=int)
    both = 0 < labels.sum() < len(labels)
    return {"size": len(idx), "megabytes": bank.nbytes / 2**20,
            "covering_radius": covering_radius(flat, idx),
            "image_auroc": image_auroc(labels, scores) if both else float("nan"),
            "scores": scores, "seconds": seconds}


def defect_patches(mask: np.ndarray, grid: tuple[int, int], min_fraction: float = 0.3) -> np.ndarray:
    """``bool [h, w]``: patches whose pixels are at least ``min_fraction`` defective."""
    m = torch.as_tensor(np.asarray(mask), dtype=torch.float32)[None, None]
    frac = torch.nn.functional.adaptive_avg_pool2d(m, grid)[0, 0].numpy()
    return frac >= min_fraction


def embed_2d(features, method: str = "umap", seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """``[N, D]`` -> ``[N, 2]`` with UMAP (``umap-learn``), or PCA (``method="pca"``,
    also the fallback when umap-learn is not installed)."""
    x = np.asarray(torch.as_tensor(features).float().cpu())
    if method == "umap":
        try:
            import umap
        except ImportError:
            method = "pca"
        else:
            return umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, random_state=seed).fit_transform(x)
    if method != "pca":
        raise ValueError(f"method must be 'umap' or 'pca', not {method!r}")

    return PCA(n_components=2, svd_solver="full").fit_transform(x)


def projection_distortion(features: torch.Tensor, dims=(128, 32, 16), n_pairs: int = 5000,
                          seed: int = 0) -> dict:
    """How much a random projection (:func:`~patchcore_core.pipeline.coreset.random_projection`)
    changes distances: for ``n_pairs`` random pairs of rows, the ratio
    ``||P x - P y|| / ||x - y||`` for each target width in ``dims``.

    Johnson-Lindenstrauss: the ratio concentrates around 1 with a spread of
    about ``1 / sqrt(2 dim)``, whatever the original width. Returns
    ``{dim: ratios [n_pairs]}`` (pairs of identical rows are left out).
    A width at or above the features' own is returned unprojected (ratio 1).
    """
    x = torch.as_tensor(features).reshape(-1, features.shape[-1]).float()
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(len(x), (2, n_pairs), generator=g)
    keep = torch.linalg.vector_norm(x[a] - x[b], dim=1) > 0
    a, b = a[keep], b[keep]
    rows = torch.unique(torch.cat([a, b]))  # project only the rows used
    where = torch.full((len(x),), -1, dtype=torch.long)
    where[rows] = torch.arange(len(rows))
    original = torch.linalg.vector_norm(x[a] - x[b], dim=1)
    out = {}
    for dim in dims:
        p = random_projection(x[rows], int(dim), seed)
        out[int(dim)] = (torch.linalg.vector_norm(p[where[a]] - p[where[b]], dim=1) / original).numpy()
    return out
