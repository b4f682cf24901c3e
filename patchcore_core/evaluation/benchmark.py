"""A whole benchmark: every category of a dataset, resumable, in the paper's layout.

    patchcore benchmark --data ~/mvtec --out runs/wrn50 --backbone wide_resnet50_2
    patchcore benchmark --data ~/mvtec --out runs/fewshot --shots 1 5 10 --seeds 3

One *run* is (category, shots, seed): :func:`~patchcore_core.evaluation.category.evaluate_category`
with those settings, its row holding the ``evaluate --json`` keys. After each
run everything in ``DIR`` is rewritten (atomically), so an interrupted
benchmark loses at most the run under way, and a second call skips the runs
already in ``DIR/results.csv``:

* ``results.csv`` / ``results.json``: one row per run, and the means;
* ``results.md``: the paper's tables (per category, and few-shot if asked);
* ``settings.json``: the settings the runs were made with. Resuming with
  other settings is refused: a table mixing two settings would be wrong.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from patchcore_core._version import __version__
from patchcore_core.data.mvtec import list_categories
from patchcore_core.pipeline.config import PatchCoreConfig
from patchcore_core.util.atomic import atomic_path
from patchcore_core.util.numbers import is_number, json_safe

from .category import evaluate_category

__all__ = ["run_benchmark", "read_results", "mean_rows", "markdown_report", "category_order",
           "MVTEC_TEXTURES", "MVTEC_OBJECTS", "RUN_KEYS", "PAPER_METRICS"]

# The paper's order: textures, then objects (Roth et al. 2022, per-class tables).
MVTEC_TEXTURES = ["carpet", "grid", "leather", "tile", "wood"]
MVTEC_OBJECTS = ["bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush",
                 "transistor", "zipper"]
RUN_KEYS = ("category", "shots", "seed")
# (our key, the paper's column)
PAPER_METRICS = [("image_auroc", "Image AUROC"), ("pixel_auroc", "Pixel AUROC"), ("aupro", "PRO")]
THRESHOLD_METRICS = [("false_alarm_rate", "False alarms"), ("miss_rate", "Misses")]


def category_order(categories) -> list[str]:
    """MVTec AD's categories in the paper's order, any others after them (sorted)."""
    known = [c for c in MVTEC_TEXTURES + MVTEC_OBJECTS if c in categories]
    return known + sorted(c for c in categories if c not in known)


def _parse(value: str):
    """A CSV cell back to its value: numbers as numbers, empty as None."""
    if value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(value, value)


def read_results(out_dir) -> list[dict]:
    """The rows of ``out_dir/results.csv`` (none if there is no such file)."""
    path = Path(out_dir) / "results.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
    for row in rows:
        if row.get("shots") == "all":
            row["shots"] = None
    return rows


def mean_rows(rows: list[dict]) -> list[dict]:
    """Per shot count: each metric averaged over categories for every seed, then
    the mean over seeds and (``<key>_std``) its sample standard deviation across
    seeds (0 with one seed). Metrics a category could not measure (None) are
    left out of that category's average, not counted as 0."""
    out = []
    for shots in sorted({r["shots"] for r in rows}, key=lambda s: (s is not None, s or 0)):
        group = [r for r in rows if r["shots"] == shots]
        seeds = sorted({r["seed"] for r in group})
        keys = [k for k in group[0] if k not in RUN_KEYS
                and all(r.get(k) is None or isinstance(r.get(k), (int, float)) for r in group)
                and not any(isinstance(r.get(k), bool) for r in group)]
        row = {"category": "mean", "shots": shots, "seeds": len(seeds),
               "categories": len({r["category"] for r in group})}
        for key in keys:
            per_seed = []
            for seed in seeds:
                vals = [r[key] for r in group if r["seed"] == seed and is_number(r.get(key))]
                if vals:
                    per_seed.append(float(np.mean(vals)))
            row[key] = float(np.mean(per_seed)) if per_seed else None
            row[f"{key}_std"] = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
        out.append(row)
    return out


