"""Ablations (notebook 05): many settings run (here or on a Ray cluster), one drawn.

Each run's numbers come from :func:`patchcore_core.evaluation.category.cached_evaluation`
(cached as JSON) and :func:`patchcore_core.evaluation.category.mean_over_seeds`.
"""

from __future__ import annotations

import itertools
import json

import matplotlib.pyplot as plt
import numpy as np

from patchcore_core.cluster import connect, run_sweep
from patchcore_core.evaluation.category import cache_entry, cached_evaluation, store_metrics

__all__ = ["cached_evaluations", "plot_sweep"]


def cached_evaluations(root, category: str, jobs: list[dict], cache_dir=None, device: str = "cpu",
                       ray: str | None = None, progress: bool = False) -> list[dict]:
    """Several settings of one category at once, each as :func:`cached_evaluation`.

    ``jobs``: one dict of settings per run (``shots`` and model settings,
    e.g. ``{"coreset_ratio": 0.01, "seed": 1}``). Cached runs are read; the
    others run one after another here, or, with ``ray`` (``"auto"``,
    ``"local"`` or ``HOST:PORT``; the ``cluster`` extra), all at once as Ray
    tasks. Their results go into the same cache (on this machine), under
    the same keys, so a later run without Ray reads them. On Ray a
    failed run is a row with ``error`` (not cached) and the others finish;
    here it raises.
    """
    settings = [({k: v for k, v in job.items() if k != "shots"}, job.get("shots")) for job in jobs]
    if ray is None:
        return [cached_evaluation(root, category, shots, cache_dir, device, **config)
                for config, shots in settings]
    entries = [cache_entry(root, category, shots, device, config, cache_dir) for config, shots in settings]
    rows = [{**json.loads(path.read_text())["metrics"], "cached": True} if path.is_file() else None
            for _, path in entries]
    todo = [i for i, row in enumerate(rows) if row is None]
    if not todo:
        return rows
    connect(ray)
    swept = run_sweep([{"root": str(root), "category": category, "shots": settings[i][1],
                        "config": settings[i][0], "measure_radius": False} for i in todo], progress=progress)
    for i, row in zip(todo, swept):
        if "error" in row:
            rows[i] = row
        else:
            node = row.pop("node", None)
            row.pop("setting", None)
            rows[i] = {**store_metrics(*entries[i], row), "node": node}
    return rows


def plot_sweep(rows: list[dict], x: str, title: str, xlabel: str | None = None,
               metrics=("image_auroc", "pixel_auroc", "aupro"), cost: str = "fit_seconds",
               logx: bool = False, by: str | None = None):
    """Figure of one ablation: the metrics (left) and the cost (right) against
    the swept setting ``x`` (numbers, or names shown as categories). Rows
    with an ``error`` are left out of the lines and listed in the title.
    ``by`` names a second setting (e.g. ``"sampling"``): one line per value
    of it, told apart by line style, in the metric's colour. Rows from
    :func:`mean_over_seeds` get error bars of one standard deviation."""
    ok = [r for r in rows if "error" not in r]
    failed = [str(r.get(x)) for r in rows if "error" in r]
    groups = list(dict.fromkeys(r[by] for r in ok)) if by else [None]
    xs = list(dict.fromkeys(r[x] for r in ok))
    categorical = any(isinstance(v, str) for v in xs)
    where = {v: (i if categorical else v) for i, v in enumerate(xs)}
    styles = itertools.cycle(["o-", "s--", "^:", "d-."])
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    for g, style in zip(groups, styles):
        part = [r for r in ok if by is None or r[by] == g]
        pos = [where[r[x]] for r in part]
        suffix = "" if by is None else f", {g}"
        for colour, m in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], metrics):
            ys = [np.nan if r.get(m) is None else r[m] for r in part]
            spread = [r.get(f"{m}_std") or 0.0 for r in part]
            if any(spread):
                a.errorbar(pos, ys, yerr=spread, fmt=style, color=colour, lw=2, capsize=3, label=m + suffix)
            else:
                a.plot(pos, ys, style, color=colour, lw=2, label=m + suffix)
        if categorical and by is None:
            b.bar(pos, [r[cost] for r in part], width=0.6, color="tab:grey")
        else:
            b.plot(pos, [r[cost] for r in part], style, color="tab:grey", lw=2, label=g)
    a.set_ylabel("metric (1 = perfect)")
    a.legend(loc="lower right", fontsize=9 if by else None)
    a.set_title("accuracy")
    b.set_ylabel(cost.replace("_", " "))
    b.set_title("cost")
    if by:
        b.legend()
    for ax in (a, b):
        ax.set_xlabel(xlabel or x)
        ax.grid(alpha=0.3)
        if categorical:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        elif logx:
            ax.set_xscale("log")
    fig.suptitle(title + (f"  (failed: {', '.join(failed)})" if failed else ""), fontsize=13)
    fig.tight_layout()
    return fig
