"""``PatchCore``: fit on good images, predict scores and heatmaps, explain.

    >>> from patchcore_core import PatchCore
    >>> model = PatchCore().fit(good_image_paths)            # doctest: +SKIP
    >>> pred = model.predict(["test.png"])[0]                # doctest: +SKIP
    >>> pred.score, pred.normalised_score, pred.is_anomalous  # doctest: +SKIP

The pipeline, step by step (each a function of its own module):
backbone feature maps (:mod:`.backbones`) -> locally aware patch features
(:mod:`.features`) -> coreset memory bank (:mod:`.coreset`,
:mod:`.memory_bank`) -> nearest-neighbour scores and anomaly maps
(:mod:`.scoring`) -> threshold from normal images (:mod:`.calibration`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from tqdm.auto import tqdm

from .backbones import FeatureExtractor, get_spec, load_backbone
from .calibration import calibration_folds
from .coreset import greedy_coreset, random_coreset
from .data import Preprocess, image_size, read_image
from .device import resolve_device
from .features import AGGREGATIONS, PatchEmbedding, aggregate_layers
from .memory_bank import MemoryBank
from .scoring import UPSAMPLE_MODES, anomaly_map, image_scores, reweighted_image_score

__all__ = ["PatchCoreConfig", "PatchCore", "Prediction", "Explanation"]


@dataclass
class PatchCoreConfig:
    """Every setting of a PatchCore model; saved with it."""

    backbone: str = "efficientnet_lite0"      # offline default; the paper: wide_resnet50_2
    layers: tuple[str, ...] | None = None     # None: the backbone's stride-8 and -16 stages
    resize: int = 256                         # resize, then ...
    image_size: int = 224                     # ... centre-crop, as in the paper
    crop_mode: str = "auto"                   # auto: crop square images, squash elongated ones
    neighbourhood: int = 3                    # p: local aggregation over p x p
    aggregation: str = "mean"                 # mean (the paper) | unfold (its code, narrow layers)
    pretrain_dim: int = 1024                  # per-layer pooled width
    target_dim: int = 1024                    # final patch feature width
    coreset: str = "greedy"                   # greedy | random | none
    coreset_ratio: float = 0.1                # share of patches kept (paper: 1-10%)
    projection_dim: int = 128                 # random projection for coreset distances
    reweight_neighbours: int = 0              # b of Eq. 7; 0 keeps s* = max patch score
    sigma: float = 4.0                        # Gaussian smoothing of the anomaly map (px)
    upsample: str = "bilinear"                # patch scores to pixels: bilinear | nearest
    calibration_fraction: float = 0.1         # good images held out to set the threshold
    knn_backend: str = "faiss"                # faiss | torch (same answers)
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        get_spec(self.backbone)  # unknown names raise, listing the choices
        if self.layers is not None:
            self.layers = tuple(self.layers)
        if not 0 < self.coreset_ratio <= 1:
            raise ValueError(f"coreset_ratio must be in (0, 1], not {self.coreset_ratio}")
        checks = {
            "coreset": (self.coreset, ("greedy", "random", "none")),
            "crop_mode": (self.crop_mode, ("auto", "crop", "squash")),
            "knn_backend": (self.knn_backend, ("faiss", "torch")),
            "upsample": (self.upsample, UPSAMPLE_MODES),
            "aggregation": (self.aggregation, AGGREGATIONS),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; not {value!r}")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be a positive odd number, not {self.neighbourhood}")
        if not 0 < self.image_size <= self.resize:
            raise ValueError(f"need 0 < image_size <= resize; got {self.image_size} and {self.resize}")
        from .model_checks import MAX_IMAGE_SIDE, min_image_size

        smallest = min_image_size(self.backbone, self.sigma)  # else fit works and predict cannot
        if self.image_size < smallest:
            raise ValueError(f"image_size {self.image_size} is too small for {self.backbone} with sigma "
                             f"{self.sigma}: give at least {smallest} px (the backbone's deepest layer "
                             "needs a whole cell, the anomaly map's Gaussian more pixels than its radius)")
        if self.resize > MAX_IMAGE_SIDE:
            raise ValueError(f"resize {self.resize} is more than {MAX_IMAGE_SIDE} px")
        if self.reweight_neighbours < 0:
            raise ValueError(f"reweight_neighbours must be >= 0, not {self.reweight_neighbours}")

    @classmethod
    def from_dict(cls, d: dict) -> PatchCoreConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Prediction:
    """One image's result. Scores are L2 distances in feature space."""

    score: float                      # image score s (Eq. 7 if reweighting is on)
    normalised_score: float | None    # score / threshold: above 1.0 is anomalous
    is_anomalous: bool | None         # None when no threshold could be calibrated
    anomaly_map: np.ndarray           # [H, W] float32, upsampled + smoothed patch scores
    patch_scores: np.ndarray          # [h, w] float32, s_i per patch

    @property
    def verdict(self) -> str:
        return {True: "anomalous", False: "normal", None: "uncalibrated"}[self.is_anomalous]


