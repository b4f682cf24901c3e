"""The paper's backbone ensemble: one PatchCore per backbone, scores combined.

    >>> model = make_model(backbone="efficientnet_lite0+efficientnet_lite1+efficientnet_lite2")
    >>> model.fit(good_paths).predict(["test.png"])   # doctest: +SKIP

Distances from different backbones live on different scales, so they cannot
be averaged as they are. As the paper does for its best result (99.6% image
AUROC with three backbones), each member's scores are first standardised by
that member's own statistics, then averaged. The statistics come from the
held-out good images every member already scores to calibrate its threshold
(:mod:`.calibration`; all members hold out the same images, as they share
the seed): the image scores' mean and standard deviation for image scores,
the anomaly-map pixels' mean and standard deviation for the maps.

The combined standardised score ``z`` is reported as ``exp(z)``: positive,
like a distance, so that ``score / threshold`` (1.0 = the threshold) and
the log-normal threshold fit work unchanged; ``exp`` keeps the ranking, so
AUROC is that of ``z``. Maps are ``exp`` of their combined pixel ``z``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from patchcore_core.pipeline.calibration import threshold_from_scores
from patchcore_core.pipeline.config import PatchCoreConfig
from patchcore_core.pipeline.patchcore import Explanation, PatchCore, Prediction, predictions
from patchcore_core.pipeline.scoring import anomaly_map

__all__ = ["AnomalyModel", "PatchCoreEnsemble", "make_model", "refuse_cluster", "image_stats",
           "combined_scores", "MIN_STD"]


@runtime_checkable
class AnomalyModel(Protocol):
    """What every model is, one backbone (:class:`~patchcore_core.PatchCore`) or several
    (:class:`PatchCoreEnsemble`): callers use these and never ask which kind they have.
    ``patchcore_core.save(model, path)`` and ``patchcore_core.load(path)`` write and read either."""

    config: PatchCoreConfig
    threshold: float | None
    stats: dict
    train_names: list[str]                             # the training images, in fit order

    @property
    def members(self) -> list[PatchCore]: ...          # one per backbone
    @property
    def is_fitted(self) -> bool: ...
    @property
    def memory_bank_size(self) -> int: ...
    def fit(self, images, names=None, progress: bool = True): ...
    def score(self, images, progress: bool = False): ...  # tensors: scores, maps, patch scores, ...
    def predict(self, images, progress: bool = False) -> list[Prediction]: ...
    def explain(self, image, row: int | None = None, col: int | None = None) -> Explanation: ...
    def pixel_to_patch(self, x: float, y: float) -> tuple[int, int]: ...
    def display(self, image) -> np.ndarray: ...
    def summary(self) -> dict: ...
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]: ...


def refuse_cluster(config: PatchCoreConfig) -> None:
    """An ensemble runs on one machine: a ValueError saying so (nothing for one backbone)."""
    if len(config.backbones) > 1:
        raise ValueError(f"backbone {config.backbone!r} is an ensemble, which runs on one machine: "
                         "give one backbone with --ray (or leave out --ray)")


def make_model(config: PatchCoreConfig | None = None, device: str = "auto", work=None, **overrides):
    """A :class:`~patchcore_core.PatchCore`, or a :class:`PatchCoreEnsemble` for ``a+b+c`` backbones.

    ``work``: as for :class:`~patchcore_core.PatchCore` (single backbones only).
    """
    cfg = PatchCoreConfig(**{**(asdict(config) if config else {}), **overrides})
    if len(cfg.backbones) == 1:
        return PatchCore(cfg, device=device, work=work)
    if work is not None:
        refuse_cluster(cfg)
    return PatchCoreEnsemble(cfg, device=device)


MIN_STD = 1e-6     # the floor of a standard deviation (see _mean_std)


def _mean_std(values) -> list[float]:
    """[mean, std] with a floor on std: a member whose held-out scores are all equal
    must not divide by zero (it then adds almost nothing)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    sd = float(v.std(ddof=1)) if v.size > 1 else 1.0
    return [float(v.mean()), max(sd, MIN_STD)]


