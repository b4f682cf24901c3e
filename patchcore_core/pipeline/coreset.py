"""Coreset subsampling of the memory bank (Section 3.2, Algorithm 1).

The greedy k-center coreset picks, again and again, the point farthest
from everything picked so far. After ``k`` picks every point lies within
the *covering radius* of some pick, so the coreset covers the bank with
few points; random subsampling leaves rare (but normal) patches out.

As in the paper, distances are approximated on a random projection of
the features to 128 dimensions (Johnson-Lindenstrauss), and the first
pick is the point farthest on average from a few random starting points.

Speed. The plain loop (:func:`reference_greedy_coreset`) updates every
point's distance after every pick: ``N x k`` matrix-vector work, bound by
reading all projected features once per pick. :func:`greedy_coreset`
makes the same picks (up to exact ties) but reads far less per pick: it
works on the ``N/16`` points currently farthest from the coreset (the
only ones that can be picked while they stay above the rest, since
distances only shrink), and brings the other points up to date now and
then in large matrix-matrix products, which a CPU runs many times faster
per number than matrix-vector products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .memory_bank import knn_search

__all__ = ["CORESET_METHODS", "CoresetResult", "coreset_size", "random_projection", "greedy_coreset",
           "reference_greedy_coreset", "random_coreset", "covering_radius"]

# How the memory bank is subsampled: the paper's greedy k-center, its random
# baseline, or the full bank.
CORESET_METHODS = ("greedy", "random", "none")


@dataclass
class CoresetResult:
    """``indices``: ``[k]`` chosen rows, in pick order.
    ``radii``: ``[k]`` covering radius (in the space the picks were made in)
    after each pick; never increases. Empty for random subsampling."""

    indices: torch.Tensor
    radii: torch.Tensor


def coreset_size(n: int, ratio: float | None = None, count: int | None = None) -> int:
    """Number of points to keep: ``count``, or ``ratio`` of ``n`` (at least 1)."""
    if count is not None:
        if not 1 <= count:
            raise ValueError(f"coreset count must be at least 1, not {count}")
        return min(int(count), n)
    if ratio is None or not 0 < ratio <= 1:
        raise ValueError(f"coreset ratio must be in (0, 1], not {ratio}")
    return max(1, min(n, int(round(n * ratio))))


def random_projection(features: torch.Tensor, dim: int = 128, seed: int = 0) -> torch.Tensor:
    """Project ``[N, D]`` to ``[N, dim]`` with a Gaussian matrix scaled to keep
    distances in expectation. Features no wider than ``dim`` are returned as is
    (float64 stays float64, e.g. the 2-D toy; anything else becomes float32)."""
    if features.shape[1] <= dim:
        return features if features.dtype == torch.float64 else features.float()
    g = torch.Generator().manual_seed(seed)
    matrix = torch.randn(features.shape[1], dim, generator=g) / math.sqrt(dim)
    return features.float() @ matrix.to(features.device)


def _first_pick(x: torch.Tensor, n_starts: int, seed: int) -> int:
    """The point farthest on average from ``n_starts`` random points."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randperm(len(x), generator=g)[: max(1, n_starts)].to(x.device)
    return int(torch.cdist(x, x[starts]).mean(dim=1).argmax())


def reference_greedy_coreset(features: torch.Tensor, n: int, projection_dim: int = 128,
                             n_starts: int = 10, seed: int = 0, first: int | None = None) -> CoresetResult:
    """The plain greedy k-center loop: one pass over all points per pick.

    Kept as the readable definition, and as the baseline for tests and
    benchmarks. Same picks as :func:`greedy_coreset`. ``first`` fixes the
    first pick (default: the point farthest on average from ``n_starts``
    random points).
    """
    x = random_projection(features, projection_dim, seed)
    idx = _first_pick(x, n_starts, seed) if first is None else int(first)
    min_dist = torch.linalg.vector_norm(x - x[idx], dim=1)  # distance to nearest pick
    min_dist[idx] = -1.0  # picked: never again
    picks, radii = [idx], [float(min_dist.max())]
    for _ in range(1, n):
        idx = int(min_dist.argmax())  # the farthest point becomes a centre
        min_dist = torch.minimum(min_dist, torch.linalg.vector_norm(x - x[idx], dim=1))
        min_dist[idx] = -1.0
        picks.append(idx)
        radii.append(float(min_dist.max()))
    return CoresetResult(torch.tensor(picks, device=features.device), torch.tensor(radii, dtype=x.dtype))


