"""Composable greedy k-center coresets: the memory bank reduced shard by shard.

The single-machine greedy coreset (:func:`~patchcore_core.pipeline.coreset.greedy_coreset`)
costs ``N x k`` distance updates, and all ``N`` features must sit in one
memory. The composable scheme splits the bank into shards (one per
machine), runs the same greedy k-center on each shard, and then one more
greedy pass over the union of the shards' picks:

1. shard ``s`` keeps ``k_s`` centres; every point of the shard is within the
   shard's radius ``r_s`` of one of them;
2. the merge picks ``k`` centres among the union; every shard centre is
   within the merge radius ``r_m`` of one of those.

By the triangle inequality every point is then within ``max_s r_s + r_m``
of the final picks. With ``k_s = k`` (the textbook choice, the default)
each ``r_s`` is at most twice the best possible radius for ``k`` centres
over all points, and so is ``r_m``: a constant-factor guarantee. The shards
run in parallel and never see each other's points; only the picks travel.

Everything here is plain torch: it runs without Ray. ``map_fn`` lets a
caller (:mod:`patchcore_core.cluster`) run the shards elsewhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from patchcore_core.pipeline.coreset import coreset_size, greedy_coreset
from patchcore_core.pipeline.memory_bank import exact_index, knn_search
from patchcore_core.pipeline.work import LocalWork

__all__ = ["ComposableResult", "shard_rows", "shard_pick_count", "shard_greedy",
           "composable_greedy_coreset", "covering_radius_faiss", "MeasuredWork"]


@dataclass
class ComposableResult:
    """``indices``: ``[k]`` chosen rows of the whole bank (the merge's pick order).
    ``shard_picks``: per shard, the global rows it proposed.
    ``shard_radii``: per shard, its covering radius over its own points (projected space).
    ``merge_radius``: how far the union's points are from the final picks (projected space)."""

    indices: torch.Tensor
    shard_picks: list[torch.Tensor]
    shard_radii: list[float]
    merge_radius: float

    @property
    def radius_bound(self) -> float:
        """``max_s r_s + r_m``: no point is farther than this from the final picks (projected space)."""
        return max(self.shard_radii) + self.merge_radius


def shard_rows(n: int, n_shards: int) -> list[torch.Tensor]:
    """Row indices of ``n_shards`` contiguous, nearly equal shards of ``n`` rows
    (contiguous: a shard is then whole training images, as one worker extracted them)."""
    if not 1 <= n_shards <= n:
        raise ValueError(f"n_shards must be between 1 and the number of rows ({n}), not {n_shards}")
    return list(torch.tensor_split(torch.arange(n), n_shards))


def shard_pick_count(k: int, shard_size: int, n_shards: int, oversample: float | None = None) -> int:
    """Centres one shard proposes: ``k`` (textbook; the guarantee holds), or
    ``oversample * k / n_shards`` (cheaper merge on many shards, no guarantee);
    never more than the shard holds."""
    if oversample is None:
        return min(k, shard_size)
    if oversample <= 0:
        raise ValueError(f"oversample must be > 0, not {oversample}")
    return max(1, min(shard_size, math.ceil(oversample * k / n_shards)))


def shard_greedy(features: torch.Tensor, count: int, projection_dim: int = 128,
                 seed: int = 0) -> tuple[torch.Tensor, float]:
    """One shard's step: greedy k-center on its rows -> (local indices, its covering radius).

    The same ``seed`` on every shard means the same random projection, so the
    shards and the merge measure distances in one space."""
    run = greedy_coreset(features, count=count, projection_dim=projection_dim, seed=seed)
    return run.indices.cpu(), float(run.radii[-1])


def composable_greedy_coreset(features: torch.Tensor, n_shards: int, ratio: float | None = 0.1,
                              count: int | None = None, projection_dim: int = 128, seed: int = 0,
                              oversample: float | None = None,
                              map_fn: Callable | None = None) -> ComposableResult:
    """Greedy k-center per shard, then greedy over the union of the picks.

    Args:
        features: ``[N, D]`` memory bank (all shards, contiguous).
        n_shards: how many shards (machines); 1 gives the single-machine coreset.
        ratio, count: final size ``k``, as in :func:`~patchcore_core.pipeline.coreset.greedy_coreset`.
        oversample: centres per shard = ``oversample * k / n_shards`` instead of ``k``.
        map_fn: ``map_fn(shard_greedy, [(features_s, count_s, projection_dim, seed), ...])``
            returning each shard's ``(local indices, radius)``; default: one after another here.

    Returns:
        :class:`ComposableResult`.
    """
    k = coreset_size(len(features), ratio, count)
    rows = shard_rows(len(features), n_shards)
    jobs = [(features[r], shard_pick_count(k, len(r), n_shards, oversample), projection_dim, seed)
            for r in rows]
    if map_fn is None:
        answers = [shard_greedy(*job) for job in jobs]
    else:
        answers = list(map_fn(shard_greedy, jobs))
    shard_picks = [r[local.long().cpu()] for r, (local, _) in zip(rows, answers)]
    union = torch.cat(shard_picks)
    merge = greedy_coreset(features[union.to(features.device)], count=min(k, len(union)),
                           projection_dim=projection_dim, seed=seed)
    return ComposableResult(union[merge.indices.cpu()], shard_picks, [r for _, r in answers],
                            float(merge.radii[-1]))


def covering_radius_faiss(points: torch.Tensor, centres: torch.Tensor, batch: int = 65536) -> float:
    """Largest distance from any of ``points`` to its nearest row of ``centres``
    (exact, faiss flat index; same value as :func:`~patchcore_core.pipeline.coreset.covering_radius`
    up to float32 rounding, many times faster on large banks)."""
    index = exact_index(centres)
    return max(float(knn_search(points[start:start + batch], centres, 1, index=index)[0].max())
               for start in range(0, len(points), batch))


class MeasuredWork(LocalWork):
    """A local fit that also reports the bank's covering radius over every training
    patch (``stats["covering_radius"]``, exact, faiss); costs about one more coreset."""

    def finish_bank(self, bank, features: torch.Tensor, config):
        t0 = time.perf_counter()
        radius = covering_radius_faiss(features, bank.features)
        seconds = round(time.perf_counter() - t0, 3)  # a measurement, not part of the fit
        bank, stats = super().finish_bank(bank, features, config)
        return bank, {**stats, "covering_radius": radius, "radius_seconds": seconds}