@dataclass
class Explanation:
    """The nearest normal patch of the memory bank for one test patch."""

    row: int
    col: int
    distance: float                       # ||m^test - m||_2: the patch's score
    bank_index: int
    train_index: int                      # which training image the bank patch came from
    train_name: str
    train_row: int
    train_col: int
    box: tuple[int, int, int, int]        # (x0, y0, x1, y1) of the test patch, model pixels
    train_box: tuple[int, int, int, int]  # the same for the training patch


class PatchCore:
    """PatchCore anomaly detection (Roth et al., CVPR 2022).

    Args:
        config: a :class:`PatchCoreConfig`; keyword overrides are applied on top.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, config: PatchCoreConfig | None = None, device: str = "auto", **overrides):
        base = asdict(config) if config is not None else {}
        self.config = PatchCoreConfig(**{**base, **overrides})
        self.device = resolve_device(device)
        self._extractor: FeatureExtractor | None = None
        self.preprocess: Preprocess | None = None
        self.embedding: PatchEmbedding | None = None
        self.bank: MemoryBank | None = None
        self.threshold: float | None = None
        self.grid: tuple[int, int] | None = None
        self.train_names: list[str] = []
        self.calibration_scores: list[float] = []
        self.stats: dict = {}

    # ---------------------------------------------------------------- helpers
    @property
    def spec(self):
        return get_spec(self.config.backbone)

    @property
    def layers(self) -> tuple[str, ...]:
        return self.config.layers or self.spec.layers

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = load_backbone(self.config.backbone, self.layers, self.device)
        return self._extractor

    @property
    def is_fitted(self) -> bool:
        return self.bank is not None

    def _require_fitted(self):
        if not self.is_fitted:
            raise RuntimeError("this PatchCore model is not fitted yet: call fit(...) or load(...)")

    def _make_preprocess(self, mode: str) -> Preprocess:
        c = self.config
        return Preprocess(c.resize, c.image_size, mode, self.spec.mean, self.spec.std)

    def _batches(self, images, desc: str, progress: bool):
        bs = self.config.batch_size
        bar = tqdm(total=len(images), desc=desc, disable=not progress, unit="img")
        for start in range(0, len(images), bs):
            chunk = images[start:start + bs]
            yield torch.stack([self.preprocess(read_image(im)) for im in chunk]).to(self.device)
            bar.update(len(chunk))
        bar.close()

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised images ``[B, 3, H, W]`` -> compact patch features ``[B, h, w, D]``.

        ``D`` is :attr:`PatchEmbedding.compact_dim`: distances equal those of
        the paper's ``target_dim`` features (see :class:`PatchEmbedding`).
        """
        layers, grid = aggregate_layers(self.extractor(batch), self.config.neighbourhood,
                                       self.config.aggregation)
        if self.embedding is None:
            self.embedding = PatchEmbedding([l.shape[1] for l in layers],
                                            self.config.pretrain_dim, self.config.target_dim)
        z = self.embedding.compact(PatchEmbedding.concat(layers))
        return z.view(batch.shape[0], grid[0], grid[1], -1)

    def extract(self, images, desc: str = "features", progress: bool = False) -> torch.Tensor:
        """Images (paths, PIL images or arrays) -> ``[N, h, w, D]`` patch features."""
        out = [self.features(batch) for batch in self._batches(images, desc, progress)]
        return torch.cat(out)

    def _subsample(self, feats: torch.Tensor, progress: bool) -> torch.Tensor:
        c = self.config
        if c.coreset == "none":
            return torch.arange(len(feats), device=feats.device)
        if c.coreset == "random":
            return random_coreset(feats, c.coreset_ratio, seed=c.seed).indices
        return greedy_coreset(feats, c.coreset_ratio, projection_dim=c.projection_dim,
                              seed=c.seed, progress=progress).indices

    def _build_bank(self, feats: torch.Tensor, image_ids: list[int], progress: bool) -> MemoryBank:
        """Memory bank from ``[n, h, w, D]`` features of training images ``image_ids``."""
        n, h, w, d = feats.shape
        ids = torch.tensor(image_ids, device=feats.device)
        rows, cols = torch.meshgrid(torch.arange(h, device=feats.device),
                                    torch.arange(w, device=feats.device), indexing="ij")
        origin = torch.stack([ids.view(n, 1, 1).expand(n, h, w),
                              rows.expand(n, h, w), cols.expand(n, h, w)], dim=-1).view(-1, 3)
        flat = feats.reshape(-1, d)
        keep = self._subsample(flat, progress)
        return MemoryBank(flat[keep].contiguous(), origin[keep], self.config.knn_backend)

    def _score_features(self, feats: torch.Tensor, bank: MemoryBank):
        """``[B, h, w, D]`` -> (image scores ``[B]``, patch scores ``[B, h, w]``, nearest ``[B, h, w]``)."""
        b, h, w, d = feats.shape
        flat = feats.reshape(-1, d)
        dist, idx = bank.search(flat, k=1)
        patch = dist[:, 0].view(b, h, w)
        nearest = idx[:, 0].view(b, h, w)
        k = self.config.reweight_neighbours
        if k > 0:
            scores = torch.stack([
                reweighted_image_score(flat.view(b, h * w, d)[i], patch[i].flatten(),
                                       nearest[i].flatten(), bank, k) for i in range(b)])
        else:
            scores = image_scores(patch)
        return scores, patch, nearest

    # ------------------------------------------------------------------- API
    def fit(self, images, names: list[str] | None = None, progress: bool = True) -> PatchCore:
        """Learn "normal" from defect-free images (paths, PIL images or arrays).

        Holds out some images to calibrate a threshold (see
        :mod:`.calibration`), then builds the memory bank from all of them.
        """
        images = list(images)
        if not images:
            raise ValueError("fit needs at least one good image")
        before = dict(vars(self))
        try:
            return self._fit(images, names, progress)
        except BaseException:
            vars(self).update(before)  # a failed fit (e.g. a corrupt image) leaves the model as it was
            raise

    def _fit(self, images: list, names: list[str] | None, progress: bool) -> PatchCore:
        c = self.config
        t0 = time.perf_counter()
        mode = c.crop_mode
        if mode == "auto":
            mode = Preprocess.choose_mode([image_size(im) for im in images])
        self.preprocess = self._make_preprocess(mode)
        self.embedding = None
        feats = self.extract(images, "features", progress)
        self.grid = tuple(feats.shape[1:3])
        self.train_names = list(names) if names is not None else [
            str(im) if isinstance(im, (str, bytes)) or hasattr(im, "__fspath__") else f"image {i}"
            for i, im in enumerate(images)]

        t_cal = time.perf_counter()
        self.calibration_scores = []
        folds = calibration_folds(len(images), c.calibration_fraction, c.seed)
        if len(folds) == 1:
            # One split: the bank of the kept images serves both purposes. The
            # held-out images get a (small) coreset of their own, appended
            # after calibration, so no image is lost to the final bank; the
            # union covers the bank at least as well as either part does.
            kept, held = folds[0]
            bank = self._build_bank(feats[kept], kept, progress)
            scores, _, _ = self._score_features(feats[held], bank)
            self.calibration_scores = scores.tolist()
            self.bank = MemoryBank.concat([bank, self._build_bank(feats[held], held, False)])
        else:
            for kept, held in folds:  # leave-one-out: small banks, cheap
                bank = self._build_bank(feats[kept], kept, progress=False)
                scores, _, _ = self._score_features(feats[held], bank)
                self.calibration_scores += scores.tolist()
            self.bank = self._build_bank(feats, list(range(len(images))), progress)
        self.threshold = max(self.calibration_scores) if self.calibration_scores else None
        t_cal = time.perf_counter() - t_cal

        self.stats = {
            "n_train": len(images),
            "n_patches": int(feats.shape[0] * feats.shape[1] * feats.shape[2]),
            "memory_bank_size": len(self.bank),
            "memory_bank_mb": round(self.bank.nbytes / 2**20, 2),
            "feature_dim": int(feats.shape[-1]),
            "fit_seconds": round(time.perf_counter() - t0, 3),
            "calibration_and_bank_seconds": round(t_cal, 3),
            "crop_mode": mode,
            "device": str(self.device),
        }
        return self

    @torch.inference_mode()
    def score(self, images, progress: bool = False):
        """Batch scoring as tensors: (scores ``[N]``, maps ``[N, H, W]``,
        patch scores ``[N, h, w]``, nearest bank rows ``[N, h, w]``)."""
        self._require_fitted()
        out = []
        for batch in self._batches(list(images), "predict", progress):
            scores, patch, nearest = self._score_features(self.features(batch), self.bank)
            maps = anomaly_map(patch, self.config.image_size, self.config.sigma, self.config.upsample)
            out.append((scores.cpu(), maps.cpu(), patch.cpu(), nearest.cpu()))
        return tuple(torch.cat(parts) for parts in zip(*out))

    def predict(self, images, progress: bool = False) -> list[Prediction]:
        """Score images: one :class:`Prediction` each."""
        if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__") or hasattr(images, "size"):
            images = [images]
        t0 = time.perf_counter()
        scores, maps, patch, _ = self.score(images, progress)
        self.stats["predict_seconds_per_image"] = round((time.perf_counter() - t0) / max(1, len(scores)), 4)
        preds = []
        for s, m, p in zip(scores.tolist(), maps.numpy(), patch.numpy()):
            norm = s / self.threshold if self.threshold else None
            preds.append(Prediction(s, norm, None if norm is None else norm > 1.0,
                                    m.astype(np.float32), p.astype(np.float32)))
        return preds

    def patch_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """Pixel box ``(x0, y0, x1, y1)`` of grid cell (row, col) in the model's input."""
        h, w = self.grid
        sy, sx = self.config.image_size / h, self.config.image_size / w
        return (round(col * sx), round(row * sy), round((col + 1) * sx), round((row + 1) * sy))

    @torch.inference_mode()
    def explain(self, image, row: int | None = None, col: int | None = None) -> Explanation:
        """The nearest normal patch for the test patch at grid ``(row, col)``
        (the most anomalous patch when not given)."""
        self._require_fitted()
        _, _, patch, nearest = self.score([image])
        patch, nearest = patch[0], nearest[0]
        if row is None or col is None:
            flat = int(patch.flatten().argmax())
            row, col = divmod(flat, patch.shape[1])
        h, w = self.grid
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"patch ({row}, {col}) is outside the {h}x{w} feature grid")
        j = int(nearest[row, col])
        t_img, t_row, t_col = (int(v) for v in self.bank.origin[j])
        return Explanation(row, col, float(patch[row, col]), j, t_img, self.train_names[t_img],
                           t_row, t_col, self.patch_box(row, col), self.patch_box(t_row, t_col))

    def pixel_to_patch(self, x: float, y: float) -> tuple[int, int]:
        """Grid (row, col) under a pixel of the model's input image."""
        h, w = self.grid
        size = self.config.image_size
        return (min(h - 1, max(0, int(y * h / size))), min(w - 1, max(0, int(x * w / size))))

    def display(self, image) -> np.ndarray:
        """The RGB pixels the model sees (resized/cropped): ``uint8 [H, W, 3]``."""
        self._require_fitted()
        return self.preprocess.display(image)

    def summary(self) -> dict:
        """A model card: settings, sizes, threshold and timings."""
        card = {"backbone": self.config.backbone, "layers": list(self.layers),
                "image_size": self.config.image_size, "coreset": self.config.coreset,
                "coreset_ratio": self.config.coreset_ratio, "threshold": self.threshold,
                "grid": list(self.grid) if self.grid else None}
        card.update(self.stats)
        return card

    # ---------------------------------------------------------- persistence
    def save(self, path):
        """Write the model as one safetensors file with JSON metadata (no pickle); returns the path."""
        from .serialization import save_model
        return save_model(self, path)

    @classmethod
    def load(cls, path, device: str = "auto") -> PatchCore:
        """Read a model written by :meth:`save`; never unpickles anything."""
        from .serialization import load_model
        return load_model(path, device)

    def __repr__(self) -> str:
        state = f"bank={len(self.bank)}x{self.bank.features.shape[1]}" if self.bank else "not fitted"
        return f"PatchCore(backbone={self.config.backbone!r}, {state}, device={self.device})"