def _pct(v, std=None) -> str:
    if not is_number(v):
        return "n/a"
    return f"{100 * v:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def markdown_report(rows: list[dict], settings: dict) -> str:
    """The paper's layout: a per-category table (percent, one decimal, mean last)
    for full-data runs, and a few-shot table (rows: images per category) when
    runs with ``shots`` exist."""
    cfg = settings.get("config", {})
    lines = [f"# PatchCore benchmark: {settings.get('data', '')}", "",
             f"Backbone {cfg.get('backbone')}, coreset {cfg.get('coreset_ratio')}, image size "
             f"{cfg.get('image_size')}, target false-alarm rate {cfg.get('false_alarm_rate')} "
             f"(0: largest held-out score), masks {settings.get('mask_protocol')}. Values in %; "
             "false alarms and misses at the calibrated threshold.", ""]
    full = [r for r in rows if r["shots"] is None]
    if full:
        cols = PAPER_METRICS + THRESHOLD_METRICS
        lines += ["| Category | " + " | ".join(name for _, name in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for cat in category_order({r["category"] for r in full}):
            mine = [r for r in full if r["category"] == cat]
            found = [[r[k] for r in mine if is_number(r.get(k))] for k, _ in cols]
            vals = [np.mean(v) if v else None for v in found]
            lines.append(f"| {cat} | " + " | ".join(_pct(v) for v in vals) + " |")
        mean = next(m for m in mean_rows(full))
        lines.append("| **Mean** | " + " | ".join(f"**{_pct(mean.get(k))}**" for k, _ in cols) + " |")
        lines.append("")
    few = [r for r in rows if r["shots"] is not None]
    if few:
        means = mean_rows(few)
        lines += ["## Few-shot (images per category; mean ± std over seeds of the category mean)", "",
                  "| Shots | Seeds | " + " | ".join(name for _, name in PAPER_METRICS) + " |",
                  "|---:|---:|" + "---:|" * len(PAPER_METRICS)]
        for m in means:
            lines.append(f"| {m['shots']} | {m['seeds']} | "
                         + " | ".join(_pct(m.get(k), m.get(f"{k}_std")) for k, _ in PAPER_METRICS) + " |")
        lines.append("")
    return "\n".join(lines)


def _write(out_dir: Path, rows: list[dict], settings: dict) -> None:
    keys = list(RUN_KEYS) + [k for k in rows[0] if k not in RUN_KEYS]
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    with atomic_path(out_dir / "results.csv") as tmp:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("all" if k == "shots" and r.get(k) is None else json_safe(r.get(k)))
                            for k in keys})
    data = {"settings": settings, "rows": [{k: json_safe(v) for k, v in r.items()} for r in rows],
            "mean": [{k: json_safe(v) for k, v in m.items()} for m in mean_rows(rows)]}
    with atomic_path(out_dir / "results.json") as tmp:
        tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
    with atomic_path(out_dir / "results.md") as tmp:
        tmp.write_text(markdown_report(rows, settings))


def _settings(root, config: dict, mask_protocol: str, dataset: str) -> dict:
    full = PatchCoreConfig(**config).to_dict()
    full.pop("seed")  # the seed is part of each run, not of the benchmark
    return {"data": str(Path(root).resolve()), "dataset": dataset, "config": full,
            "mask_protocol": mask_protocol, "version": __version__}


def _check_same_settings(out_dir: Path, settings: dict) -> None:
    path = out_dir / "settings.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    diff = [k for k in ("data", "config", "mask_protocol") if old.get(k) != settings.get(k)]
    if "config" in diff:
        diff = [f"config.{k}" for k in settings["config"]
                if old.get("config", {}).get(k) != settings["config"][k]] + [d for d in diff if d != "config"]
    if diff:
        raise ValueError(f"{out_dir} holds results made with other settings ({', '.join(diff)}); "
                         "give another --out, or --force to start it again")


def run_benchmark(root, out_dir, categories: list[str] | None = None, shots: list[int] | None = None,
                  seeds: list[int] | None = None, force: bool = False, dataset: str = "mvtec_ad",
                  mask_protocol: str = "nearest", device: str = "auto", progress: bool = True,
                  log=None, **config) -> list[dict]:
    """Evaluate every category (every shot count and seed) and write ``out_dir``.

    ``shots``: few-shot runs with that many training images each (``None``:
    all of them). ``seeds``: default ``[config seed or 0]``. Returns all rows,
    those read from an earlier call included.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    root, out_dir = Path(root), Path(out_dir)
    cats = category_order(categories or list_categories(root))
    if not cats:
        raise ValueError(f"{root} holds no category (no <category>/train/good folder)")
    seeds = list(seeds) if seeds else [config.pop("seed", 0)]
    config.pop("seed", None)
    settings = _settings(root, config, mask_protocol, dataset)
    out_dir.mkdir(parents=True, exist_ok=True)
    if force:
        rows = []
    else:
        _check_same_settings(out_dir, settings)
        rows = read_results(out_dir)
    with atomic_path(out_dir / "settings.json") as tmp:
        tmp.write_text(json.dumps(settings, indent=1))
    done = {tuple(r[k] for k in RUN_KEYS) for r in rows}
    todo = [(c, k, s) for c in cats for k in (shots or [None]) for s in seeds if (c, k, s) not in done]
    if len(todo) < len(cats) * len(shots or [None]) * len(seeds):
        log(f"resuming: {len(done)} run(s) already in {out_dir / 'results.csv'} are kept "
            "(--force runs them again)")
    for cat, k, seed in tqdm(todo, desc="benchmark", unit="run", disable=not progress):
        log(f"== {cat}" + (f", {k} shots" if k else "") + f", seed {seed}")
        res = evaluate_category(root, cat, shots=k, device=device, progress=False,
                                mask_protocol=mask_protocol, seed=seed, **config)
        rows.append({"category": cat, "shots": k, "seed": seed,
                     **{key: v for key, v in res.metrics.items() if key != "category"}})
        _write(out_dir, rows, settings)
    if rows and not todo:
        _write(out_dir, rows, settings)  # e.g. a report format that changed since
    return rows
