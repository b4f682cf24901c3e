"""Measure a nearest-neighbour backend against exact search.

One trial = build the backend's index over a bank, answer the test
patches, and report what the trade-off costs: recall@1 against exact
search, build seconds, search milliseconds per image, index megabytes,
and (with labels and masks) the detection metrics that follow from its
patch scores. ``benchmarks/bench_knn.py`` and notebook 07 both use it, on
features extracted once.
"""

from __future__ import annotations

import time

import faiss
import numpy as np
import torch

from patchcore_core.pipeline.memory_bank import MemoryBank
from patchcore_core.pipeline.scoring import anomaly_map, image_scores

from .metrics import aupro, image_auroc, pixel_auroc

__all__ = ["recall_at_1", "row_distances", "recall_at_1_of_rows", "index_megabytes", "search_trial",
           "detection_metrics"]


def recall_at_1(distances: torch.Tensor, exact: torch.Tensor, rtol: float = 1e-4) -> float:
    """Share of queries whose answer is at the exact nearest distance.

    Compared by distance, not by row, so that an equally near duplicate row
    counts as found (an approximate index never returns a nearer one)."""
    return float((distances <= exact * (1 + rtol) + 1e-6).float().mean())


def row_distances(queries: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor,
                  chunk: int = 1 << 16) -> torch.Tensor:
    """``||queries[i] - bank[rows[i]]||`` ``[Q]``, computed directly in float64.

    A search's distances come from ``||q||^2 - 2 q.m + ||m||^2`` in float32,
    which loses the small ones to cancellation: two near-duplicate patches
    (a plain background) can come out 0 from one search and 0.1 from another."""
    out = torch.empty(len(rows), dtype=torch.float64)
    rows = rows.reshape(-1).long().cpu()
    for s in range(0, len(rows), chunk):
        q = queries[s:s + chunk].detach().cpu().double()
        out[s:s + chunk] = (q - bank[rows[s:s + chunk]].detach().cpu().double()).norm(dim=1)
    return out


def recall_at_1_of_rows(queries: torch.Tensor, bank: torch.Tensor, found: torch.Tensor,
                        exact: torch.Tensor, rtol: float = 1e-4) -> float:
    """Recall@1 from the rows found and the exact search's rows: a hit when the
    row found is as near as the exact one (a tie with another row counts), both
    distances recomputed by :func:`row_distances` so that rounding is no miss."""
    return recall_at_1(row_distances(queries, bank, found), row_distances(queries, bank, exact), rtol)


def index_megabytes(bank: MemoryBank) -> float:
    """What the bank's search structure occupies: the serialised index for
    the approximate backends, the flat rows for the exact ones."""
    if bank.is_approximate:
        return len(faiss.serialize_index(bank.build_index())) / 2**20
    return bank.nbytes / 2**20


def search_trial(bank_features: torch.Tensor, queries: torch.Tensor, backend: str, n_images: int = 1,
                 exact: torch.Tensor | None = None, exact_rows: torch.Tensor | None = None, **ann) -> dict:
    """Build ``backend`` over ``bank_features`` ``[M, D]`` and search ``queries`` ``[Q, D]``.

    Args:
        n_images: how many images the queries are (for milliseconds per image).
        exact: ``[Q]`` exact nearest distances, for recall@1.
        exact_rows: ``[Q]`` the exact search's rows: recall@1 by
            :func:`recall_at_1_of_rows` instead (robust to rounding).
        ann: index parameters (``nlist``, ``nprobe``, ...; see :mod:`.ann`).

    Returns:
        a row: ``backend``, the resolved parameters, ``build_s``,
        ``ms_per_image``, ``index_mb``, ``recall_at_1`` (with ``exact`` or
        ``exact_rows``), and ``distances`` and ``rows`` ``[Q]`` (tensors, for scoring).
    """
    origin = torch.zeros(len(bank_features), 3, dtype=torch.long)
    bank = MemoryBank(bank_features, origin, backend, ann)
    t0 = time.perf_counter()
    bank.build_index()
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dist, idx = bank.search(queries, k=1)
    search_s = time.perf_counter() - t0
    row = {"backend": backend, **{k: v for k, v in bank.params.items() if k != "backend"},
           "build_s": round(build_s, 2), "ms_per_image": 1000 * search_s / max(1, n_images),
           "index_mb": round(index_megabytes(bank), 1)}
    if exact_rows is not None:
        row["recall_at_1"] = recall_at_1_of_rows(queries, bank_features, idx[:, 0], exact_rows)
    elif exact is not None:
        row["recall_at_1"] = recall_at_1(dist[:, 0], exact)
    row["distances"], row["rows"] = dist[:, 0], idx[:, 0]
    return row


def detection_metrics(patch_scores: torch.Tensor, labels: np.ndarray, masks: np.ndarray | None,
                      image_size: int, sigma: float = 4.0, upsample: str = "bilinear") -> dict:
    """Image AUROC (and pixel AUROC, AUPRO with ``masks``) from ``[N, h, w]`` patch scores."""
    out = {"image_auroc": image_auroc(labels, image_scores(patch_scores).numpy())}
    if masks is not None and masks.any() and not masks.all():
        maps = anomaly_map(patch_scores, image_size, sigma, upsample).numpy()
        out["pixel_auroc"] = pixel_auroc(masks, maps)
        out["aupro"] = aupro(masks, maps)
    return out
