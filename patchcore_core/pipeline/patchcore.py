"""``PatchCore``: fit on good images, predict scores and heatmaps, explain.

    >>> from patchcore_core import PatchCore
    >>> model = PatchCore().fit(good_image_paths)            # doctest: +SKIP
    >>> pred = model.predict(["test.png"])[0]                # doctest: +SKIP
    >>> pred.score, pred.normalised_score, pred.is_anomalous  # doctest: +SKIP

Steps: backbone maps (:mod:`.backbones`) -> patch features (:mod:`.features`) -> bank (:mod:`.coreset`,
:mod:`.memory_bank`) -> scores and maps (:mod:`.scoring`) -> threshold (:mod:`.calibration`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from patchcore_core.util.device import resolve_device
from patchcore_core.util.images import image_size, read_image

from .backbones import FeatureExtractor, get_spec, load_backbone
from .calibration import calibration_folds, threshold_from_scores
from .config import PatchCoreConfig
from .coreset import random_coreset
from .features import PatchEmbedding, aggregate_layers
from .memory_bank import MemoryBank, approximate_search
from .preprocess import Preprocess
from .scoring import anomaly_map, image_scores, reweighted_image_scores
from .work import LocalWork

__all__ = ["PatchCoreConfig", "PatchCore", "Prediction", "Explanation", "predictions"]


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


def predictions(model, images, progress: bool = False) -> list[Prediction]:
    """One :class:`Prediction` per image (a path, or a list of them) from ``model.score``:
    any model, one backbone or an ensemble; above the threshold is anomalous."""
    if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__") or hasattr(images, "size"):
        images = [images]
    t0 = time.perf_counter()
    scores, maps, patch, _ = model.score(images, progress)
    model.stats["predict_seconds_per_image"] = round((time.perf_counter() - t0) / max(1, len(scores)), 4)
    out = []
    for s, m, p in zip(scores.tolist(), maps.numpy(), patch.numpy()):
        norm = s / model.threshold if model.threshold else None
        out.append(Prediction(s, norm, None if norm is None else norm > 1.0,
                              m.astype(np.float32), p.astype(np.float32)))
    return out


class PatchCore:
    """PatchCore anomaly detection (Roth et al., CVPR 2022).

    Args:
        config: a :class:`PatchCoreConfig`; keyword overrides are applied on top.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"`` or ``"cuda"``.
        work: where fit's heavy steps run (:class:`LocalWork`, the default: here);
            a :class:`~patchcore_core.cluster.RayCluster` runs them on a cluster.
    """

    def __init__(self, config: PatchCoreConfig | None = None, device: str = "auto",
                 work: LocalWork | None = None, **overrides):
        base = asdict(config) if config is not None else {}
        self.config = PatchCoreConfig(**{**base, **overrides})
        if len(self.config.backbones) > 1:
            raise ValueError(f"backbone {self.config.backbone!r} is an ensemble: use "
                             "patchcore_core.ext.ensemble.make_model (or PatchCoreEnsemble)")
        self.device = resolve_device(device)
        self.work = work if work is not None else LocalWork()
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

    @property
    def members(self) -> list[PatchCore]:
        """The models whose scores this one combines: itself (an ensemble has one per backbone)."""
        return [self]

    @property
    def memory_bank_size(self) -> int:
        return len(self.bank)

    def _require_fitted(self):
        if not self.is_fitted:
            raise RuntimeError("this PatchCore model is not fitted yet: call fit(...) or load(...)")

    def _make_preprocess(self, mode: str) -> Preprocess:
        c = self.config
        return Preprocess(c.resize_to, c.image_size, mode, self.spec.mean, self.spec.std)

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
        return self.work.greedy_coreset(feats, c.coreset_ratio, c.projection_dim, c.seed, progress)

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
        return MemoryBank(flat[keep].contiguous(), origin[keep], self.config.knn_backend, self.config.ann)

    def _score_features(self, feats: torch.Tensor, bank: MemoryBank):
        """``[B, h, w, D]`` -> (image scores ``[B]``, patch scores ``[B, h, w]``, nearest ``[B, h, w]``)."""
        b, h, w, d = feats.shape
        flat = feats.reshape(-1, d)
        dist, idx = bank.search(flat, k=1)
        patch = dist[:, 0].view(b, h, w)
        nearest = idx[:, 0].view(b, h, w)
        k = self.config.reweight_neighbours
        if k > 0:
            scores = reweighted_image_scores(flat.view(b, h * w, d), patch.flatten(1), nearest.flatten(1),
                                             bank, k)
        else:
            scores = image_scores(patch)
        return scores, patch, nearest

    # ------------------------------------------------------------------- API
    def prepare(self, images) -> PatchCore:
        """Choose the preprocessing for ``images`` as ``fit`` does (``crop_mode``), without fitting."""
        mode = self.config.crop_mode
        if mode == "auto":
            mode = Preprocess.choose_mode([image_size(im) for im in images])
        self.preprocess = self._make_preprocess(mode)
        return self

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
        self.prepare(images)
        self.embedding = None
        feats, channels = self.work.extract(self, images, progress)
        if self.embedding is None:  # extracted elsewhere: the same embedding, built here
            self.embedding = PatchEmbedding(channels, c.pretrain_dim, c.target_dim)
        self.grid = tuple(feats.shape[1:3])
        self.train_names = list(names) if names is not None else [
            str(im) if isinstance(im, (str, bytes)) or hasattr(im, "__fspath__") else f"image {i}"
            for i, im in enumerate(images)]

        t_cal = time.perf_counter()
        self.calibration_scores, self.calibration_patches = [], []
        folds = calibration_folds(len(images), c.calibration_fraction, c.seed)
        if len(folds) == 1:
            # One split: the bank of the kept images serves both purposes. The
            # held-out images get a (small) coreset of their own, appended
            # after calibration, so no image is lost to the final bank; the
            # union covers the bank at least as well as either part does.
            kept, held = folds[0]
            bank = self._build_bank(feats[kept], kept, progress)
            scores, patch, _ = self._score_features(feats[held], bank)
            self.calibration_scores = scores.tolist()
            self.calibration_patches = [patch]  # not saved; an ensemble takes its pixel statistics
            self.bank = MemoryBank.concat([bank, self._build_bank(feats[held], held, False)])
        else:
            for kept, held in folds:  # leave-one-out: small banks, cheap
                bank = self._build_bank(feats[kept], kept, progress=False)
                scores, patch, _ = self._score_features(feats[held], bank)
                self.calibration_scores += scores.tolist()
                self.calibration_patches.append(patch)
            self.bank = self._build_bank(feats, list(range(len(images))), progress)
        self.threshold = threshold_from_scores(self.calibration_scores, c.false_alarm_rate or None)
        t_cal = time.perf_counter() - t_cal
        self.bank, measured = self.work.finish_bank(self.bank, feats.reshape(-1, feats.shape[-1]), c)

        self.stats = {
            "n_train": len(images),
            "n_patches": int(feats.shape[0] * feats.shape[1] * feats.shape[2]),
            "memory_bank_size": len(self.bank),
            "memory_bank_mb": round(self.bank.nbytes / 2**20, 2),
            "feature_dim": int(feats.shape[-1]),
            "fit_seconds": round(time.perf_counter() - t0, 3),
            "calibration_and_bank_seconds": round(t_cal, 3),
            "crop_mode": self.preprocess.mode,
            "device": str(self.device),
            **measured,
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
        return predictions(self, images, progress)

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
        """A model card: every setting, sizes, threshold and timings."""
        card = {**self.config.to_dict(), "layers": list(self.layers), "threshold": self.threshold,
                "grid": list(self.grid) if self.grid else None}
        card.update(self.stats)
        return card

    # ---------------------------------------------------------- persistence
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Everything a fitted model is: (CPU tensors, JSON-able metadata).

        :meth:`from_state_dict` turns the pair back into a model;
        ``patchcore_core.save`` writes it to a file (:mod:`patchcore_core.io.save_load`).
        """
        self._require_fitted()
        tensors = {"bank.features": self.bank.features.detach().float().cpu().contiguous(),
                   "bank.origin": self.bank.origin.detach().cpu().contiguous()}
        if self.bank.is_approximate:  # the trained index as bytes: loading must not retrain it
            tensors["bank.index"] = approximate_search().index_to_tensor(self.bank.build_index())
        metadata = {
            "config": self.config.to_dict(),
            "preprocess": {"resize": self.preprocess.resize, "crop": self.preprocess.crop,
                           "mode": self.preprocess.mode},
            "channels": self.embedding.channels,
            "grid": list(self.grid),
            "threshold": self.threshold,
            "calibration_scores": self.calibration_scores,
            "train_names": self.train_names,
            "stats": self.stats,
        }
        return tensors, metadata

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor], metadata: dict,
                        device: str = "auto") -> PatchCore:
        """A fitted model from what :meth:`state_dict` returned. It trusts its
        input: ``patchcore_core.load`` checks a file's every field first
        (:mod:`patchcore_core.io.model_checks`), since a file may come from a stranger."""
        config = dict(metadata["config"])
        config.setdefault("false_alarm_rate", 0.0)  # files from before the setting: the largest score
        model = cls(PatchCoreConfig.from_dict(config), device=device)
        c, p = model.config, metadata["preprocess"]
        model.preprocess = Preprocess(p["resize"], p["crop"], p["mode"], model.spec.mean, model.spec.std)
        model.embedding = PatchEmbedding(metadata["channels"], c.pretrain_dim, c.target_dim)
        feats, origin = tensors["bank.features"], tensors["bank.origin"]
        if feats.ndim != 2 or feats.shape[1] != model.embedding.compact_dim or len(origin) != len(feats):
            raise ValueError(f"bank shape {tuple(feats.shape)} does not match its metadata "
                             f"({model.embedding.compact_dim} features per row)")
        index = tensors.get("bank.index")
        index = approximate_search().index_from_tensor(index) if index is not None else None
        model.bank = MemoryBank(feats.to(model.device), origin.to(model.device), c.knn_backend, c.ann, index)
        model.grid = tuple(metadata["grid"])
        model.threshold = metadata["threshold"]
        model.calibration_scores = metadata.get("calibration_scores", [])
        model.train_names = metadata["train_names"]
        model.stats = metadata.get("stats", {})
        return model

    def __repr__(self) -> str:
        state = f"bank={len(self.bank)}x{self.bank.features.shape[1]}" if self.bank else "not fitted"
        return f"PatchCore(backbone={self.config.backbone!r}, {state}, device={self.device})"
