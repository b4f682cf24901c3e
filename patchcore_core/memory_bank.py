"""The memory bank ``M`` and exact nearest-neighbour search.

Each bank row remembers where it came from (training image, row,
column), so every test patch can be explained by the normal patch
nearest to it.

Distances are Euclidean (L2, not squared) everywhere in the package.
Two interchangeable searches give the same answers:

* ``faiss``: an exact flat L2 index (CPU; on a GPU when faiss was built
  with GPU support and the bank lives on CUDA);
* ``torch``: chunked ``||q||^2 - 2 q.m + ||m||^2`` on the bank's device,
  memory bounded by ``chunk_bytes``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["KNN_BACKENDS", "MemoryBank", "knn_search"]

# Exact searches, same answers: faiss (flat L2 index) or chunked torch.
KNN_BACKENDS = ("faiss", "torch")


def _torch_knn(queries: torch.Tensor, bank: torch.Tensor, k: int, chunk_bytes: int):
    bank = bank.float()
    bank_sq = (bank * bank).sum(1)
    # Rows per chunk so that one [rows, M] distance block stays within budget.
    rows = max(1, chunk_bytes // (4 * max(1, len(bank))))
    dists, idxs = [], []
    for start in range(0, len(queries), rows):
        q = queries[start:start + rows].float()
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * (q @ bank.T) + bank_sq
        d2, i = d2.topk(k, dim=1, largest=False)
        dists.append(d2.clamp_(min=0).sqrt_())
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


def _faiss_index(bank: torch.Tensor):
    import faiss

    index = faiss.IndexFlatL2(bank.shape[1])
    if bank.device.type == "cuda" and hasattr(faiss, "StandardGpuResources"):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), bank.device.index or 0, index)
    index.add(np.ascontiguousarray(bank.detach().float().cpu().numpy()))
    return index


def knn_search(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, backend: str = "faiss",
               chunk_bytes: int = 256 << 20, index=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest bank rows of each query row.

    Args:
        queries: ``[Q, D]``; bank: ``[M, D]``.

    Returns:
        (L2 distances ``[Q, k]`` ascending, bank indices ``[Q, k]``), on the
        queries' device.
    """
    k = min(k, len(bank))
    if backend == "torch":
        return _torch_knn(queries, bank.to(queries.device), k, chunk_bytes)
    if backend != "faiss":
        raise ValueError(f"knn backend must be one of {', '.join(KNN_BACKENDS)}, not {backend!r}")
    index = index or _faiss_index(bank)
    d2, i = index.search(np.ascontiguousarray(queries.detach().float().cpu().numpy()), k)
    d = torch.from_numpy(d2).clamp_(min=0).sqrt_()
    return d.to(queries.device), torch.from_numpy(i).to(queries.device)


class MemoryBank:
    """Patch features of normal images plus their provenance.

    Attributes:
        features: ``[M, D]`` bank rows.
        origin: ``[M, 3]`` long: (training image, row, column) of each row.
    """

    def __init__(self, features: torch.Tensor, origin: torch.Tensor, backend: str = "faiss"):
        if len(features) != len(origin):
            raise ValueError(f"{len(features)} features but {len(origin)} origins")
        self.features, self.origin, self.backend = features, origin.long(), backend
        self._index = None

    def __len__(self) -> int:
        return len(self.features)

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()

    @staticmethod
    def concat(banks: list[MemoryBank]) -> MemoryBank:
        return MemoryBank(torch.cat([b.features for b in banks]), torch.cat([b.origin for b in banks]),
                          banks[0].backend)

    def to(self, device) -> MemoryBank:
        return MemoryBank(self.features.to(device), self.origin.to(device), self.backend)

    def search(self, queries: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances ``[Q, k]`` and bank indices ``[Q, k]`` of the k nearest rows."""
        if self.backend == "faiss" and self._index is None:
            self._index = _faiss_index(self.features)  # built once, reused per batch
        return knn_search(queries, self.features, k, self.backend, index=self._index)
