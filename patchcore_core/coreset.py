"""Coreset subsampling of the memory bank (Section 3.2, Algorithm 1).

The greedy k-center coreset picks, again and again, the point farthest
from everything picked so far. After ``k`` picks every point lies within
the *covering radius* of some pick, so the coreset covers the bank with
few points; random subsampling leaves rare (but normal) patches out.

As in the paper, distances are approximated on a random projection of
the features to 128 dimensions (Johnson-Lindenstrauss), and the first
pick is the point farthest on average from a few random starting points.

Speed. The plain loop (:func:`reference_greedy_coreset`) reads every
projected point once per pick: ``N x k`` distances, bound by memory
traffic. :func:`greedy_coreset` makes the same picks (up to exact ties)
with far less reading: each point remembers its nearest pick (its
*owner*), and a new pick ``c`` can only take over points with
``d(c, owner) < 2 d(x, owner)`` (triangle inequality). Once the coreset
has a few hundred points that is a few percent of the bank, so each pick
reads two small vectors per point instead of 128 features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

__all__ = ["CoresetResult", "coreset_size", "random_projection", "greedy_coreset",
           "reference_greedy_coreset", "random_coreset", "covering_radius"]


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
    distances in expectation. Features no wider than ``dim`` are returned as is."""
    if features.shape[1] <= dim:
        return features.float()
    g = torch.Generator().manual_seed(seed)
    matrix = torch.randn(features.shape[1], dim, generator=g) / math.sqrt(dim)
    return features.float() @ matrix.to(features.device)


def _first_pick(x: torch.Tensor, n_starts: int, seed: int) -> int:
    """The point farthest on average from ``n_starts`` random points."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randperm(len(x), generator=g)[: max(1, n_starts)].to(x.device)
    return int(torch.cdist(x, x[starts]).mean(dim=1).argmax())


def reference_greedy_coreset(features: torch.Tensor, n: int, projection_dim: int = 128,
                             n_starts: int = 10, seed: int = 0) -> CoresetResult:
    """The plain greedy k-center loop: one pass over all points per pick.

    Kept as the readable definition, and as the baseline for tests and
    benchmarks. Same picks as :func:`greedy_coreset`.
    """
    x = random_projection(features, projection_dim, seed)
    idx = _first_pick(x, n_starts, seed)
    min_dist = torch.linalg.vector_norm(x - x[idx], dim=1)  # distance to nearest pick
    min_dist[idx] = -1.0  # picked: never again
    picks, radii = [idx], [float(min_dist.max())]
    for _ in range(1, n):
        idx = int(min_dist.argmax())  # the farthest point becomes a centre
        min_dist = torch.minimum(min_dist, torch.linalg.vector_norm(x - x[idx], dim=1))
        min_dist[idx] = -1.0
        picks.append(idx)
        radii.append(float(min_dist.max()))
    return CoresetResult(torch.tensor(picks, device=features.device), torch.tensor(radii))


def greedy_coreset(features: torch.Tensor, ratio: float | None = 0.1, count: int | None = None,
                   projection_dim: int = 128, n_starts: int = 10, seed: int = 0,
                   progress: bool = False) -> CoresetResult:
    """Approximate greedy k-center coreset (the paper's Algorithm 1).

    Args:
        features: ``[N, D]`` memory bank, on any device (work stays there).
        ratio: fraction of ``N`` to keep, in (0, 1]; or give ``count``.
        projection_dim: random projection width for the distances (128).
        n_starts: random points that choose the first pick.
        seed: same seed, same coreset.

    Returns:
        :class:`CoresetResult` with ``k`` unique indices and the covering
        radius after each pick.
    """
    k = coreset_size(len(features), ratio, count)
    x = random_projection(features, projection_dim, seed)
    x = x - x.mean(dim=0)  # centred: smaller |x|^2, less rounding in the expansion below
    sq = (x * x).sum(dim=1)
    n = len(x)

    idx = _first_pick(x, n_starts, seed)
    centres = torch.empty(k, x.shape[1], device=x.device)  # picks so far, projected
    centres_sq = torch.empty(k, device=x.device)
    centres[0], centres_sq[0] = x[idx], sq[idx]
    # ||x - c||^2 = |x|^2 - 2 x.c + |c|^2: a matrix-vector product, no [N, D] temporary.
    min_d2 = torch.addmv(sq, x, x[idx], alpha=-2.0).add_(sq[idx]).clamp_(min=0)
    owner = torch.zeros(n, dtype=torch.long, device=x.device)  # index of each point's nearest pick
    min_d2[idx] = -1.0  # picked: never again
    picks, radii = [idx], []
    for t in tqdm(range(1, k), desc="coreset", disable=not progress, mininterval=1.0):
        r2, i = min_d2.max(dim=0)  # the farthest point becomes the next centre
        radii.append(r2)
        idx = int(i)
        c, c_sq = x[idx], sq[idx]
        # Triangle inequality: if d(c, owner) >= 2 d(x, owner), c cannot be
        # nearer to x than its owner is. Only the other points are computed.
        owner_d2 = torch.addmv(centres_sq[:t], centres[:t], c, alpha=-2.0).add_(c_sq)
        cand = (owner_d2.index_select(0, owner) < 4.0 * min_d2).nonzero()[:, 0]
        d2 = torch.addmv(sq.index_select(0, cand), x.index_select(0, cand), c, alpha=-2.0)
        d2 = d2.add_(c_sq).clamp_(min=0)
        closer = d2 < min_d2.index_select(0, cand)
        moved = cand[closer]
        min_d2[moved] = d2[closer]
        owner[moved] = t
        min_d2[idx] = -1.0
        centres[t], centres_sq[t] = c, c_sq
        picks.append(idx)
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


def covering_radius(features: torch.Tensor, indices: torch.Tensor, chunk: int = 8192) -> float:
    """Largest distance from any point to its nearest chosen point."""
    centres = features[indices].float()
    worst = 0.0
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start:start + chunk].float(), centres).amin(dim=1)
        worst = max(worst, float(d.max()))
    return worst
