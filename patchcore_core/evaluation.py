"""Fit on a category's good images, predict its test set, and measure."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .data import MVTecCategory, check_mask_protocol, few_shot
from .metrics import aupro, f1_max, image_auroc, pixel_auroc
from .model import PatchCore

__all__ = ["CategoryResult", "evaluate_category", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


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
                      progress: bool = True, mask_protocol: str = "nearest", **config) -> CategoryResult:
    """Fit PatchCore on ``root/category/train/good`` and score its test set.

    ``mask_protocol`` says how the ground truth is resized to the model's
    resolution (see :meth:`~patchcore_core.data.Preprocess.mask`).
    """
    check_mask_protocol(mask_protocol)  # before minutes of fitting, not after
    cat = MVTecCategory(root, category)
    if not cat.test:
        raise ValueError(f"{cat.path / 'test'}: no test images to evaluate on")
    train = few_shot(cat.train, shots, seed=config.get("seed", 0))
    model = PatchCore(device=device, **config)
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
        "n_train": len(train),
        "n_test": len(cat.test),
        "n_missing_masks": len(unmasked),   # defective test images left out of the pixel metrics
        "memory_bank_size": len(model.bank),
        "fit_seconds": round(fit_s, 2),
        "predict_seconds_per_image": round(predict_s, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "backbone": model.config.backbone,
        "coreset_ratio": model.config.coreset_ratio,
        "image_size": model.config.image_size,
        "crop_mode": model.preprocess.mode,
        "mask_protocol": mask_protocol,
        "threshold": model.threshold,
        "device": str(model.device),
    }
    return CategoryResult(metrics, labels, scores, [t.defect for t in cat.test],
                          [t.path for t in cat.test], masks, maps, model, [t.path for t in unmasked])
