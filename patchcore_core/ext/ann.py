"""Approximate nearest-neighbour indexes (faiss) over the memory bank.

Exact search costs ``M x D`` per test patch: with ~600k bank rows (a
full bank of 761 magnetic-tile images) that dominates prediction. The
paper answers with faiss's approximate indexes; three are offered:

* ``ivf_flat``: k-means splits the bank into ``nlist`` cells; a query
  scans only the ``nprobe`` nearest cells, with exact distances there.
* ``ivf_pq``: the same cells, but the rows are stored as product-quantised
  codes (``pq_m`` bytes each); the ``k_factor * k`` best candidates by
  code distance are then re-ranked by exact distance
  (``IndexRefineFlat``), so the returned scores are true L2 distances.
* ``hnsw``: a navigable small-world graph (``hnsw_m`` links per node),
  searched with a beam of ``ef_search`` candidates.

An approximate index can only miss the nearest row, never find a nearer
one, so its patch scores are equal to or above the exact ones.

The index is trained when the bank is built (fit time) and travels in the
model file as bytes (:func:`index_to_tensor`: ``faiss.serialize_index``
into a ``uint8`` tensor; no pickle). Search parameters (``nprobe``,
``ef_search``, ``k_factor``) are set from the config after loading, so
the file's copies of them are never trusted. The indexes live on the CPU.
"""

from __future__ import annotations

import math
import sys

import faiss
import numpy as np
import torch

from patchcore_core.pipeline import memory_bank

__all__ = ["ANN_BACKENDS", "ANN_PARAMS", "scaled_params", "build_index", "set_search_params",
           "index_to_tensor", "index_from_tensor", "index_problem"]

ANN_BACKENDS = memory_bank.APPROXIMATE_BACKENDS  # named (and their settings declared) by the pipeline
ANN_PARAMS = memory_bank.APPROXIMATE_PARAMS
# The faiss class each backend's index must be, after loading (see index_problem).
_INDEX_TYPES = {"ivf_flat": "IndexIVFFlat", "ivf_pq": "IndexRefineFlat", "hnsw": "IndexHNSWFlat"}
_MIN_POINTS_PER_CELL = 39   # faiss warns below this many training points per k-means centroid
_TRAIN_POINTS_PER_CELL = 50  # k-means sample: enough per centroid, and minutes less on 600k rows
_KMEANS_ITERATIONS = 10      # faiss's default is 25; the cells barely move after 10 (and it is minutes)


def scaled_params(backend: str, n: int, d: int, nlist: int | None = None, nprobe: int | None = None,
                  pq_m: int | None = None, hnsw_m: int | None = None, ef_search: int | None = None,
                  k_factor: int | None = None) -> dict:
    """The index parameters for a bank of ``n`` rows of width ``d``.

    Values given win; ``None`` is scaled to the bank (the one place the
    defaults are chosen, measured on magnetic tile in
    ``benchmarks/bench_knn.py``):

    * ``nlist = 4 sqrt(n)`` (faiss's guideline is 4-16 sqrt(n)), at most
      ``n / 39`` so that k-means has 39 points per cell, at least 1;
      a given ``nlist`` is capped at ``n`` (a small calibration bank);
    * ``nprobe = nlist / 128`` (under 1% of the bank scanned), at least 16,
      at most ``nlist``: the scan is what costs. On magnetic tile (all 583
      test images), full bank (597k rows, 3090 cells): ``ivf_pq`` at 24
      cells was 16x faster than exact search, found the exact nearest row
      for 95% of the patches and left image AUROC unchanged (48 cells: 98%,
      12x). On its 10% coreset (60k rows, 977 cells) 8 cells lost 0.008
      image AUROC, 16 cells 0.002: hence the floor of 16;
    * ``pq_m``: the largest divisor of ``d`` up to ``d / 8``, i.e. about 8
      dimensions per one-byte code (19 bytes instead of 608 for d=152; the
      exact re-ranking makes up for coarse codes, and training 4-dimension
      sub-quantizers took minutes longer);
      ``pq_bits`` (not a setting) is 8, fewer when the bank is too small to
      train 256 centroids per sub-quantizer;
    * ``k_factor = 128`` candidates per neighbour re-ranked exactly (cheap:
      128 distances per query; 8 found the exact row for only 69% of
      magnetic tile's patches, 128 for 97%);
    * ``hnsw_m = 32`` links, ``ef_search = 128``, ``ef_construction = 80``.
    """
    if backend not in ANN_BACKENDS:
        raise ValueError(f"approximate backends are {', '.join(ANN_BACKENDS)}, not {backend!r}")
    if n < 1 or d < 1:
        raise ValueError(f"an index needs at least one row and one dimension; got {n} x {d}")
    p = {"backend": backend}
    if backend in ("ivf_flat", "ivf_pq"):
        auto = min(round(4 * math.sqrt(n)), n // _MIN_POINTS_PER_CELL, 65536)
        p["nlist"] = max(1, min(nlist, n) if nlist is not None else auto)
        p["nprobe"] = min(p["nlist"], nprobe if nprobe is not None else max(16, p["nlist"] // 128))
    if backend == "ivf_pq":
        if pq_m is None:
            pq_m = max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)
        if d % pq_m:
            raise ValueError(f"pq_m {pq_m} must divide the feature width {d}")
        p["pq_m"] = pq_m
        p["pq_bits"] = max(1, min(8, int(math.log2(max(2, n // _MIN_POINTS_PER_CELL)))))
        p["k_factor"] = k_factor if k_factor is not None else 128
    if backend == "hnsw":
        p["hnsw_m"] = hnsw_m if hnsw_m is not None else 32
        p["ef_search"] = ef_search if ef_search is not None else 128
        p["ef_construction"] = max(80, p["ef_search"] // 2)
    for key, v in p.items():
        if key != "backend" and v < 1:
            raise ValueError(f"{key} must be >= 1, not {v}")
    return p


def _train_sample(x: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    limit = _TRAIN_POINTS_PER_CELL * nlist
    if len(x) <= limit:
        return x
    rows = np.random.default_rng(seed).choice(len(x), limit, replace=False)
    return x[np.sort(rows)]


def build_index(features: torch.Tensor, params: dict):
    """Train and fill the index ``params`` (from :func:`scaled_params`) describes."""
    x = np.ascontiguousarray(features.detach().float().cpu().numpy())
    n, d = x.shape
    backend = params["backend"]
    if backend == "hnsw":
        index = faiss.IndexHNSWFlat(d, params["hnsw_m"])
        index.hnsw.efConstruction = params["ef_construction"]
    else:
        quantizer = faiss.IndexFlatL2(d)
        if backend == "ivf_flat":
            index = faiss.IndexIVFFlat(quantizer, d, params["nlist"])
        else:
            index = faiss.IndexIVFPQ(quantizer, d, params["nlist"], params["pq_m"], params["pq_bits"])
            index.do_polysemous_training = False  # minutes of training for Hamming filtering we never use
        index.cp.min_points_per_centroid = 1  # tiny banks (tests, calibration folds): no warnings
        index.cp.niter = _KMEANS_ITERATIONS
        if backend == "ivf_pq":
            index.pq.cp.niter = _KMEANS_ITERATIONS
        index.train(_train_sample(x, params["nlist"]))
        if backend == "ivf_pq":
            index = faiss.IndexRefineFlat(index)
    index.add(x)
    set_search_params(index, params)
    return index


def set_search_params(index, params: dict) -> None:
    """Apply ``nprobe`` / ``ef_search`` / ``k_factor`` (after building or loading)."""
    backend = params["backend"]
    if backend == "ivf_pq":
        index.k_factor = params["k_factor"]
        faiss.extract_index_ivf(index.base_index).nprobe = params["nprobe"]
    elif backend == "ivf_flat":
        index.nprobe = params["nprobe"]
    elif backend == "hnsw":
        index.hnsw.efSearch = params["ef_search"]


def index_to_tensor(index) -> torch.Tensor:
    """The index as bytes in a 1-D ``uint8`` tensor (``faiss.serialize_index``)."""
    return torch.from_numpy(faiss.serialize_index(index).copy())


def index_from_tensor(data: torch.Tensor):
    """The index back from :func:`index_to_tensor`'s tensor (``faiss.deserialize_index``).

    Raises ``ValueError`` when the bytes are not a faiss index."""
    if data.dtype != torch.uint8 or data.ndim != 1 or len(data) == 0:
        raise ValueError(f"must be a non-empty 1-D uint8 tensor; it is {data.dtype} {tuple(data.shape)}")
    try:
        index = faiss.deserialize_index(np.ascontiguousarray(data.numpy()))
    except RuntimeError as exc:  # faiss's reader throws on bad magic numbers, sizes, lengths
        raise ValueError(f"is not a faiss index: {str(exc).strip().splitlines()[-1][:200]}") from None
    return index  # read_index already returns the concrete class, and owns it


def index_problem(index, backend: str, n: int, d: int) -> str | None:
    """Why a loaded ``index`` cannot serve a ``backend`` bank of ``n x d`` rows (None: it can)."""
    want = _INDEX_TYPES.get(backend)
    if want is None:
        return f"belongs to no approximate backend ({backend!r} needs no index)"
    if type(index).__name__ != want:
        return f"is a {type(index).__name__}; the {backend} backend builds a {want}"
    if index.d != d:
        return f"has dimension {index.d}, the bank {d}"
    if index.ntotal != n:
        return f"holds {index.ntotal} rows, the bank {n}"
    if backend == "ivf_pq":
        base = faiss.downcast_index(index.base_index)
        if type(base).__name__ != "IndexIVFPQ" or base.ntotal != n or base.d != d:
            return "must refine an IndexIVFPQ over every bank row"
    if backend in ("ivf_flat", "ivf_pq") and not faiss.extract_index_ivf(index).is_trained:
        return "is not trained"
    return None


memory_bank.use_approximate_search(sys.modules[__name__])
