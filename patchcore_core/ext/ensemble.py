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

import math
from dataclasses import asdict

import numpy as np
import torch

from patchcore_core.io.model_checks import Checker, check_threshold, is_number
from patchcore_core.io.model_file import ModelFileError, read_state, write_state
from patchcore_core.pipeline.calibration import threshold_from_scores
from patchcore_core.pipeline.config import PatchCoreConfig
from patchcore_core.pipeline.patchcore import PatchCore, Prediction
from patchcore_core.pipeline.scoring import anomaly_map

__all__ = ["PatchCoreEnsemble", "make_model", "load_model", "is_ensemble", "refuse_cluster"]


def is_ensemble(backbone: str) -> bool:
    return "+" in backbone


def refuse_cluster(backbone: str) -> None:
    """An ensemble runs on one machine: a ValueError saying so (nothing for one backbone)."""
    if is_ensemble(backbone):
        raise ValueError(f"backbone {backbone!r} is an ensemble, which runs on one machine: "
                         "give one backbone with --ray (or leave out --ray)")


def make_model(config: PatchCoreConfig | None = None, device: str = "auto", work=None, **overrides):
    """A :class:`~patchcore_core.PatchCore`, or a :class:`PatchCoreEnsemble` for ``a+b+c`` backbones.

    ``work``: as for :class:`~patchcore_core.PatchCore` (single backbones only).
    """
    cfg = PatchCoreConfig(**{**(asdict(config) if config else {}), **overrides})
    if not is_ensemble(cfg.backbone):
        return PatchCore(cfg, device=device, work=work)
    if work is not None:
        refuse_cluster(cfg.backbone)
    return PatchCoreEnsemble(cfg, device=device)


def load_model(path, device: str = "auto"):
    """Read a model file written by either kind of model."""
    tensors, meta = read_state(path)
    try:
        if "ensemble" in meta:
            return PatchCoreEnsemble.from_state_dict(tensors, meta, device, source=path)
        return PatchCore.from_state_dict(tensors, meta, device, source=path)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelFileError(f"{path}: inconsistent model file: {detail}") from None


_MIN_STD = 1e-6     # the floor of a standard deviation (see _mean_std)
_TOLERANCE = 1e-6   # relative: statistics recomputed on load, from the same numbers


def _mean_std(values) -> list[float]:
    """[mean, std] with a floor on std: a member whose held-out scores are all equal
    must not divide by zero (it then adds almost nothing)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    sd = float(v.std(ddof=1)) if v.size > 1 else 1.0
    return [float(v.mean()), max(sd, _MIN_STD)]


def _image_stats(scores: list[float]) -> list[float]:
    """A member's [mean, std] of held-out image scores ([0, 1]: none held out)."""
    return _mean_std(scores) if scores else [0.0, 1.0]


def _combined_scores(member_scores: list[list[float]], image_stats: list[list[float]]) -> list[float]:
    """The ensemble's held-out scores: exp of the members' mean standardised score."""
    z = [(np.asarray(s) - mu) / sd for s, (mu, sd) in zip(member_scores, image_stats) if s]
    return np.exp(np.mean(z, axis=0)).tolist() if z else []


class PatchCoreEnsemble:
    """Several :class:`~patchcore_core.PatchCore` models on one set of images, one per backbone."""

    def __init__(self, config: PatchCoreConfig | None = None, device: str = "auto", **overrides):
        self.config = PatchCoreConfig(**{**(asdict(config) if config else {}), **overrides})
        names = self.config.backbone.split("+")
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

    def fit(self, images, names: list[str] | None = None, progress: bool = True) -> PatchCoreEnsemble:
        """Fit every member, then the statistics that put their scores on one scale."""
        images = list(images)
        for m in self.members:
            m.fit(images, names, progress)
        self.image_stats = [_image_stats(m.calibration_scores) for m in self.members]
        self.pixel_stats = []
        for m in self.members:
            if not m.calibration_scores:  # one image: nothing held out, nothing to standardise by
                self.pixel_stats.append([0.0, 1.0])
                continue
            maps = [anomaly_map(p, m.config.image_size, m.config.sigma, m.config.upsample)
                    for p in m.calibration_patches]
            self.pixel_stats.append(_mean_std(torch.cat(maps).cpu().numpy()))
        held_out = [m.calibration_scores for m in self.members]
        self.calibration_scores = _combined_scores(held_out, self.image_stats)
        self.threshold = threshold_from_scores(self.calibration_scores, self.config.false_alarm_rate or None)
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
        if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__") or hasattr(images, "size"):
            images = [images]
        scores, maps, patch, _ = self.score(images, progress)
        out = []
        for s, mp, p in zip(scores.tolist(), maps.numpy(), patch.numpy()):
            norm = s / self.threshold if self.threshold else None
            out.append(Prediction(s, norm, None if norm is None else norm > 1.0, mp, p))
        return out

    def explain(self, image, row: int | None = None, col: int | None = None) -> list:
        """Per member, its nearest normal patch (an :class:`~patchcore_core.Explanation`)."""
        return [m.explain(image, row, col) for m in self.members]

    def pixel_to_patch(self, x: float, y: float) -> tuple[int, int]:
        return self.members[0].pixel_to_patch(x, y)

    def display(self, image) -> np.ndarray:
        return self.members[0].display(image)

    def summary(self) -> dict:
        """A model card: the shared settings, each member's card, the combining statistics."""
        card = {**self.config.to_dict(), "threshold": self.threshold, "members": len(self.members),
                "memory_bank_size": self.memory_bank_size,
                "image_stats": self.image_stats, "pixel_stats": self.pixel_stats}
        first = self.members[0].stats
        card.update({k: first[k] for k in ("n_train", "crop_mode", "device") if k in first})
        card["fit_seconds"] = round(sum(m.stats.get("fit_seconds", 0) for m in self.members), 3)
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
    def from_state_dict(cls, tensors, metadata, device: str = "auto", source="model state"):
        """Every field is checked before it is used: the ensemble's own
        (:func:`_check_ensemble`), each member's as a single model's, then the
        combining statistics against the members' calibration scores
        (:func:`_check_statistics`)."""
        ens, members = _check_ensemble(metadata, source)
        model = cls(PatchCoreConfig.from_dict(ens["config"]), device=device)
        model.members = [
            PatchCore.from_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items()
                                       if k.startswith(f"member{i}.")}, meta, device,
                                      source=f"{source} (member {i})")
            for i, meta in enumerate(members)]
        _check_statistics(ens, model, source)
        model.image_stats, model.pixel_stats = ens["image_stats"], ens["pixel_stats"]
        model.calibration_scores, model.threshold = ens["calibration_scores"], ens["threshold"]
        return model

    def save(self, path):
        return write_state(path, *self.state_dict())

    @classmethod
    def load(cls, path, device: str = "auto") -> PatchCoreEnsemble:
        model = load_model(path, device)
        if not isinstance(model, cls):
            raise ModelFileError(f"{path}: a single-backbone model, not an ensemble (use load_model)")
        return model

    def __repr__(self) -> str:
        return f"PatchCoreEnsemble({self.config.backbone!r}, fitted={self.is_fitted})"