def image_stats(scores: list[float]) -> list[float]:
    """A member's [mean, std] of held-out image scores ([0, 1]: none held out)."""
    return _mean_std(scores) if scores else [0.0, 1.0]


def combined_scores(member_scores: list[list[float]], image_stats: list[list[float]]) -> list[float]:
    """The ensemble's held-out scores: exp of the members' mean standardised score."""
    z = [(np.asarray(s) - mu) / sd for s, (mu, sd) in zip(member_scores, image_stats) if s]
    return np.exp(np.mean(z, axis=0)).tolist() if z else []


class PatchCoreEnsemble:
    """Several :class:`~patchcore_core.PatchCore` models on one set of images, one per backbone."""

    def __init__(self, config: PatchCoreConfig | None = None, device: str = "auto", **overrides):
        self.config = PatchCoreConfig(**{**(asdict(config) if config else {}), **overrides})
        names = self.config.backbones
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError("an ensemble needs two or more different backbones, "
                             f"not {self.config.backbone!r}")
        base = {k: v for k, v in asdict(self.config).items() if k != "backbone"}
        self.members = [PatchCore(PatchCoreConfig(**base, backbone=b), device=device) for b in names]
        self.device = self.members[0].device
        self.image_stats: list[list[float]] = []   # per member [mean, std] of held-out image scores
        self.pixel_stats: list[list[float]] = []   # per member [mean, std] of held-out map pixels
        self.calibration_scores: list[float] = []  # combined held-out scores (exp z)
        self.threshold: float | None = None
        self.stats: dict = {}                      # sizes and timings, as a single model's

    def _collect_stats(self) -> None:
        first = self.members[0].stats
        self.stats = {**{k: first[k] for k in ("n_train", "crop_mode", "device") if k in first},
                      "memory_bank_size": self.memory_bank_size,
                      "fit_seconds": round(sum(m.stats.get("fit_seconds", 0) for m in self.members), 3)}

    # the attributes evaluation and the CLI read from a model
    @property
    def preprocess(self):
        return self.members[0].preprocess

    @property
    def grid(self):
        return self.members[0].grid

    @property
    def is_fitted(self) -> bool:
        return all(m.is_fitted for m in self.members)

    @property
    def memory_bank_size(self) -> int:
        return sum(len(m.bank) for m in self.members)

    @property
    def train_names(self) -> list[str]:
        return self.members[0].train_names  # every member is fitted on the same images

    @train_names.setter
    def train_names(self, names: list[str]) -> None:
        for m in self.members:
            m.train_names = list(names)

    def __copy__(self) -> PatchCoreEnsemble:
        # the members are copied too, so that setting a copy's train_names leaves this model's alone
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.members = [copy.copy(m) for m in self.members]
        return new

    def fit(self, images, names: list[str] | None = None, progress: bool = True) -> PatchCoreEnsemble:
        """Fit every member, then the statistics that put their scores on one scale."""
        images = list(images)
        for m in self.members:
            m.fit(images, names, progress)
        self.image_stats = [image_stats(m.calibration_scores) for m in self.members]
        self.pixel_stats = []
        for m in self.members:
            if not m.calibration_scores:  # one image: nothing held out, nothing to standardise by
                self.pixel_stats.append([0.0, 1.0])
                continue
            maps = [anomaly_map(p, m.config.image_size, m.config.sigma, m.config.upsample)
                    for p in m.calibration_patches]
            self.pixel_stats.append(_mean_std(torch.cat(maps).cpu().numpy()))
        held_out = [m.calibration_scores for m in self.members]
        self.calibration_scores = combined_scores(held_out, self.image_stats)
        self.threshold = threshold_from_scores(self.calibration_scores, self.config.false_alarm_rate or None)
        self._collect_stats()
        return self

    @torch.inference_mode()
    def score(self, images, progress: bool = False):
        """(scores ``[N]``, maps ``[N, H, W]``, patch scores ``[N, h, w]``, None) combined over
        members, as :meth:`PatchCore.score` returns them (nearest bank rows differ per member:
        see :meth:`explain`). Patch scores are standardised with the image statistics."""
        zs, zmaps, zpatch = [], [], []
        for m, (mu, sd), (pmu, psd) in zip(self.members, self.image_stats, self.pixel_stats):
            s, maps, patch, _ = m.score(images, progress)
            zs.append((s.double() - mu) / sd)
            zmaps.append((maps.double() - pmu) / psd)
            zpatch.append((patch.double() - mu) / sd)
        same_grid = len({tuple(p.shape) for p in zpatch}) == 1
        patch = torch.stack(zpatch).mean(0) if same_grid else zpatch[0]
        return (torch.exp(torch.stack(zs).mean(0)).float(), torch.exp(torch.stack(zmaps).mean(0)).float(),
                torch.exp(patch).float(), None)

    def predict(self, images, progress: bool = False) -> list[Prediction]:
        """Score images: one :class:`~patchcore_core.Prediction` each (combined over members)."""
        return predictions(self, images, progress)

    def explain(self, image, row: int | None = None, col: int | None = None) -> Explanation:
        """The nearest normal patch of the member for which the test patch is most unusual
        (its distance, standardised by that member's image statistics); every member's
        answer is ``[m.explain(...) for m in model.members]``."""
        found = [m.explain(image, row, col) for m in self.members]
        z = [(e.distance - mu) / sd for e, (mu, sd) in zip(found, self.image_stats)]
        return found[int(np.argmax(z))]

    def pixel_to_patch(self, x: float, y: float) -> tuple[int, int]:
        return self.members[0].pixel_to_patch(x, y)

    def display(self, image) -> np.ndarray:
        return self.members[0].display(image)

    def summary(self) -> dict:
        """A model card: the shared settings, each member's card, the combining statistics."""
        card = {**self.config.to_dict(), "threshold": self.threshold, "members": len(self.members),
                "memory_bank_size": self.memory_bank_size,
                "image_stats": self.image_stats, "pixel_stats": self.pixel_stats}
        card.update(self.stats)
        card["member_cards"] = [m.summary() for m in self.members]
        return card

    # ---------------------------------------------------------- persistence
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors, members = {}, []
        for i, m in enumerate(self.members):
            t, meta = m.state_dict()
            tensors.update({f"member{i}.{k}": v for k, v in t.items()})
            members.append(meta)
        ens = {"config": self.config.to_dict(), "image_stats": self.image_stats,
               "pixel_stats": self.pixel_stats, "calibration_scores": self.calibration_scores,
               "threshold": self.threshold}
        return tensors, {"ensemble": ens, "members": members}

    @classmethod
    def from_state_dict(cls, tensors, metadata, device: str = "auto") -> PatchCoreEnsemble:
        """A fitted ensemble from what :meth:`state_dict` returned. It trusts its input:
        ``patchcore_core.load`` checks a file first (:mod:`patchcore_core.io.model_checks`)."""
        ens = metadata["ensemble"]
        model = cls(PatchCoreConfig.from_dict(ens["config"]), device=device)
        model.members = [
            PatchCore.from_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items()
                                       if k.startswith(f"member{i}.")}, meta, device)
            for i, meta in enumerate(metadata["members"])]
        model.image_stats, model.pixel_stats = ens["image_stats"], ens["pixel_stats"]
        model.calibration_scores, model.threshold = ens["calibration_scores"], ens["threshold"]
        model._collect_stats()
        return model

    def __repr__(self) -> str:
        return f"PatchCoreEnsemble({self.config.backbone!r}, fitted={self.is_fitted})"
