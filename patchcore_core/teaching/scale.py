"""PatchCore at scale (notebook 07): what grows with the training set, and
what approximate search buys back.

* :func:`category_features` extracts a category's train and test patch
  features once; everything below reuses them (no backbone runs again);
* :func:`growth_table` / :func:`plot_growth`: bank size, greedy coreset
  time and exact search time against the number of training images;
* :func:`nprobe_table` / :func:`plot_nprobe`: recall@1, image AUROC and
  search milliseconds per image against ``nprobe`` for ``ivf_flat`` and
  ``ivf_pq`` (each index trained once, then searched at every ``nprobe``).

The numbers on real data at full size are ``benchmarks/bench_knn.py``'s.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from patchcore_core.data.mvtec import MVTecCategory
from patchcore_core.evaluation.search import detection_metrics, recall_at_1_of_rows
from patchcore_core.ext.ann import scaled_params
from patchcore_core.pipeline.coreset import greedy_coreset
from patchcore_core.pipeline.memory_bank import MemoryBank
from patchcore_core.pipeline.patchcore import PatchCore

__all__ = ["category_features", "growth_table", "plot_growth", "nprobe_table", "plot_nprobe"]


def category_features(root, category: str, device: str = "cpu", max_test: int | None = None) -> dict:
    """Patch features of a category's training and test images, computed once.

    Returns:
        dict with ``train`` ``[N, h, w, D]``, ``test`` ``[T, h, w, D]``,
        ``labels`` ``[T]`` (1 = defective), ``masks`` ``[T, H, W]`` and
        ``image_size``; ``max_test`` keeps every defective kind represented by
        taking test images evenly spaced over the sorted list.
    """
    cat = MVTecCategory(root, category)
    test = cat.test
    if max_test is not None and len(test) > max_test:
        test = [test[i] for i in np.linspace(0, len(test) - 1, max_test).round().astype(int)]
    model = PatchCore(device=device).prepare(cat.train)
    with torch.inference_mode():
        train = model.extract(cat.train).cpu()
        test_feats = model.extract([t.path for t in test]).cpu()
    masks = np.stack([cat.load_mask(t, model.preprocess) for t in test])
    return {"train": train, "test": test_feats, "labels": np.array([t.is_anomalous for t in test], dtype=int),
            "masks": masks, "image_size": model.config.image_size}


def _timed_search(bank: MemoryBank, queries: torch.Tensor,
                  repeats: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Best of ``repeats`` timings (seconds) of one search, after a warm-up
    that builds the index (the minimum is the honest one on a shared
    machine), with the nearest distances and rows ``[Q]``."""
    bank.search(queries[:1])
    best, dist, idx = float("inf"), None, None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        dist, idx = bank.search(queries)
        best = min(best, time.perf_counter() - t0)
    return best, dist[:, 0], idx[:, 0]


def growth_table(train: torch.Tensor, test: torch.Tensor, counts, ratio: float = 0.1,
                 seed: int = 0, repeats: int = 3) -> list[dict]:
    """What grows with the number of training images: one row per count in ``counts``.

    Args:
        train: ``[N, h, w, D]`` training patch features; the first ``n`` images are used.
        test: ``[T, h, w, D]`` test patch features (the search's queries).

    Returns:
        rows with ``n_train``, ``bank_rows`` (every patch), ``bank_mb``,
        ``coreset_rows``, ``coreset_s`` (greedy selection at ``ratio``),
        ``search_ms_full`` and ``search_ms_coreset`` (exact faiss search,
        milliseconds per test image).
    """
    d = train.shape[-1]
    queries = test.reshape(-1, d)
    rows = []
    for n in sorted(int(c) for c in counts):
        flat = train[:n].reshape(-1, d).contiguous()
        t0 = time.perf_counter()
        keep = greedy_coreset(flat, ratio, seed=seed).indices
        coreset_s = time.perf_counter() - t0
        row = {"n_train": n, "bank_rows": len(flat), "bank_mb": flat.numel() * 4 / 2**20,
               "coreset_rows": len(keep), "coreset_s": coreset_s}
        for name, bank in (("full", flat), ("coreset", flat[keep].contiguous())):
            mb = MemoryBank(bank, torch.zeros(len(bank), 3, dtype=torch.long), "faiss")
            row[f"search_ms_{name}"] = 1000 * _timed_search(mb, queries, repeats)[0] / len(test)
        rows.append(row)
    return rows