def _sq_dist(x: torch.Tensor, sq: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
    """``||x - c||^2 = |x|^2 - 2 x.c + |c|^2`` for every row: one matrix-vector product."""
    return torch.addmv(sq, x, c, alpha=-2.0).add_(c_sq).clamp_(min=0)


def _catch_up(min_d2: torch.Tensor, rows: torch.Tensor, x, sq, centres, centres_sq,
              budget: int = 1 << 24) -> None:
    """Lower ``min_d2[rows]`` by the distances to ``centres`` (matrix products, chunked)."""
    step = max(1, budget // max(1, len(centres)))
    for start in range(0, len(rows), step):
        r = rows[start:start + step]
        d2 = torch.addmm(centres_sq[None], x[r], centres.T, alpha=-2.0).add_(sq[r, None])
        min_d2[r] = torch.minimum(min_d2[r], d2.amin(dim=1).clamp_(min=0))


def greedy_coreset(features: torch.Tensor, ratio: float | None = 0.1, count: int | None = None,
                   projection_dim: int = 128, n_starts: int = 10, seed: int = 0,
                   progress: bool = False, active: int | None = None) -> CoresetResult:
    """Approximate greedy k-center coreset (the paper's Algorithm 1).

    Args:
        features: ``[N, D]`` memory bank, on any device (work stays there).
        ratio: fraction of ``N`` to keep, in (0, 1]; or give ``count``.
        projection_dim: random projection width for the distances (128).
        n_starts: random points that choose the first pick.
        seed: same seed, same coreset.
        active: size of the working set (default: ``N/16``, at least 4096).

    Returns:
        :class:`CoresetResult` with ``k`` unique indices and the covering
        radius after each pick.
    """
    k = coreset_size(len(features), ratio, count)
    x = random_projection(features, projection_dim, seed)
    x = x - x.mean(dim=0)  # centred: smaller |x|^2, less rounding in the expansion
    sq = (x * x).sum(dim=1)
    n = len(x)
    n_active = min(n, active or max(4096, n // 16))

    first = _first_pick(x, n_starts, seed)
    min_d2 = _sq_dist(x, sq, x[first], sq[first])  # squared distance to the nearest pick
    min_d2[first] = -1.0                             # picked: never again
    centres = torch.empty(k, x.shape[1], device=x.device)
    centres_sq = torch.empty(k, device=x.device)
    centres[0], centres_sq[0] = x[first], sq[first]
    picks, radii, t, synced = [first], [], 1, 1
    bar = tqdm(total=k, initial=1, desc="coreset", disable=not progress, mininterval=1.0)
    while t < k:
        # Working set: the n_active points farthest from the coreset. Every
        # other point is at most `level` away, and distances only shrink.
        if n_active < n:
            top = torch.topk(min_d2, n_active + 1)
            level, rows = top.values[-1], top.indices[:n_active]
        else:
            level, rows = min_d2.new_tensor(-2.0), torch.arange(n, device=x.device)
        xa, sqa, da = x[rows], sq[rows], min_d2[rows]
        while t < k:
            r2, j = da.max(dim=0)  # the farthest point becomes the next centre ...
            if r2 < level:         # ... unless a point outside the set may be farther now
                break
            radii.append(r2)
            idx = int(rows[j])
            centres[t], centres_sq[t] = x[idx], sq[idx]
            torch.minimum(da, _sq_dist(xa, sqa, x[idx], sq[idx]), out=da)
            da[j] = -1.0
            picks.append(idx)
            t += 1
            bar.update()
        # Bring everyone up to date: the set's exact values, and the others
        # against this round's centres in a few large matrix products.
        min_d2[rows] = da
        outside = torch.ones(n, dtype=torch.bool, device=x.device)
        outside[rows] = False
        _catch_up(min_d2, outside.nonzero()[:, 0], x, sq, centres[synced:t], centres_sq[synced:t])
        synced = t
    bar.close()
    radii.append(min_d2.max())
    return CoresetResult(torch.tensor(picks, device=features.device),
                         torch.stack(radii).clamp_(min=0).sqrt_().cpu())


def random_coreset(features: torch.Tensor, ratio: float | None = 0.1, count: int | None = None,
                   seed: int = 0) -> CoresetResult:
    """Random subsampling: the baseline the paper compares against."""
    k = coreset_size(len(features), ratio, count)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(features), generator=g)[:k].to(features.device)
    return CoresetResult(idx, torch.empty(0))


def covering_radius(features: torch.Tensor, indices: torch.Tensor) -> float:
    """Largest distance from any point to its nearest chosen point (exact; float64 stays float64)."""
    if not features.is_floating_point():
        features = features.float()
    nearest, _ = knn_search(features, features[indices], k=1, backend="torch")
    return float(nearest.max())
