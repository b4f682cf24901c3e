"""Published PatchCore figures on MVTec AD, and a run's results beside them.

The figures live in ``paper_figures/mvtec_ad.json``, each entry with its source
(the paper's tables, or the reference code's ``results.csv`` at a named
commit). Values are fractions; ``None`` where a figure is not transcribed.

    >>> from patchcore_core.evaluation.published import load_published
    >>> [e["name"] for e in load_published()]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from patchcore_core.util.atomic import atomic_path
from patchcore_core.util.numbers import is_number

from .benchmark import category_order

__all__ = ["load_published", "published_value", "comparison_figure", "figure_title", "PAPER_BACKBONE"]

PAPER_BACKBONE = "wide_resnet50_2"
METRICS = [("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("aupro", "PRO")]
# Which published entries the figure shows beside a run (the paper's per-class
# table and the reference code's baseline); the rest are in the JSON for tables.
FIGURE_ENTRIES = ["paper PatchCore-1%", "reference code WR50 10%"]


def load_published(dataset: str = "mvtec_ad") -> list[dict]:
    """The published entries for ``dataset`` (each: name, backbone, coreset_ratio,
    source, mean, per_category)."""
    path = files("patchcore_core.evaluation") / "paper_figures" / f"{dataset}.json"
    if not path.is_file():
        raise ValueError(f"no published figures for dataset {dataset!r} (have: mvtec_ad)")
    return json.loads(path.read_text())["entries"]


def published_value(entry: dict, category: str, metric: str):
    """One figure of an entry: a category's, or ``category="mean"`` for the class mean."""
    if category == "mean":
        return entry["mean"].get(metric)
    return ((entry.get("per_category") or {}).get(category) or {}).get(metric)


def figure_title(backbone: str) -> str:
    """The comparison figure's title; it says when the backbone is not the paper's."""
    title = "PatchCore: this run beside the published MVTec AD figures ('–': no published figure)"
    if backbone != PAPER_BACKBONE:
        title += f"\nthis run's backbone ({backbone}) differs from the paper's ({PAPER_BACKBONE})"
    return title


def comparison_figure(rows: list[dict], path, config: dict, dataset: str = "mvtec_ad") -> Path:
    """A PNG at ``path``: per category (and the mean), this run's image AUROC,
    pixel AUROC and PRO beside the published figures. ``rows`` are benchmark
    rows (full-data runs are used; several seeds are averaged). The title says
    when this run's backbone is not the paper's."""
    full = [r for r in rows if r.get("shots") is None]
    cats = category_order({r["category"] for r in full}) + ["mean"]
    entries = [e for e in load_published(dataset) if e["name"] in FIGURE_ENTRIES]
    backbone = config.get("backbone", "?")

    def ours(cat, metric):
        vals = [r[metric] for r in full
                if (cat == "mean" or r["category"] == cat) and is_number(r.get(metric))]
        if cat == "mean":  # class mean: average of the per-category averages
            per = [ours(c, metric) for c in cats[:-1]]
            per = [v for v in per if v is not None]
            return float(np.mean(per)) if per else None
        return float(np.mean(vals)) if vals else None

    def theirs(entry, cat, metric):
        if cat != "mean":
            return published_value(entry, cat, metric)
        # the mean over the same categories as this run (the paper's own mean only for all 15)
        if set(cats[:-1]) >= set(entry.get("per_category") or {}) and entry.get("per_category"):
            return published_value(entry, "mean", metric)
        vals = [published_value(entry, c, metric) for c in cats[:-1]]
        return float(np.mean(vals)) if vals and all(is_number(v) for v in vals) else None

    series = [(f"this run ({backbone}, coreset {config.get('coreset_ratio')})", ours)]
    series += [(e["name"], lambda c, m, e=e: theirs(e, c, m)) for e in entries]
    colours = ["#d95f02", "#1b9e77", "#7570b3"]
    fig = Figure(figsize=(max(8, 0.7 * len(cats) + 3), 9))
    axes = fig.subplots(len(METRICS), 1, sharex=True)
    x = np.arange(len(cats))
    width = 0.8 / len(series)
    for ax, (metric, label) in zip(axes, METRICS):
        lows = []
        for i, (name, get) in enumerate(series):
            vals = [get(c, metric) for c in cats]
            have = [j for j, v in enumerate(vals) if is_number(v)]
            lows += [vals[j] for j in have]
            ax.bar(x[have] + (i - (len(series) - 1) / 2) * width, [vals[j] for j in have], width,
                   color=colours[i % len(colours)], label=name)
            for j, v in enumerate(vals):
                if not is_number(v):  # say so rather than leave a gap that reads as zero
                    ax.text(x[j] + (i - (len(series) - 1) / 2) * width, 0.02, "–", ha="center",
                            va="bottom", fontsize=14, color=colours[i % len(colours)],
                            transform=ax.get_xaxis_transform())
        bottom = max(0.0, min(lows, default=0.5) - 0.05)
        ax.set_ylim(bottom, 1.005)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(series))
    names = cats[:-1] + ["mean of these\ncategories"]
    axes[-1].set_xticks(x, names, rotation=45, ha="right")
    fig.suptitle(figure_title(backbone), fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
