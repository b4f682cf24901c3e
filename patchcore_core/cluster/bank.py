"""A memory bank split over Ray actors, each holding a faiss index of its slice.

A query batch goes to every shard; each answers its k nearest rows, and
the smallest distances win. With exact (flat) indexes that is the same
answer as one index over the whole bank: the nearest row of the bank is
the nearest row of the shard it lives in. With an approximate backend
(``ivf_flat``, ``ivf_pq``, ``hnsw``) each shard trains its own index on its
slice, sized to the slice (:func:`~patchcore_core.ext.ann.scaled_params`), so a
shard can miss its nearest row as one approximate index can. A shard whose
actor died is an error naming it, never a search that quietly skips its rows.
"""

from __future__ import annotations

import numpy as np
import torch

from patchcore_core.pipeline.memory_bank import MemoryBank

from .connect import ShardLostError, require_ray

__all__ = ["ShardActor", "ShardedMemoryBank", "merge_shard_answers"]


class ShardActor:
    """One shard: rows ``offset .. offset + len(features)`` of the bank, as a :class:`MemoryBank`
    of the bank's backend (its approximate index trained here, on this slice)."""

    def __init__(self, features: np.ndarray, offset: int, backend: str = "faiss", ann: dict | None = None):
        self.offset = int(offset)
        rows = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        self.bank = MemoryBank(rows, torch.zeros(len(rows), 3, dtype=torch.long), backend, ann)
        self.bank.build_index()  # approximate: trained now; exact: a flat index at the first query

    def search(self, queries: np.ndarray, k: int):
        """Distances ``[Q, k]`` and global bank rows."""
        # a copy: Ray hands the batch over read-only, and torch wants to own writable memory
        d, idx = self.bank.search(torch.from_numpy(np.array(queries, dtype=np.float32)), k)
        return d.numpy(), idx.numpy() + self.offset

    def size(self) -> int:
        return len(self.bank)

    def params(self) -> dict:
        """The slice's resolved index parameters (empty for exact search)."""
        return self.bank.params


def merge_shard_answers(answers: list[tuple[np.ndarray, np.ndarray]], k: int):
    """Each shard's (distances ``[Q, k_s]``, global rows) -> the k smallest overall.

    Ties go to the lower global row, as in one index over the whole bank."""
    d = np.concatenate([a[0] for a in answers], axis=1)
    idx = np.concatenate([a[1] for a in answers], axis=1)
    d = np.where(idx < 0, np.inf, d)  # a -1 row (none found) never wins
    order = np.lexsort((idx, d), axis=1)[:, :k] if d.shape[1] > 1 else np.zeros((len(d), 1), int)
    return np.take_along_axis(d, order, 1), np.take_along_axis(idx, order, 1)


class ShardedMemoryBank(MemoryBank):
    """:class:`~patchcore_core.pipeline.memory_bank.MemoryBank` whose search runs on Ray actors.

    ``features`` and ``origin`` stay here too (saving the model, Eq. 7 and
    :meth:`PatchCore.explain` read them); only the search is distributed.
    """

    def __init__(self, features: torch.Tensor, origin: torch.Tensor, n_shards: int,
                 node_ids: list[str] | None = None, timeout_s: float = 600.0, backend: str = "faiss",
                 ann: dict | None = None):
        super().__init__(features, origin, backend, ann)
        ray = require_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.timeout_s = timeout_s
        rows = torch.tensor_split(torch.arange(len(features)), max(1, min(n_shards, len(features))))
        self.ranges = [(int(r[0]), int(r[-1]) + 1) for r in rows]
        actor = ray.remote(num_cpus=0, max_restarts=0)(ShardActor)  # a lost shard stays lost: see search
        flat = features.detach().float().cpu().numpy()
        self.actors = []
        for i, (a, b) in enumerate(self.ranges):
            options = {}
            if node_ids:  # one shard per node, round robin; soft: placed elsewhere if that node is gone
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_ids[i % len(node_ids)],
                                                                                soft=True)
            self.actors.append(actor.options(**options).remote(flat[a:b], a, backend, self.ann))
        self.shipped_bytes = flat.nbytes
        for i in range(len(self.actors)):
            self._call(i, "size")  # every shard built before the first query

    def _call(self, i: int, method: str, *args):
        ray = require_ray()
        try:
            return ray.get(getattr(self.actors[i], method).remote(*args), timeout=self.timeout_s)
        except ray.exceptions.RayActorError as exc:
            a, b = self.ranges[i]
            raise ShardLostError(f"memory bank shard {i} of {len(self.actors)} (bank rows {a}-{b - 1}) is "
                                 f"lost: its actor died ({type(exc).__name__}); its neighbours cannot be "
                                 "searched. Fit again, or rebuild the bank on the live nodes.") from None

    def search(self, queries: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances ``[Q, k]`` and bank rows ``[Q, k]``: each shard's best, merged."""
        ray = require_ray()
        k = min(k, len(self))
        q = ray.put(np.ascontiguousarray(queries.detach().float().cpu().numpy()))
        self.shipped_bytes += queries.numel() * 4 * len(self.actors)
        refs = [actor.search.remote(q, k) for actor in self.actors]
        answers = []
        for i, ref in enumerate(refs):
            try:
                answers.append(ray.get(ref, timeout=self.timeout_s))
            except ray.exceptions.RayActorError:
                self._call(i, "size")  # raises ShardLostError naming the shard
        d, idx = merge_shard_answers(answers, k)
        d = torch.from_numpy(d.astype(np.float32))
        return d.to(queries.device), torch.from_numpy(idx.astype(np.int64)).to(queries.device)

    def shard_params(self) -> list[dict]:
        """Each shard's resolved index parameters (empty dicts for exact search)."""
        return [self._call(i, "params") for i in range(len(self.actors))]

    def to(self, device) -> MemoryBank:
        return MemoryBank(self.features.to(device), self.origin.to(device), self.backend, self.ann)
