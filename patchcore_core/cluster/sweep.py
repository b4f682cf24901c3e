"""Sweeps as Ray tasks: one evaluation per (category, setting), one table back.

A task that fails is a row with its category, its setting and the error;
the others still finish. A task whose worker dies is run again
(``max_retries``) before it counts as failed.
"""

from __future__ import annotations

from patchcore_core.evaluation.category import evaluate_category, json_metrics

from .connect import as_completed, require_ray
from .worker import process_info

__all__ = ["evaluate_task", "run_sweep"]


def evaluate_task(root: str, category: str, shots: int | None, mask_protocol: str, config: dict,
                  measure_radius: bool = True) -> dict:
    """One evaluation on a worker: :func:`~patchcore_core.evaluation.category.evaluate_category`'s metrics
    (NaN as None), the node it ran on and (with ``measure_radius``) the covering radius of its bank."""
    res = evaluate_category(root, category, shots=shots, device="auto", progress=False,
                            mask_protocol=mask_protocol, measure_radius=measure_radius, **config)
    return {**json_metrics(res.metrics), "node": process_info()["node"]}


def _setting_text(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(config.items())) or "defaults"


def run_sweep(jobs: list[dict], max_retries: int = 1, timeout_s: float = 3600.0,
              progress: bool = False, on_row=None) -> list[dict]:
    """Run evaluations as Ray tasks (connect first: :func:`.connect.connect`).

    Args:
        jobs: dicts with ``root``, ``category`` and optionally ``shots``,
            ``mask_protocol``, ``config`` (model settings) and
            ``measure_radius`` (default true).
        on_row: called with each row as it arrives (e.g. to print progress).

    Returns:
        one row per job, in the jobs' order: the metrics plus ``setting``, or
        ``category``, ``setting`` and ``error`` for a job that failed.
    """
    ray = require_ray()
    task = ray.remote(max_retries=max_retries)(evaluate_task)
    refs = [task.remote(str(job["root"]), job["category"], job.get("shots"),
                        job.get("mask_protocol", "nearest"), dict(job.get("config", {})),
                        job.get("measure_radius", True)) for job in jobs]
    rows: list = [None] * len(jobs)
    for i, result, error in as_completed(refs, timeout_s, "sweep (cluster)", progress):
        if error is None:
            rows[i] = {**result, "setting": _setting_text(jobs[i].get("config", {}))}
        else:
            rows[i] = _failed(jobs[i], error)
        if on_row:
            on_row(rows[i])
    return rows


def _failed(job: dict, message: str) -> dict:
    return {"category": job["category"], "setting": _setting_text(job.get("config", {})), "error": message}
