"""The memory bank ``M`` and its nearest-neighbour search.

Each bank row remembers where it came from (training image, row,
column), so every test patch can be explained by the normal patch
nearest to it.

Distances are Euclidean (L2, not squared) everywhere in the package.
Two interchangeable searches give the same answers:

* ``faiss``: an exact flat L2 index (CPU; on a GPU when faiss was built
  with GPU support and the bank lives on CUDA);
* ``torch``: chunked ``||q||^2 - 2 q.m + ||m||^2`` on the bank's device,
  memory bounded by ``chunk_bytes``.

Three approximate ones trade a little accuracy for speed on large banks
(``ivf_flat``, ``ivf_pq``, ``hnsw``): their index is trained when the bank
is built and saved with the model. They are not the paper's method, so
they live outside this folder, in :mod:`patchcore_core.ext.ann`, which
plugs itself in here (:func:`use_approximate_search`) when
``patchcore_core`` is imported.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

__all__ = ["APPROXIMATE_BACKENDS", "APPROXIMATE_PARAMS", "EXACT_BACKENDS", "KNN_BACKENDS", "MemoryBank",
           "exact_index", "knn_search", "use_approximate_search"]

# Exact searches, same answers: faiss (flat L2 index) or chunked torch;
# then faiss's approximate indexes, with the settings they take.
EXACT_BACKENDS = ("faiss", "torch")
APPROXIMATE_BACKENDS = ("ivf_flat", "ivf_pq", "hnsw")
APPROXIMATE_PARAMS = ("nlist", "nprobe", "pq_m", "hnsw_m", "ef_search", "k_factor")
KNN_BACKENDS = EXACT_BACKENDS + APPROXIMATE_BACKENDS

_approximate = None  # the module implementing APPROXIMATE_BACKENDS (patchcore_core.ext.ann)


def use_approximate_search(module) -> None:
    """Plug in the approximate indexes: ``module`` offers ``scaled_params``,
    ``build_index``, ``set_search_params``, ``index_to_tensor`` and ``index_from_tensor``."""
    global _approximate
    _approximate = module


def approximate_search():
    """The plugged-in approximate-search module (:func:`use_approximate_search`)."""
    if _approximate is None:
        raise RuntimeError("approximate search is not plugged in: import patchcore_core.ext.ann")
    return _approximate


def _torch_knn(queries: torch.Tensor, bank: torch.Tensor, k: int, chunk_bytes: int):
    dtype = torch.float64 if bank.dtype == torch.float64 else torch.float32  # float64 stays float64
    bank = bank.to(dtype)
    bank_sq = (bank * bank).sum(1)
    # Rows per chunk so that one [rows, M] distance block stays within budget.
    rows = max(1, chunk_bytes // (bank.element_size() * max(1, len(bank))))
    dists, idxs = [], []
    for start in range(0, len(queries), rows):
        q = queries[start:start + rows].to(dtype)
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * (q @ bank.T) + bank_sq
        d2, i = d2.topk(k, dim=1, largest=False)
        dists.append(d2.clamp_(min=0).sqrt_())
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


def exact_index(bank: torch.Tensor):
    """A faiss flat (exact) L2 index over the rows of ``bank``."""
    index = faiss.IndexFlatL2(bank.shape[1])
    if bank.device.type == "cuda" and hasattr(faiss, "StandardGpuResources"):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), bank.device.index or 0, index)
    index.add(np.ascontiguousarray(bank.detach().float().cpu().numpy()))
    return index


def knn_search(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, backend: str = "faiss",
               chunk_bytes: int = 256 << 20, index=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest bank rows of each query row: exact, or from ``index``.

    Args:
        queries: ``[Q, D]``; bank: ``[M, D]``.
        index: a faiss index over ``bank`` (an approximate one too); with
            the ``faiss`` backend, built here when not given.

    Returns:
        (L2 distances ``[Q, k]`` ascending, bank indices ``[Q, k]``), on the
        queries' device.
    """
    k = min(k, len(bank))
    if backend == "torch":
        return _torch_knn(queries, bank.to(queries.device), k, chunk_bytes)
    if backend not in KNN_BACKENDS:
        raise ValueError(f"knn backend must be one of {', '.join(KNN_BACKENDS)}, not {backend!r}")
    if index is None:
        if backend != "faiss":
            raise ValueError(f"the {backend} backend needs its trained index (MemoryBank.build_index)")
        index = exact_index(bank)
    q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
    d2, i = index.search(q, k)
    short = (i < 0).any(axis=1)
    if short.any():
        # An approximate index returns -1 when the probed cells hold fewer than
        # k rows: those queries are answered exactly rather than with holes.
        exact_d, exact_i = _torch_knn(torch.from_numpy(q[short]), bank.detach().float().cpu(), k,
                                      chunk_bytes)
        d2[short], i[short] = exact_d.square().numpy(), exact_i.numpy()
    d = torch.from_numpy(d2).clamp_(min=0).sqrt_()
    return d.to(queries.device), torch.from_numpy(i).to(queries.device)


class MemoryBank:
    """Patch features of normal images plus their provenance.

    Attributes:
        features: ``[M, D]`` bank rows.
        origin: ``[M, 3]`` long: (training image, row, column) of each row.
        backend: one of :data:`KNN_BACKENDS`.
        ann: the approximate index's settings as given (``None`` values are
            scaled to the bank by ``scaled_params`` of :mod:`patchcore_core.ext.ann`).
    """

    def __init__(self, features: torch.Tensor, origin: torch.Tensor, backend: str = "faiss",
                 ann: dict | None = None, index=None):
        if len(features) != len(origin):
            raise ValueError(f"{len(features)} features but {len(origin)} origins")
        self.features, self.origin, self.backend = features, origin.long(), backend
        self.ann = dict(ann or {})
        self._index = index
        if index is not None:
            approximate_search().set_search_params(index, self.params)  # the config's, not the file's

    def __len__(self) -> int:
        return len(self.features)

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()

    @property
    def is_approximate(self) -> bool:
        return self.backend in APPROXIMATE_BACKENDS

    @property
    def params(self) -> dict:
        """The approximate index's resolved parameters (empty for exact backends)."""
        if not self.is_approximate:
            return {}
        n, d = self.features.shape
        return approximate_search().scaled_params(self.backend, n, d, **self.ann)

    @property
    def index(self):
        """The approximate index (trained on first use; None for exact backends)."""
        return self.build_index() if self.is_approximate else None

    def build_index(self):
        """Train the approximate index now (fit time) unless it exists; returns it."""
        if self.is_approximate and self._index is None:
            self._index = approximate_search().build_index(self.features, self.params)
        return self._index

    @staticmethod
    def concat(banks: list[MemoryBank]) -> MemoryBank:
        """One bank of all rows (its index, if approximate, is trained anew)."""
        return MemoryBank(torch.cat([b.features for b in banks]), torch.cat([b.origin for b in banks]),
                          banks[0].backend, banks[0].ann)

    def to(self, device) -> MemoryBank:
        return MemoryBank(self.features.to(device), self.origin.to(device), self.backend, self.ann,
                          self._index)  # faiss indexes stay on the CPU

    def search(self, queries: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances ``[Q, k]`` and bank indices ``[Q, k]`` of the k nearest rows."""
        if self.backend == "faiss" and self._index is None:
            self._index = exact_index(self.features)  # built once, reused per batch
        self.build_index()
        return knn_search(queries, self.features, k, self.backend, index=self._index)
