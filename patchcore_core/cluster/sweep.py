"""Sweeps as Ray tasks: one evaluation per (category, setting), one table back.

A task that fails is a row with its category, its setting and the error;
the others still finish. A task whose worker dies is run again
(``max_retries``) before it counts as failed.
"""

from __future__ import annotations

import time

from .connect import require_ray

__all__ = ["evaluate_task", "run_sweep"]


def evaluate_task(root: str, category: str, shots: int | None, mask_protocol: str, config: dict,
                  measure_radius: bool = True) -> dict:
    """One evaluation on a worker: :func:`~patchcore_core.evaluation.category.evaluate_category`'s metrics
    (NaN as None), the node it ran on and (with ``measure_radius``) the covering radius of its bank."""
    from patchcore_core.evaluation.category import evaluate_category, json_metrics

    from .worker import process_info

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
    from tqdm.auto import tqdm

    ray = require_ray()
    task = ray.remote(max_retries=max_retries)(evaluate_task)
    refs = {}
    for i, job in enumerate(jobs):
        config = dict(job.get("config", {}))
        refs[task.remote(str(job["root"]), job["category"], job.get("shots"),
                         job.get("mask_protocol", "nearest"), config, job.get("measure_radius", True))] = i
    rows: list = [None] * len(jobs)
    deadline = time.monotonic() + timeout_s
    with tqdm(total=len(jobs), desc="sweep (cluster)", disable=not progress) as bar:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1, timeout=max(0.1, deadline - time.monotonic()))
            if not done:
                for ref, i in refs.items():  # the rest timed out: reported, not waited for forever
                    ray.cancel(ref, force=True)
                    rows[i] = _failed(jobs[i], f"no answer in {timeout_s:.0f} s")
                break
            i = refs.pop(done[0])
            try:
                rows[i] = {**ray.get(done[0]), "setting": _setting_text(jobs[i].get("config", {}))}
            except ray.exceptions.RayError as exc:
                rows[i] = _failed(jobs[i], _first_error_line(exc))
            if on_row:
                on_row(rows[i])
            bar.update()
    return rows


def _failed(job: dict, message: str) -> dict:
    return {"category": job["category"], "setting": _setting_text(job.get("config", {})), "error": message}


def _first_error_line(exc) -> str:
    """The worker's own exception message, not Ray's traceback around it."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__
