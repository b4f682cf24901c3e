"""Every setting of a PatchCore model, declared once.

Each field carries its help text (and its choices, where there is a
list) in ``metadata``; the CLI builds its model options from these
fields, the model file stores them, and the model card shows them. A new
setting is one field here. The lists of choices live next to the code
that implements them and are checked here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from .backbones import BACKBONES, get_spec
from .calibration import DEFAULT_FALSE_ALARM_RATE
from .coreset import CORESET_METHODS
from .features import AGGREGATIONS
from .memory_bank import APPROXIMATE_PARAMS, KNN_BACKENDS
from .preprocess import CROP_MODES
from .scoring import UPSAMPLE_MODES

__all__ = ["PatchCoreConfig", "SettingError", "setting"]

MAX_IMAGE_SIDE = 4096        # px, for resize and image_size (the paper: 256 and 224)


def min_image_size(backbone: str, sigma: float) -> int:
    """The smallest ``image_size`` a model can predict at: the backbone's
    deepest layer needs one whole cell (its stride), and the anomaly map's
    Gaussian (truncated at 4 sigma, reflected borders) needs more pixels
    than its radius."""
    radius = int(4.0 * sigma + 0.5) if sigma > 0 else 0
    stride = max(max(get_spec(name).strides) for name in backbone.split("+"))  # "+": an ensemble
    return max(stride, radius + 1)


class SettingError(ValueError):
    """A setting out of its range: ``field`` names it, the message says what is accepted."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    def __reduce__(self):  # whole again after pickling (a Ray task's error travels pickled)
        return type(self), (self.field, str(self))


def setting(default, help: str, choices=None, cli: str | None = None):
    """A config field with its help text, choices and (optionally) its CLI flag."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if cli is not None:
        meta["cli"] = cli
    return field(default=default, metadata=meta)


@dataclass
class PatchCoreConfig:
    """Every setting of a PatchCore model; saved with it."""

    backbone: str = setting(
        "efficientnet_lite0", "feature extractor (efficientnet_lite* work offline; wide_resnet50_2 is "
        "the paper's and downloads its weights once)", choices=BACKBONES)
    layers: tuple[str, ...] | None = setting(
        None, "backbone stages to use (default: the backbone's stride-8 and stride-16 stages)")
    # backbone "a+b+c" is the paper's ensemble: one model per backbone, scores combined
    resize: int | None = setting(
        None, "resize to this many pixels before cropping (default: image size x 256/224, as the paper)")
    image_size: int = setting(224, "centre-crop size in pixels: the model's input")
    crop_mode: str = setting(
        "auto", "auto: crop square images as the paper, squash elongated ones so their borders stay "
        "in view", choices=CROP_MODES)
    neighbourhood: int = setting(
        3, "local aggregation size p (odd; at most the patch grid, image_size/8: 27 at 224 px)")
    aggregation: str = setting(
        "mean", "mean: average each channel over its p x p neighbourhood (adaptive average pooling "
        "of each feature map, the local smoothing the paper likens its aggregation to); unfold: keep "
        "the neighbours' values side by side and pool them with the channels, as the paper's code "
        "does", choices=AGGREGATIONS)
    pretrain_dim: int = setting(1024, "width each layer is pooled to")
    target_dim: int = setting(1024, "final patch feature width")
    coreset: str = setting("greedy", "how the memory bank is subsampled", choices=CORESET_METHODS)
    coreset_ratio: float = setting(0.1, "share of patches kept in the memory bank, in (0, 1] (paper: 1-10%)")
    projection_dim: int = setting(128, "random projection width for the coreset's distances")
    reweight_neighbours: int = setting(
        0, "reweight the image score with B neighbours (the paper's Eq. 7); 0 keeps the max patch score",
        cli="--reweight")
    sigma: float = setting(4.0, "Gaussian smoothing of the anomaly map, in pixels")
    upsample: str = setting("bilinear", "how patch scores become pixels before the Gaussian",
                            choices=UPSAMPLE_MODES)
    calibration_fraction: float = setting(0.1, "share of good images held out to set the threshold")
    false_alarm_rate: float = setting(
        DEFAULT_FALSE_ALARM_RATE, "0: the threshold is the largest held-out good score; a rate such as "
        "0.05: the score a good image exceeds that often, from a log-normal fitted to the held-out "
        "good scores (never below their largest): fewer false alarms, more misses")
    knn_backend: str = setting(
        "faiss", "nearest-neighbour search: faiss and torch are exact (same answers); ivf_flat, ivf_pq and "
        "hnsw are faiss's approximate indexes, trained at fit time and saved with the model",
        choices=KNN_BACKENDS)
    # Approximate indexes' parameters: None scales them to the bank (ann.scaled_params).
    nlist: int | None = setting(None, "ivf_*: k-means cells of the index (default: 4 sqrt(bank rows))")
    nprobe: int | None = setting(None, "ivf_*: cells searched per query (default: nlist/128, at least 16)")
    pq_m: int | None = setting(None, "ivf_pq: one-byte codes per row; must divide the feature width "
                                     "(default: about one per 8 dimensions)")
    k_factor: int | None = setting(None, "ivf_pq: candidates per neighbour re-ranked by exact distance "
                                         "(default: 128)")
    hnsw_m: int | None = setting(None, "hnsw: graph links per row (default: 32)")
    ef_search: int | None = setting(None, "hnsw: candidates kept while searching (default: 128)")
    batch_size: int = setting(8, "images per forward pass")
    seed: int = setting(0, "seed for the coreset and the calibration split")

    def __post_init__(self):
        for name in self.backbones:
            get_spec(name)  # unknown names raise, listing the choices
        if len(self.backbones) > 1 and self.layers is not None:
            raise SettingError("layers",
                              "an ensemble uses each backbone's default layers; give no --layers with "
                             f"backbone {self.backbone!r}")
        if self.layers is not None:
            self.layers = tuple(self.layers)
        for f in fields(self):
            allowed = f.metadata.get("choices")
            value = getattr(self, f.name)
            if allowed is not None and f.name != "backbone" and value not in allowed:
                raise SettingError(f.name, f"{f.name} must be one of {', '.join(allowed)}; not {value!r}")
        if not 0 < self.coreset_ratio <= 1:
            raise SettingError("coreset_ratio", f"coreset_ratio must be in (0, 1], not {self.coreset_ratio}")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise SettingError("neighbourhood",
                              f"neighbourhood must be a positive odd number, not {self.neighbourhood}")
        if not 0 < self.image_size <= self.resize_to:
            raise SettingError("image_size",
                              f"need 0 < image_size <= resize; got {self.image_size} and {self.resize_to}")
        if self.reweight_neighbours < 0:
            raise SettingError("reweight_neighbours",
                              f"reweight_neighbours must be >= 0, not {self.reweight_neighbours}")
        if not 0 <= self.calibration_fraction < 1:
            raise SettingError("calibration_fraction",
                              f"calibration_fraction must be in [0, 1), not {self.calibration_fraction}")
        if not 0 <= self.false_alarm_rate < 1:
            raise SettingError("false_alarm_rate",
                              f"false_alarm_rate must be in [0, 1) (0: the largest held-out score), "
                             f"not {self.false_alarm_rate}")
        for name in ("pretrain_dim", "target_dim", "projection_dim", "batch_size"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"{name} must be >= 1, not {getattr(self, name)}")
        for name, value in self.ann.items():
            if value is not None and value < 1:
                raise SettingError(name, f"{name} must be >= 1 (or None: scaled to the bank), not {value}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise SettingError("sigma", f"sigma must be a finite number >= 0 (pixels), not {self.sigma}")
        smallest = min_image_size(self.backbone, self.sigma)  # else fit works and predict cannot
        if self.image_size < smallest:
            raise SettingError("image_size",
                              f"image_size {self.image_size} is too small for {self.backbone} with sigma "
                             f"{self.sigma}: give at least {smallest} px (the backbone's deepest layer "
                             "needs a whole cell, the anomaly map's Gaussian more pixels than its radius)")
        if self.neighbourhood > (grid := self.patch_grid):  # past the grid: only more zero padding
            what = (f"the image side ({grid} px; custom layers' grid is not known before the backbone runs)"
                    if self.layers is not None else
                    f"the {grid}x{grid} patch grid of {self.backbone} at image_size {self.image_size}")
            raise SettingError("neighbourhood", f"neighbourhood {self.neighbourhood} is larger than {what}: "
                             f"give at most {grid - 1 + grid % 2}")
        if self.resize_to > MAX_IMAGE_SIDE:
            raise SettingError("resize", f"resize {self.resize_to} is more than {MAX_IMAGE_SIDE} px")

    @property
    def resize_to(self) -> int:
        """Pixels the image is resized to before the centre crop: the paper's 256 for 224."""
        return self.resize if self.resize is not None else round(self.image_size * 256 / 224)

    @property
    def patch_grid(self) -> int:
        """Side of the feature grid the neighbourhood is taken on: the first layer's (stride 8 for
        the default layers: 28 at 224 px). With custom ``layers`` their stride is not known before
        the backbone runs; the image side is the bound then."""
        if self.layers is not None:
            return self.image_size
        return min(-(-self.image_size // get_spec(name).strides[0]) for name in self.backbones)

    @property
    def backbones(self) -> list[str]:
        """The backbone names: one, or several for ``"a+b+c"``, the paper's ensemble
        (:class:`patchcore_core.ext.ensemble.PatchCoreEnsemble`)."""
        return self.backbone.split("+")

    @property
    def ann(self) -> dict:
        """The approximate index's settings (``None``: scaled to the bank)."""
        return {name: getattr(self, name) for name in APPROXIMATE_PARAMS}

    def to_dict(self) -> dict:
        """JSON-able settings (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> PatchCoreConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
