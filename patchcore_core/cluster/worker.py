"""What runs on the workers: plain functions, wrapped as Ray tasks by :mod:`.core`.

Each worker process keeps the model it built (backbone loaded once per
process, however many chunks of images it is given). Everything a task
returns is numpy or plain Python: compact to ship, and no torch pickles.
"""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import torch

from patchcore_core.evaluation.category import peak_rss_mb
from patchcore_core.ext.composable import covering_radius_faiss, shard_greedy
from patchcore_core.pipeline.config import PatchCoreConfig
from patchcore_core.pipeline.patchcore import PatchCore
from patchcore_core.pipeline.preprocess import Preprocess

__all__ = ["extract_chunk", "shard_greedy_task", "shard_radius_task", "process_info"]

_MODELS: dict = {}  # this worker process's model, keyed by its settings


def process_info() -> dict:
    """Which node and process ran a task, and that process's peak memory so far."""
    import ray  # the cluster extra: only ever called on a worker

    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def _worker_model(config: dict, preprocess: dict, device: str):
    key = json.dumps([config, preprocess, device], sort_keys=True)
    if key not in _MODELS:
        _MODELS.clear()  # one model per process: a new setting replaces the old one
        model = PatchCore(PatchCoreConfig.from_dict(config), device=device)
        model.preprocess = Preprocess(preprocess["resize"], preprocess["crop"], preprocess["mode"],
                                      model.spec.mean, model.spec.std)
        _ = model.extractor  # the backbone, loaded now: once per process, timed apart from the images
        _MODELS[key] = model
    return _MODELS[key]


def extract_chunk(config: dict, preprocess: dict, items: list, device: str = "auto") -> dict:
    """Compact patch features ``[n, h, w, D]`` (float32) of a chunk of images.

    ``items``: paths on a filesystem every node sees, or ``(name, bytes)`` pairs
    (``--ship-images``)."""
    t0 = time.perf_counter()
    model = _worker_model(config, preprocess, device)
    load_s = time.perf_counter() - t0
    images = [io.BytesIO(it[1]) if isinstance(it, tuple) else it for it in items]
    feats = model.extract(images).cpu().numpy().astype(np.float32, copy=False)
    return {"features": feats, "seconds": time.perf_counter() - t0 - load_s, "load_seconds": load_s,
            "channels": list(model.embedding.channels), **process_info()}


def shard_greedy_task(features: np.ndarray, count: int, projection_dim: int, seed: int) -> dict:
    """One shard's greedy k-center (:func:`~patchcore_core.ext.composable.shard_greedy`), timed."""
    t0 = time.perf_counter()
    # np.array: arrays from Ray's object store are read-only; torch wants its own copy
    local, radius = shard_greedy(torch.from_numpy(np.array(features)), count, projection_dim, seed)
    return {"indices": local.numpy(), "radius": radius, "seconds": time.perf_counter() - t0,
            **process_info()}


def shard_radius_task(features: np.ndarray, centres: np.ndarray) -> dict:
    """Farthest distance from this shard's points to the final picks (the covering radius, shard part)."""
    t0 = time.perf_counter()
    r = covering_radius_faiss(torch.from_numpy(np.array(features)), torch.from_numpy(np.array(centres)))
    return {"radius": r, "seconds": time.perf_counter() - t0, **process_info()}
