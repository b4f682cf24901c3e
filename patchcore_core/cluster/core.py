"""``RayCluster``: the steps of a PatchCore fit that a cluster runs.

    >>> cluster = RayCluster("local")                        # doctest: +SKIP
    >>> model = PatchCore(work=cluster).fit(images)       # doctest: +SKIP

1. features: the training images in chunks, one Ray task each; a task
   whose worker dies is run again elsewhere (``max_retries``);
2. coreset: greedy k-center per shard as tasks, one more greedy pass over
   the union here (:func:`~patchcore_core.ext.composable.composable_greedy_coreset`);
3. covering radius: each shard's farthest point from the final picks, as tasks;
4. search: the bank as one exact faiss index per shard actor (:mod:`.bank`).

``stats`` keeps what the benchmark reports: seconds per step, bytes
passed to and from tasks and actors, peak memory per node.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from patchcore_core.ext.composable import composable_greedy_coreset, covering_radius_faiss
from patchcore_core.pipeline.coreset import greedy_coreset

from .bank import ShardedMemoryBank
from .connect import ClusterError, alive_nodes, as_completed, connect, require_ray
from .worker import extract_chunk, shard_greedy_task, shard_radius_task

__all__ = ["RayCluster"]


class RayCluster:
    """A connection to a Ray cluster and the PatchCore steps it runs.

    Args:
        address: ``"local"``, ``"auto"`` or ``"HOST:PORT"`` (see :func:`.connect.connect`).
        ship_images: send image bytes to the workers instead of paths (no shared filesystem).
        n_shards: coreset and bank shards (default: one per node).
        chunk_images: images per extraction task (default: about four tasks per CPU).
        max_retries: times a task is run again after its worker died.
        single_machine_radius: also run the single-machine greedy coreset on the
            same features, to report its covering radius beside the composable one.
        timeout_s: longest wait for one task or shard answer.
    """

    def __init__(self, address: str = "local", ship_images: bool = False, n_shards: int | None = None,
                 chunk_images: int | None = None, max_retries: int = 2, single_machine_radius: bool = False,
                 timeout_s: float = 1800.0, num_cpus: int | None = None):
        self.address, self.ship_images = address, ship_images
        self.ray = connect(address, num_cpus=num_cpus)
        self.n_shards_setting, self.chunk_images = n_shards, chunk_images
        self.max_retries, self.timeout_s = max_retries, timeout_s
        self.single_machine_radius = single_machine_radius
        self.stats: dict = {}
        self._last_shards: dict = {}
        self._remote = {
            "extract": self.ray.remote(max_retries=max_retries)(extract_chunk),
            "greedy": self.ray.remote(max_retries=max_retries)(shard_greedy_task),
            "radius": self.ray.remote(max_retries=max_retries)(shard_radius_task),
        }

    # ---------------------------------------------------------------- facts
    @property
    def node_ids(self) -> list[str]:
        return [n["NodeID"] for n in alive_nodes()]

    @property
    def n_nodes(self) -> int:
        return len(alive_nodes())

    @property
    def n_cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    @property
    def n_shards(self) -> int:
        return self.n_shards_setting or self.n_nodes

    def _add(self, key: str, value: float) -> None:
        self.stats[key] = self.stats.get(key, 0) + value

    def _note_process(self, info: dict) -> None:
        peaks = self.stats.setdefault("peak_rss_mb_per_node", {})
        peaks[info["node"]] = max(peaks.get(info["node"], 0.0), info["peak_rss_mb"])

    def _gather(self, refs: list, what: str, progress: bool = False) -> list:
        """Results in order; a task that failed for good is an error saying which one."""
        out = [None] * len(refs)
        for i, result, error in as_completed(refs, self.timeout_s, what, progress):
            if error is not None:
                raise ClusterError(f"{what}: task {i} failed (after up to {self.max_retries} retries): "
                                   f"{error}")
            out[i] = result
            self._add("bytes_between_nodes", _nbytes(result))
            if isinstance(result, dict) and "node" in result:
                self._note_process(result)
        return out

    # ---------------------------------------------------------- 1. features
    def extract(self, model, images: list, progress: bool = False) -> tuple[torch.Tensor, list[int]]:
        """(``[N, h, w, D]`` compact features of ``images``, channels per layer), computed by the
        workers (same values as ``model.extract(images)``). A :class:`~patchcore_core.PatchCore` hook."""
        c = model.preprocess
        pre = {"resize": c.resize, "crop": c.crop, "mode": c.mode}
        config = model.config.to_dict()
        chunk = self.chunk_images or max(1, math.ceil(len(images) / (4 * self.n_cpus)))
        t0 = time.perf_counter()
        refs = []
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            if self.ship_images:
                part = [(str(p), Path(p).read_bytes()) for p in part]
                self._add("bytes_between_nodes", sum(len(b) for _, b in part))
            elif not all(isinstance(p, (str, os.PathLike)) for p in part):
                raise ClusterError("the cluster reads training images by path (shared filesystem); give "
                                   "paths, or use ship_images=True (--ship-images) for files")
            else:
                part = [str(p) for p in part]
            refs.append(self._remote["extract"].remote(config, pre, part, "auto"))
        results = self._gather(refs, "features (cluster)", progress)
        self.stats["extract_seconds"] = round(time.perf_counter() - t0, 3)
        self.stats["extract_pids"] = sorted({r["pid"] for r in results})
        self.stats["extract_task_seconds_per_image"] = sum(r["seconds"] for r in results) / len(images)
        self.stats["backbone_load_seconds"] = max(r["load_seconds"] for r in results)
        feats = torch.from_numpy(np.concatenate([r["features"] for r in results]))
        return feats, results[0]["channels"]  # the driver builds the same embedding from them

    # ----------------------------------------------------------- 2. coreset
    def _map_shards(self, fn, jobs):
        refs = []
        for feats, count, dim, seed in jobs:
            arr = np.ascontiguousarray(feats.detach().float().cpu().numpy())
            self._add("bytes_between_nodes", arr.nbytes)
            refs.append(self._remote["greedy"].remote(arr, count, dim, seed))
        answers = self._gather(refs, "coreset shards")
        self._last_shards = {"shard_rows": [len(j[0]) for j in jobs], "shard_picks": [j[1] for j in jobs],
                      "shard_seconds": [a["seconds"] for a in answers]}
        return [(torch.from_numpy(np.array(a["indices"])), a["radius"]) for a in answers]

    def coreset(self, features: torch.Tensor, ratio: float, projection_dim: int = 128,
                seed: int = 0) -> torch.Tensor:
        """Rows of ``features`` kept by the composable greedy coreset over :attr:`n_shards` shards."""
        t0 = time.perf_counter()
        run = composable_greedy_coreset(features, min(self.n_shards, len(features)), ratio,
                                        projection_dim=projection_dim, seed=seed, map_fn=self._map_shards)
        total = time.perf_counter() - t0
        # every call's sizes and times (a fit makes several: calibration banks, then the bank);
        # the benchmark's projection fits its cost model to them
        call = {**self._last_shards, "rows": len(features), "k": len(run.indices), "seconds": total,
                "merge_rows": int(sum(len(p) for p in run.shard_picks))}
        call["merge_seconds"] = total - max(call["shard_seconds"])  # the shards ran side by side
        self.stats.setdefault("coreset_calls", []).append(call)
        return run.indices.to(features.device)

    def greedy_coreset(self, features: torch.Tensor, ratio: float, projection_dim: int, seed: int,
                       progress: bool = False) -> torch.Tensor:
        """The :class:`~patchcore_core.PatchCore` hook: greedy per shard, then over the union."""
        return self.coreset(features, ratio, projection_dim, seed)

    # --------------------------------------------------- 3. covering radius
    def covering_radius(self, features: torch.Tensor, centres: torch.Tensor) -> float:
        """Exact covering radius of ``centres`` over ``features``, one task per shard."""
        t0 = time.perf_counter()
        c = np.ascontiguousarray(centres.detach().float().cpu().numpy())
        c_ref = self.ray.put(c)
        refs = []
        for rows in torch.tensor_split(torch.arange(len(features)), min(self.n_shards, len(features))):
            arr = np.ascontiguousarray(features[rows].detach().float().cpu().numpy())
            self._add("bytes_between_nodes", arr.nbytes + c.nbytes)
            refs.append(self._remote["radius"].remote(arr, c_ref))
        radius = max(a["radius"] for a in self._gather(refs, "covering radius"))
        self.stats["radius_seconds"] = round(time.perf_counter() - t0, 3)
        return radius

    # ------------------------------------------------------------ 4. search
    def shard_bank(self, bank) -> ShardedMemoryBank:
        """The same bank, searched by one faiss index (the bank's backend) per shard actor."""
        sharded = ShardedMemoryBank(bank.features, bank.origin, self.n_shards, self.node_ids, self.timeout_s,
                                    bank.backend, bank.ann)
        self._add("bytes_between_nodes", sharded.shipped_bytes)
        return sharded

    def finish_bank(self, bank, features: torch.Tensor, config) -> tuple[ShardedMemoryBank, dict]:
        """The :class:`~patchcore_core.PatchCore` hook after the bank is built: its covering radius
        over every training patch (and, if asked, the single-machine greedy coreset's), then the
        bank sharded over actors, each training its own index."""
        t0 = time.perf_counter()
        out = {"covering_radius": self.covering_radius(features, bank.features)}
        if self.single_machine_radius:
            single = greedy_coreset(features, count=len(bank), projection_dim=config.projection_dim,
                                    seed=config.seed)
            out["single_machine_covering_radius"] = covering_radius_faiss(features, features[single.indices])
        out["radius_seconds"] = round(time.perf_counter() - t0, 3)  # a measurement, not part of the fit
        return self.shard_bank(bank), {**out, **self.describe()}

    def describe(self) -> dict:
        """What a results table or ``--json`` says about the cluster."""
        return {"cluster_nodes": self.n_nodes, "cluster_cpus": self.n_cpus, "cluster_shards": self.n_shards}

    def shutdown(self) -> None:
        """Disconnect (and stop a ``"local"`` instance)."""
        require_ray().shutdown()


def _nbytes(obj) -> int:
    """Size of a task's answer: its arrays' bytes (the rest is small)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0