def plot_growth(rows: list[dict]):
    """Three panels against training images: bank rows, coreset seconds, search ms per image."""
    n = [r["n_train"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(n, [r["bank_rows"] for r in rows], "o-", label="full bank")
    axes[0].plot(n, [r["coreset_rows"] for r in rows], "s--", label="coreset")
    axes[0].set_ylabel("bank rows (patches)")
    axes[1].plot(n, [r["coreset_s"] for r in rows], "o-", color="tab:red")
    axes[1].set_ylabel("greedy coreset (s)")
    axes[2].plot(n, [r["search_ms_full"] for r in rows], "o-", label="full bank")
    axes[2].plot(n, [r["search_ms_coreset"] for r in rows], "s--", label="coreset")
    axes[2].set_ylabel("exact search (ms / test image)")
    titles = ["the bank grows linearly", "the coreset: N x k updates", "exact search grows with the bank"]
    for ax, title in zip(axes, titles):
        ax.set_xlabel("training images")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[2].legend()
    fig.tight_layout()
    return fig


def nprobe_table(train: torch.Tensor, test: torch.Tensor, labels, nprobes, backends=("ivf_flat", "ivf_pq"),
                 repeats: int = 2, **ann) -> list[dict]:
    """Recall, accuracy and speed of the IVF indexes at each ``nprobe``, on the full bank.

    Each backend's index is trained once, then searched at every
    ``nprobe`` (capped at its ``nlist``); the first row is exact faiss
    search, the reference for recall and speed. Times: best of ``repeats``. ``ann``: other index
    parameters (``nlist``, ``pq_m``, ``k_factor``).

    Returns:
        rows with ``backend``, ``nprobe``, ``nlist``, ``recall_at_1``,
        ``image_auroc``, ``ms_per_image`` and ``scanned`` (share of the bank
        a query looks at, ``nprobe / nlist``).
    """
    d = train.shape[-1]
    bank, queries = train.reshape(-1, d).contiguous(), test.reshape(-1, d)
    origin = torch.zeros(len(bank), 3, dtype=torch.long)

    def run(mb: MemoryBank) -> tuple[dict, torch.Tensor]:
        seconds, dist, idx = _timed_search(mb, queries, repeats)
        ms = 1000 * seconds / len(test)
        auroc = detection_metrics(dist.view(test.shape[:3]), np.asarray(labels), None, 0)["image_auroc"]
        return {"image_auroc": auroc, "ms_per_image": ms}, idx

    exact_row, exact = run(MemoryBank(bank, origin, "faiss"))
    rows = [{"backend": "faiss (exact)", "nprobe": None, "nlist": None, "recall_at_1": 1.0,
             **exact_row, "scanned": 1.0}]
    for backend in backends:
        built = MemoryBank(bank, origin, backend, ann)
        index = built.build_index()
        nlist = scaled_params(backend, len(bank), d, **ann)["nlist"]
        for p in sorted({min(int(p), nlist) for p in nprobes}):
            row, found = run(MemoryBank(bank, origin, backend, {**ann, "nprobe": p}, index))
            rows.append({"backend": backend, "nprobe": p, "nlist": nlist,
                         "recall_at_1": recall_at_1_of_rows(queries, bank, found, exact), **row,
                         "scanned": p / nlist})
    return rows


def plot_nprobe(rows: list[dict], highlight: int | None = None):
    """Recall@1, image AUROC and ms per image against ``nprobe`` (log scale),
    exact search as dashed lines; ``highlight`` marks one ``nprobe``."""
    exact = next(r for r in rows if r["nprobe"] is None)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    keys = [("recall_at_1", "recall@1 vs exact"), ("image_auroc", "image AUROC"),
            ("ms_per_image", "search ms / test image")]
    for backend, style in zip(dict.fromkeys(r["backend"] for r in rows if r["nprobe"]), ("o-", "s--")):
        part = [r for r in rows if r["backend"] == backend]
        for ax, (key, _) in zip(axes, keys):
            ax.plot([r["nprobe"] for r in part], [r[key] for r in part], style, lw=2, label=backend)
    for ax, (key, label) in zip(axes, keys):
        ax.axhline(exact[key], color="grey", ls=":", label="exact")
        if highlight is not None:
            ax.axvline(highlight, color="tab:red", alpha=0.5)
        ax.set_xscale("log")
        if key == "image_auroc":  # at least 0.05 of range: a one-pair flip must not look like a cliff
            low = min(r[key] for r in rows)
            ax.set_ylim(min(low - 0.005, 0.955), 1.002)
        ax.set_xlabel("nprobe (cells searched per query)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig
