"""Fit on a category's good images, predict its test set, and measure.

Also what sweeps build on: results cached as JSON (:func:`cached_evaluation`;
:func:`patchcore_core.teaching.sweeps.cached_evaluations` runs many settings at once,
optionally as Ray tasks) and several seeds of one setting summarised
(:func:`mean_over_seeds`).
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from patchcore_core._version import __version__
from patchcore_core.data.builtin import default_cache_dir
from patchcore_core.data.mvtec import MVTecCategory, few_shot
from patchcore_core.ext.composable import MeasuredWork
from patchcore_core.ext.ensemble import make_model
from patchcore_core.pipeline.patchcore import PatchCore
from patchcore_core.pipeline.preprocess import check_mask_protocol
from patchcore_core.util.atomic import atomic_path
from patchcore_core.util.numbers import json_safe

from .metrics import aupro, f1_max, image_auroc, pixel_auroc

__all__ = ["CategoryResult", "evaluate_category", "threshold_rates", "peak_rss_mb", "experiment_cache_dir",
           "cached_evaluation", "cache_entry", "store_metrics", "mean_over_seeds"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def threshold_rates(labels, scores, threshold: float | None) -> tuple[float, float]:
    """(false-alarm rate, miss rate) of the decision ``score > threshold``:
    the share of good images (label 0) called anomalous and the share of
    defective ones (label 1) called normal. NaN where there is no threshold
    or no image of that kind."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    if threshold is None:
        return float("nan"), float("nan")
    flagged = scores > threshold
    good, bad = labels == 0, labels == 1
    far = float(flagged[good].mean()) if good.any() else float("nan")
    miss = float((~flagged[bad]).mean()) if bad.any() else float("nan")
    return far, miss


@dataclass
class CategoryResult:
    """Everything ``patchcore evaluate`` reports for one category, plus the
    raw predictions for plots (``labels``, ``scores``, ``masks``, ``maps``)."""

    metrics: dict
    labels: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    defects: list = field(repr=False)
    paths: list = field(repr=False)
    masks: np.ndarray = field(repr=False)
    maps: np.ndarray = field(repr=False)
    model: PatchCore = field(repr=False)
    missing_masks: list = field(default_factory=list, repr=False)  # defective images without a mask


