"""Where :meth:`~patchcore_core.PatchCore.fit` runs its heavy steps.

:class:`LocalWork` runs them here, in this process. Its three methods are the
only hooks through which other layers change that:
:class:`patchcore_core.cluster.RayCluster` spreads them over machines and
:class:`patchcore_core.ext.composable.MeasuredWork` also measures the bank's
covering radius. PatchCore itself knows nothing of either.
"""

from __future__ import annotations

import time

import torch

from .config import PatchCoreConfig
from .coreset import greedy_coreset
from .memory_bank import MemoryBank

__all__ = ["LocalWork"]


class LocalWork:
    """Fit's heavy steps, run here: features, the greedy coreset, the bank's index."""

    def extract(self, model, images: list, progress: bool) -> tuple[torch.Tensor, list[int]]:
        """Training images -> (``[N, h, w, D]`` compact features, channels per layer)."""
        feats = model.extract(images, "features", progress)
        return feats, model.embedding.channels

    def greedy_coreset(self, features: torch.Tensor, ratio: float, projection_dim: int, seed: int,
                       progress: bool) -> torch.Tensor:
        """Indices of the rows of ``features`` that the greedy coreset keeps (Sec. 3.2)."""
        return greedy_coreset(features, ratio, projection_dim=projection_dim, seed=seed,
                              progress=progress).indices

    def finish_bank(self, bank: MemoryBank, features: torch.Tensor, config: PatchCoreConfig):
        """The final bank, ready to search, and figures for the model's stats.
        ``features``: every training patch ``[N*h*w, D]``."""
        t0 = time.perf_counter()
        bank.build_index()  # an approximate index is trained now, so that it is saved with the model
        return bank, {"index_seconds": round(time.perf_counter() - t0, 3)}