def _check_ensemble(meta, source):
    """The ensemble's own fields; each member is checked by PatchCore.from_state_dict."""
    fail = Checker(source).fail
    ens, members = meta.get("ensemble"), meta.get("members")
    if not isinstance(ens, dict):
        fail("ensemble", "must be an object")
    if not isinstance(ens.get("config"), dict) or not isinstance(ens["config"].get("backbone"), str):
        fail("ensemble.config", "must be an object of settings with a backbone")
    names = ens["config"]["backbone"].split("+")
    if not isinstance(members, list) or len(members) != len(names) or len(names) < 2:
        fail("members", f"must be one model per backbone of {ens['config']['backbone']!r}")
    shared = {k: v for k, v in ens["config"].items() if k != "backbone"}
    for i, (m, name) in enumerate(zip(members, names)):
        cfg = m.get("config") if isinstance(m, dict) else None
        if not isinstance(cfg, dict) or cfg.get("backbone") != name:
            fail(f"members[{i}]", f"must be the model of backbone {name!r}")
        differ = sorted(k for k in shared.keys() | cfg.keys()
                        if k != "backbone" and cfg.get(k) != shared.get(k))
        if differ:  # the card shows the ensemble's settings: they must be what every member runs
            fail(f"members[{i}].config", f"must have the ensemble's settings; it differs in {differ}")
    for key in ("image_stats", "pixel_stats"):
        v = ens.get(key)
        ok = isinstance(v, list) and len(v) == len(names) and all(
            isinstance(p, list) and len(p) == 2 and all(is_number(x) for x in p) and p[1] > 0 for p in v)
        if not ok:
            fail(f"ensemble.{key}", f"must be one [mean, std > 0] of finite numbers per member; "
                                    f"the file says {v!r:.80}")
    cal = ens.get("calibration_scores")
    if not isinstance(cal, list) or not all(is_number(x) and x > 0 for x in cal):
        fail("ensemble.calibration_scores", f"must be a list of positive finite numbers; "
                                            f"the file says {cal!r:.80}")
    return ens, members


def _check_statistics(ens: dict, model: PatchCoreEnsemble, source) -> None:
    """The combining statistics as :meth:`PatchCoreEnsemble.fit` makes them from
    the (checked) members: image statistics and combined scores recomputed,
    the threshold as a single model's (:func:`check_threshold`), pixel
    statistics within the range of the maps they summarise."""
    c = Checker(source)
    held_out = [m.calibration_scores for m in model.members]
    for i, (scores, got) in enumerate(zip(held_out, ens["image_stats"])):
        want = _image_stats(scores)
        if not all(math.isclose(g, w, rel_tol=_TOLERANCE, abs_tol=1e-12) for g, w in zip(got, want)):
            c.fail(f"ensemble.image_stats[{i}]", f"is {got}; member {i}'s calibration scores give {want}")
    want = _combined_scores(held_out, ens["image_stats"])
    got = ens["calibration_scores"]
    if len(got) != len(want) or not all(math.isclose(g, w, rel_tol=_TOLERANCE) for g, w in zip(got, want)):
        c.fail("ensemble.calibration_scores", f"must be the members' combined calibration scores "
                                              f"{[round(w, 6) for w in want]!r:.120}; "
                                              f"the file says {got!r:.120}")
    check_threshold(c, "ensemble.threshold", ens["threshold"], got, model.config.false_alarm_rate)
    for i, (m, (mean, sd)) in enumerate(zip(model.members, ens["pixel_stats"])):
        if not m.calibration_scores:
            low, high = [0.0, 1.0], [0.0, 1.0]  # what fit writes when nothing was held out
        else:
            # map pixels are smoothed patch scores (>= 0); without Eq. 7 the largest is the image score
            top = max(m.calibration_scores) if m.config.reweight_neighbours == 0 else math.inf
            low, high = [0.0, _MIN_STD], [top * (1 + _TOLERANCE), max(top * (1 + _TOLERANCE), _MIN_STD)]
        if not (low[0] - 1e-9 <= mean <= high[0] and low[1] <= sd <= high[1]):
            c.fail(f"ensemble.pixel_stats[{i}]", f"is {[mean, sd]}; member {i}'s maps allow a mean in "
                                                 f"[{low[0]}, {high[0]:.6g}] and a std in "
                                                 f"[{low[1]}, {high[1]:.6g}]")