def evaluate_category(root, category: str, shots: int | None = None, device: str = "auto",
                      progress: bool = True, mask_protocol: str = "nearest", work=None,
                      measure_radius: bool = False, **config) -> CategoryResult:
    """Fit PatchCore on ``root/category/train/good`` and score its test set.

    ``mask_protocol`` says how the ground truth is resized to the model's
    resolution (see :meth:`~patchcore_core.pipeline.preprocess.Preprocess.mask`). ``work``: where
    the fit runs (as for :class:`~patchcore_core.PatchCore`, e.g. a ``RayCluster``);
    ``measure_radius``: also report the bank's covering radius (:class:`MeasuredWork`).
    """
    check_mask_protocol(mask_protocol)  # before minutes of fitting, not after
    cat = MVTecCategory(root, category)
    if not cat.test:
        raise ValueError(f"{cat.path / 'test'}: no test images to evaluate on")
    train = few_shot(cat.train, shots, seed=config.get("seed", 0))
    if work is None and measure_radius:
        work = MeasuredWork()
    model = make_model(device=device, work=work, **config)  # a PatchCoreEnsemble for "a+b+c" backbones
    t0 = time.perf_counter()
    model.fit(train, progress=progress)
    fit_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    scores, maps, _, _ = model.score([t.path for t in cat.test], progress=progress)
    predict_s = (time.perf_counter() - t0) / len(cat.test)
    labels = np.array([t.is_anomalous for t in cat.test], dtype=int)
    masks = np.stack([cat.load_mask(t, model.preprocess, mask_protocol) for t in cat.test])
    maps, scores = maps.numpy(), scores.numpy()

    both = 0 < labels.sum() < len(labels)
    far, miss = threshold_rates(labels, scores, model.threshold)
    # A defective image without its mask file would count as all-normal pixels and
    # quietly lower the pixel metrics; it is left out of them (not of the image metrics).
    unmasked = [t for t in cat.test if t.is_anomalous and t.mask_path is None]
    pixels = np.array([not (t.is_anomalous and t.mask_path is None) for t in cat.test])
    pix_masks, pix_maps = masks[pixels], maps[pixels]
    measurable = pix_masks.any() and not pix_masks.all()
    metrics = {
        "category": category,
        "image_auroc": image_auroc(labels, scores) if both else float("nan"),
        "pixel_auroc": pixel_auroc(pix_masks, pix_maps) if measurable else float("nan"),
        "aupro": aupro(pix_masks, pix_maps) if measurable else float("nan"),
        "f1_max": f1_max(labels, scores) if both else float("nan"),
        "false_alarm_rate": far,   # good test images above the calibrated threshold
        "miss_rate": miss,         # defective test images at or below it
        "n_train": len(train),
        "n_test": len(cat.test),
        "n_missing_masks": len(unmasked),   # defective test images left out of the pixel metrics
        "memory_bank_size": model.memory_bank_size,
        "fit_seconds": round(fit_s, 2),
        "predict_seconds_per_image": round(predict_s, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "backbone": model.config.backbone,
        "coreset": model.config.coreset,
        "coreset_ratio": model.config.coreset_ratio,
        "knn_backend": model.config.knn_backend,
        "image_size": model.config.image_size,
        "crop_mode": model.preprocess.mode,
        "mask_protocol": mask_protocol,
        "threshold": model.threshold,
        "target_false_alarm_rate": model.config.false_alarm_rate,  # 0: the largest held-out score
        "device": str(model.device),
    }
    for key in ("covering_radius", "single_machine_covering_radius", "cluster_nodes", "cluster_shards"):
        if key in model.stats:  # measured only with a cluster, or when asked
            metrics[key] = model.stats[key]
    return CategoryResult(metrics, labels, scores, [t.defect for t in cat.test],
                          [t.path for t in cat.test], masks, maps, model, [t.path for t in unmasked])


def experiment_cache_dir() -> Path:
    """Where :func:`cached_evaluation` keeps its JSON results
    (``$PATCHCORE_CACHE/experiments``, else ``~/.cache/patchcore_core/experiments``)."""
    return default_cache_dir() / "experiments"


def cache_entry(root, category: str, shots: int | None, device: str, config: dict,
                 cache_dir=None) -> tuple[dict, Path]:
    """The cache key (everything that changes the result) and its JSON file."""
    key = {"root": str(Path(root).resolve()), "category": category, "shots": shots,
           "device": device, "config": dict(sorted(config.items())), "version": __version__}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir is not None else experiment_cache_dir()
    return key, cache / f"{category}-{digest}.json"


def json_metrics(metrics: dict) -> dict:
    """Metrics as JSON can hold them: NaN (a metric that is undefined here) as None."""
    return json_safe(metrics)


def store_metrics(key: dict, path: Path, metrics: dict) -> dict:
    """Write one run's metrics under its cache key (:func:`cache_entry`); returns them as read back."""
    metrics = json_metrics(metrics)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"key": key, "metrics": metrics}, indent=1, default=str))
    return {**metrics, "cached": False}


def cached_evaluation(root, category: str, shots: int | None = None, cache_dir=None,
                      device: str = "cpu", **config) -> dict:
    """:func:`~patchcore_core.evaluation.category.evaluate_category`'s metrics, cached as JSON.

    The cache key is everything that changes the result: data root,
    category, shots, device, settings and package version. A second call
    with the same key reads the file (``"cached": True`` in the result).
    """
    key, path = cache_entry(root, category, shots, device, config, cache_dir)
    if path.is_file():
        return {**json.loads(path.read_text())["metrics"], "cached": True}
    result = evaluate_category(root, category, shots=shots, device=device, progress=False, **config)
    return store_metrics(key, path, result.metrics)


def mean_over_seeds(runs: list[dict]) -> dict:
    """One setting run with several seeds -> one row: numbers averaged, each
    with ``<key>_std`` (sample standard deviation; 0 for a single run).
    ``cached`` is true only if every run was; a failed run (``error``) is
    returned as it is."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    row = {**runs[0], "seeds": len(runs), "cached": all(r.get("cached", False) for r in runs)}
    for key, value in runs[0].items():
        values = [r.get(key) for r in runs]
        if isinstance(value, bool) or not all(isinstance(v, (int, float)) for v in values):
            continue
        same = all(v == values[0] for v in values)  # sizes, counts: keep them as they are
        row[key] = value if same else float(np.mean(values))
        row[f"{key}_std"] = 0.0 if same else float(np.std(values, ddof=1))
    return row
