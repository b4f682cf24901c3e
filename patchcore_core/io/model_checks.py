"""Everything a model file says is checked here before any of it is used.

A model file may come from a stranger. safetensors already guarantees that
nothing is unpickled and that the tensors fit the file; this module checks
what the file *claims*: that the metadata is an object with every field of
the right type and range, that the fields agree with each other and with
the tensors, and that building the model cannot ask for absurd memory
(a ``channels`` of a million would need terabytes for the pooling matrices,
a ``resize`` of 100000 a 40 GB image). Without these checks such a file
fails later with a traceback or, worse, predicts wrongly: a ``NaN``
threshold calls every defective image "normal".

Finite but absurd values are refused too, each against what the fit
itself would have made: the threshold must be the one
:func:`~patchcore_core.pipeline.calibration.threshold_from_scores` makes of the
stored calibration scores (``1e308`` would call every defect "normal"),
the bank must be on the calibration scores' scale (features x1e30 make
every score ``inf``), the grid and the neighbourhood must be those the
backbone's layers give at ``image_size``, and ``stats`` (shown on the
model card) must be numbers, or known words where the fit writes words.

:func:`check_model_state` is the one entry point; whatever builds a model
from ``(metadata, tensors)`` calls it first. Each failure is a
:class:`~patchcore_core.io.model_file.ModelFileError` naming the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, fields

import torch

from patchcore_core.ext.ann import ANN_BACKENDS, index_from_tensor, index_problem
from patchcore_core.ext.ensemble import MIN_STD, combined_scores, image_stats
from patchcore_core.pipeline.backbones import BACKBONES, BackboneError, get_spec, stage_strides
from patchcore_core.pipeline.calibration import threshold_from_scores
from patchcore_core.pipeline.config import MAX_IMAGE_SIDE, PatchCoreConfig, SettingError, min_image_size
from patchcore_core.util.numbers import is_number

from .model_file import ModelFileError

__all__ = ["MAX_BUILD_BYTES", "check_model_state", "check_ensemble_state", "expected_grid", "Checker",
           "check_threshold", "is_number"]

MAX_BUILD_BYTES = 2 << 30    # memory the channel-pooling matrices may take (WideResNet-50 unfold: ~1 GB)
THRESHOLD_TOLERANCE = 1e-6   # relative: another scipy may fit a threshold a few late digits apart
_TOLERANCE = 1e-6            # relative: ensemble statistics recomputed on load, from the same numbers
# How far the bank's longest row and the largest calibration score may part (see _check_scale):
# honest fits stay within 0.001-1x; past these bounds the file was not fitted.
MAX_SCORE_TO_ROW = 100.0
MAX_ROW_TO_SCORE = 1e6
# A bank row longer than this has squared distances past float32's range: every score inf.
MAX_ROW_LENGTH = math.sqrt(3.4028234663852886e38 / 4)  # |a - b|^2 <= 4 max(|a|, |b|)^2


def embedding_bytes(channels: list[int], pretrain_dim: int, target_dim: int) -> int:
    """Peak float64 memory of building :class:`~patchcore_core.pipeline.features.PatchEmbedding`."""
    n_in, width = sum(channels), len(channels) * pretrain_dim
    cells = (max(channels) ** 2 + n_in * pretrain_dim      # one layer's identity and pooling
             + n_in * width + width ** 2 + width * target_dim  # block diagonal, stack pooling
             + n_in * target_dim + (n_in ** 2 if n_in < target_dim else 0))  # P and its Cholesky
    return 8 * cells


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)



def expected_grid(backbone: str, layers, image_size: int) -> int:
    """Rows (= columns) of the feature grid: the shallowest layer's, ``ceil(image_size / stride)``."""
    strides = stage_strides(backbone)
    return -(-image_size // min(strides[name] for name in layers))


class Checker:
    """Raises :class:`ModelFileError` naming the file and the field."""

    def __init__(self, source):
        self.source = source

    def fail(self, field: str, why: str):
        raise ModelFileError(f"{self.source}: field {field!r} {why}")

    def int_in(self, field: str, v, lo: int, hi: int | None = None) -> int:
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            upper = f" and at most {hi:,}" if hi is not None else ""
            self.fail(field, f"must be a whole number of at least {lo}{upper}; the file says {v!r}")
        return v


def _check_config(c: Checker, cfg):
    if not isinstance(cfg, dict):
        c.fail("config", f"must be an object of settings; the file says {cfg!r:.80}")
    for f in fields(PatchCoreConfig):
        if f.name not in cfg:
            continue  # a setting newer than the file: its default
        v, name = cfg[f.name], f"config.{f.name}"
        default = f.default if f.default is not MISSING else None
        if f.name == "layers":
            if v is not None and (not isinstance(v, list) or not v or not all(isinstance(s, str) for s in v)):
                c.fail(name, f"must be null or a list of layer names; the file says {v!r:.80}")
        elif isinstance(default, str) and not isinstance(v, str):
            c.fail(name, f"must be text; the file says {v!r:.80}")
        elif _is_int(default) and not _is_int(v):
            c.fail(name, f"must be a whole number; the file says {v!r:.80}")
        elif isinstance(default, float) and not is_number(v):
            c.fail(name, f"must be a finite number; the file says {v!r:.80}")
    for key in ("pretrain_dim", "target_dim", "projection_dim", "batch_size"):
        if key in cfg:
            c.int_in(f"config.{key}", cfg[key], 1)
    backbone, layers = cfg.get("backbone"), cfg.get("layers")
    if layers is not None and backbone in BACKBONES:
        stages = list(stage_strides(backbone))
        if len(set(layers)) != len(layers) or not set(layers) <= set(stages):
            c.fail("config.layers", f"must be different stages of {backbone}, from {stages}; "
                                    f"the file says {layers!r:.120}")
    for key in ("resize", "image_size"):
        if cfg.get(key) is not None:  # resize None: the config's rule (image_size x 256/224)
            c.int_in(f"config.{key}", cfg[key], 1, MAX_IMAGE_SIDE)
    far = cfg.get("false_alarm_rate", 0.0)
    if not (is_number(far) and 0 <= far < 1):  # 1 would call every good image anomalous
        c.fail("config.false_alarm_rate", f"must be a number in [0, 1); the file says {far!r:.80}")
    if cfg.get("sigma", 0) < 0:
        c.fail("config.sigma", f"must be 0 or more; the file says {cfg['sigma']}")
    try:
        return PatchCoreConfig.from_dict(cfg)  # its own range checks (ratios, choices, sizes)
    except SettingError as exc:
        c.fail(f"config.{exc.field}", f"is not valid: {exc}")
    except (ValueError, TypeError, BackboneError) as exc:
        c.fail("config", f"is not a valid setting: {exc}")


def check_model_state(meta, tensors: dict, source="model file") -> None:
    """Raise :class:`~patchcore_core.io.model_file.ModelFileError` unless
    ``meta`` (the parsed JSON metadata) and ``tensors`` describe a model
    that can be built and used. ``source`` names the file in messages."""
    c = Checker(source)
    if not isinstance(meta, dict):
        c.fail("patchcore", f"(the metadata) must be a JSON object; the file holds a {type(meta).__name__}")
    if "config" not in meta:
        c.fail("config", "is missing")
    config = _check_config(c, meta["config"])

    # preprocessing: as the config made it at fit time
    p = meta.get("preprocess")
    if not isinstance(p, dict):
        c.fail("preprocess", f"must be an object with resize, crop and mode; the file says {p!r:.80}")
    c.int_in("preprocess.resize", p.get("resize"), 1, MAX_IMAGE_SIDE)
    c.int_in("preprocess.crop", p.get("crop"), 1, MAX_IMAGE_SIDE)
    if p["resize"] != config.resize_to:
        c.fail("preprocess.resize", f"is {p['resize']} but the config resizes to {config.resize_to}")
    if p["crop"] != config.image_size:
        c.fail("preprocess.crop", f"is {p['crop']} but config.image_size is {config.image_size}")
    if p.get("mode") not in ("crop", "squash"):
        c.fail("preprocess.mode", f"must be 'crop' or 'squash'; the file says {p.get('mode')!r:.80}")
    smallest = min_image_size(config.backbone, config.sigma)
    if config.image_size < smallest:
        c.fail("config.image_size",
               f"is {config.image_size}; this backbone and sigma need at least {smallest}")

    # channels: what the pooling matrices are built from, so bounded before they are
    layers = config.layers or get_spec(config.backbone).layers
    ch = meta.get("channels")
    if not isinstance(ch, list) or len(ch) != len(layers) or not all(_is_int(v) and v > 0 for v in ch):
        c.fail("channels", f"must be one positive whole number per layer ({len(layers)}); "
                           f"the file says {ch!r:.80}")
    need = embedding_bytes(ch, config.pretrain_dim, config.target_dim)
    if need > MAX_BUILD_BYTES:
        c.fail("channels", f"{ch!r:.80} with pretrain_dim {config.pretrain_dim} and target_dim "
                           f"{config.target_dim} would need {need / 2**30:,.1f} GiB to build; "
                           f"a PatchCore model needs at most {MAX_BUILD_BYTES / 2**30:.0f} GiB")

    grid = meta.get("grid")
    if not isinstance(grid, list) or len(grid) != 2:
        c.fail("grid", f"must be [rows, columns]; the file says {grid!r:.80}")
    for name, v in zip(("grid[0]", "grid[1]"), grid):
        c.int_in(name, v, 1, config.image_size)
    side = expected_grid(config.backbone, layers, config.image_size)
    if grid != [side, side]:  # the patch boxes, explanations and map sizes follow from it
        c.fail("grid", f"is {grid}; layers {list(layers)} of {config.backbone} give a [{side}, {side}] "
                       f"grid at image_size {config.image_size}")
    if config.neighbourhood > side:
        # the config's own rule (PatchCoreConfig.patch_grid), here with the grid of the file's layers
        c.fail("config.neighbourhood", f"is {config.neighbourhood}; on a {side}x{side} grid it must be "
                                       f"an odd number from 1 to {side - 1 + side % 2}")

    names = meta.get("train_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        c.fail("train_names", f"must be a non-empty list of file names; the file says {names!r:.80}")
    cal = meta.get("calibration_scores", [])
    if not isinstance(cal, list) or not all(is_number(v) and v >= 0 for v in cal):
        c.fail("calibration_scores", f"must be a list of distances: finite numbers, 0 or more; "
                                     f"the file says {cal!r:.80}")
    check_threshold(c, "threshold", meta.get("threshold"), cal, config.false_alarm_rate)

    feats = _check_bank(c, tensors, ch, config, grid, len(names))
    _check_scale(c, feats, cal)
    _check_stats(c, meta.get("stats", {}), p["mode"], len(names), feats.shape)


def check_threshold(c: Checker, field: str, thr, cal: list, false_alarm_rate: float) -> None:
    """``thr`` must be what :func:`~patchcore_core.pipeline.calibration.threshold_from_scores`
    makes of the (checked) calibration scores ``cal``: none without scores,
    else their largest or the fitted bound above it. Anything else was not
    fitted: ``1e308`` calls every defect normal, a value below the largest
    score calls the good images that set it anomalous."""
    if thr is not None and not is_number(thr):  # NaN: every image normal
        c.fail(field, f"must be a finite number (or null: no threshold); the file says {thr!r:.80}")
    expected = threshold_from_scores(cal, false_alarm_rate or None)
    if expected is None:
        if thr is not None:
            c.fail(field, f"is {thr!r} but there are no calibration scores to set it: it must be null")
        return
    lo, hi = expected * (1 - THRESHOLD_TOLERANCE), expected * (1 + THRESHOLD_TOLERANCE)
    if thr is None or not lo <= thr <= hi:
        rule = ("the largest" if not false_alarm_rate else
                f"the false_alarm_rate {false_alarm_rate} bound (never below the largest)")
        c.fail(field, f"is {thr!r}; {rule} of the {len(cal)} calibration scores puts it at {expected!r}: "
                      f"accepted range [{lo!r}, {hi!r}]")


def _check_bank(c: Checker, tensors: dict, channels: list[int], config, grid, n_names: int):
    """The bank's tensors; returns its features."""
    for key in ("bank.features", "bank.origin"):
        if key not in tensors:
            c.fail(key, "(a tensor) is missing")
    feats, origin = tensors["bank.features"], tensors["bank.origin"]
    n_in = sum(channels)
    width = n_in if n_in < config.target_dim else config.target_dim
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] != width:
        c.fail("bank.features", f"has shape {tuple(feats.shape)}; channels and target_dim call for "
                                f"[at least 1, {width}]")
    if not feats.is_floating_point() or not bool(torch.isfinite(feats).all()):
        c.fail("bank.features", "must hold finite floating-point numbers")
    if origin.shape != (len(feats), 3) or origin.is_floating_point() or origin.dtype == torch.bool:
        c.fail("bank.origin", f"has shape {tuple(origin.shape)} ({origin.dtype}); it must be whole "
                              f"numbers [{len(feats)}, 3]: (image, row, column) of each bank row")
    _check_index(c, tensors, config.knn_backend, feats.shape[0], feats.shape[1])
    lows = origin.amin(dim=0).tolist()
    highs = origin.amax(dim=0).tolist()
    for i, (what, limit) in enumerate((("image", n_names), ("row", grid[0]), ("column", grid[1]))):
        if lows[i] < 0 or highs[i] >= limit:
            c.fail("bank.origin", f"names {what} {highs[i] if highs[i] >= limit else lows[i]}, "
                                  f"outside 0..{limit - 1}")
    return feats


def longest_row(feats) -> float:
    """The bank's longest row, in float64 and by chunks: a float32 square of a huge row overflows."""
    return max(float(chunk.double().norm(dim=1).max()) for chunk in feats.split(1 << 16))


def _check_scale(c: Checker, feats, cal: list) -> None:
    """The bank on the calibration scores' scale. A calibration score is the
    distance from a held-out training patch to its nearest training patch in
    a bank, so it is at most the two rows' lengths added; the fits measured
    here score 0.3-1x the bank's longest row, identical images (no coreset)
    1e-3x or 0. A bank scaled by 1e30 makes every score inf, by 1e15 every
    image anomalous; calibration scores scaled up carry the threshold along."""
    longest = longest_row(feats)
    if longest > MAX_ROW_LENGTH:
        c.fail("bank.features", f"has a row of length {longest:.3g}; squared distances overflow "
                                f"float32 (every score inf) past {MAX_ROW_LENGTH:.3g}")
    top = max(cal, default=0.0)
    if top > longest * MAX_SCORE_TO_ROW:
        c.fail("calibration_scores", f"reach {top:.3g}, more than {MAX_SCORE_TO_ROW:g} times the bank's "
                                     f"longest row ({longest:.3g}): accepted range "
                                     f"[0, {longest * MAX_SCORE_TO_ROW:.3g}]")
    if top > 0 and longest > top * MAX_ROW_TO_SCORE:  # 0: identical images, nothing to compare
        c.fail("bank.features", f"has a row of length {longest:.3g}, more than {MAX_ROW_TO_SCORE:.0g} times "
                                f"the largest calibration score {top:.3g}: accepted range "
                                f"[0, {top * MAX_ROW_TO_SCORE:.3g}]")


# stats: shown on the model card as they are, so numbers only, and words only where the fit writes them
_STAT_WORDS = {"crop_mode": re.compile(r"crop|squash"), "device": re.compile(r"(cpu|mps|cuda)(:\d{1,3})?")}
_STAT_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CARD_KEYS = {"layers", "threshold", "grid"}  # the card's own entries, besides the config's


def _check_stats(c: Checker, stats, mode: str, n_train: int, bank_shape) -> None:
    """``stats``: each value a finite number 0 or more, or a known word; counts that
    are the model's own (images, bank rows and width) as the model has them; no
    key that would stand in for a setting on the card."""
    if not isinstance(stats, dict):
        c.fail("stats", f"must be an object; the file says {stats!r:.80}")
    reserved = _CARD_KEYS | {f.name for f in fields(PatchCoreConfig)}
    own = {"n_train": n_train, "memory_bank_size": bank_shape[0], "feature_dim": bank_shape[1],
           "crop_mode": mode}
    for key, v in stats.items():
        if not _STAT_KEY.fullmatch(key) or (key in reserved and key not in own):
            c.fail("stats", f"has the key {key!r:.80}; keys are lower-case names (a-z, 0-9, _) that "
                            f"are no setting: not one of {sorted(reserved)}")
        field = f"stats.{key}"
        if key in _STAT_WORDS:
            if not (isinstance(v, str) and _STAT_WORDS[key].fullmatch(v)):
                c.fail(field, f"must match {_STAT_WORDS[key].pattern!r}; the file says {v!r:.80}")
        elif not (is_number(v) and v >= 0):
            c.fail(field, f"must be a finite number, 0 or more; the file says {v!r:.80}")
        if key in own and v != own[key]:
            c.fail(field, f"is {v!r:.80} but the model has {own[key]!r}")


def _check_index(c: Checker, tensors: dict, backend: str, n: int, d: int):
    """The approximate index's bytes: present exactly when the backend is
    approximate, a faiss index of the backend's kind over every bank row."""
    data = tensors.get("bank.index")
    if backend not in ANN_BACKENDS:
        if data is not None:
            c.fail("bank.index", f"is present but config.knn_backend {backend!r} is an exact search")
        return
    if data is None:
        c.fail("bank.index", f"(a tensor) is missing: the {backend} backend needs its trained index")
    if data.dtype != torch.uint8 or data.ndim != 1 or data.numel() == 0:
        c.fail("bank.index", f"must be a non-empty 1-D uint8 tensor of faiss index bytes; it is "
                             f"{data.dtype} {tuple(data.shape)}")
    try:
        index = index_from_tensor(data)
    except ValueError as exc:
        c.fail("bank.index", str(exc))
    problem = index_problem(index, backend, n, d)
    if problem:
        c.fail("bank.index", problem)


def check_ensemble_state(meta, tensors: dict, source="model file") -> None:
    """As :func:`check_model_state`, for an ensemble's file: its own fields, each member's as a
    single model's, then the combining statistics against the members' calibration scores."""
    c = Checker(source)
    ens, members = _check_ensemble_fields(c, meta)
    for i, m in enumerate(members):
        prefix = f"member{i}."
        check_model_state(m, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                          f"{source} (member {i})")
    _check_statistics(c, ens, members)


def _check_ensemble_fields(c: Checker, meta):
    """The ensemble's own fields (its members' are checked as single models')."""
    fail = c.fail
    if not isinstance(meta, dict):
        fail("patchcore", f"(the metadata) must be a JSON object; the file holds a {type(meta).__name__}")
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


def _check_statistics(c: Checker, ens: dict, members: list[dict]) -> None:
    """The combining statistics as :meth:`PatchCoreEnsemble.fit` makes them from
    the (checked) members: image statistics and combined scores recomputed,
    the threshold as a single model's (:func:`check_threshold`), pixel
    statistics within the range of the maps they summarise."""
    held_out = [m.get("calibration_scores", []) for m in members]
    false_alarm_rate = ens["config"].get("false_alarm_rate", 0.0)
    for i, (scores, got) in enumerate(zip(held_out, ens["image_stats"])):
        want = image_stats(scores)
        if not all(math.isclose(g, w, rel_tol=_TOLERANCE, abs_tol=1e-12) for g, w in zip(got, want)):
            c.fail(f"ensemble.image_stats[{i}]", f"is {got}; member {i}'s calibration scores give {want}")
    want = combined_scores(held_out, ens["image_stats"])
    got = ens["calibration_scores"]
    if len(got) != len(want) or not all(math.isclose(g, w, rel_tol=_TOLERANCE) for g, w in zip(got, want)):
        c.fail("ensemble.calibration_scores", f"must be the members' combined calibration scores "
                                              f"{[round(w, 6) for w in want]!r:.120}; "
                                              f"the file says {got!r:.120}")
    check_threshold(c, "ensemble.threshold", ens.get("threshold"), got, false_alarm_rate)
    for i, (m, (mean, sd)) in enumerate(zip(members, ens["pixel_stats"])):
        scores = m.get("calibration_scores", [])
        if not scores:
            low, high = [0.0, 1.0], [0.0, 1.0]  # what fit writes when nothing was held out
        else:
            # map pixels are smoothed patch scores (>= 0); without Eq. 7 the largest is the image score
            top = max(scores) if m["config"].get("reweight_neighbours", 0) == 0 else math.inf
            low, high = [0.0, MIN_STD], [top * (1 + _TOLERANCE), max(top * (1 + _TOLERANCE), MIN_STD)]
        if not (low[0] - 1e-9 <= mean <= high[0] and low[1] <= sd <= high[1]):
            c.fail(f"ensemble.pixel_stats[{i}]", f"is {[mean, sd]}; member {i}'s maps allow a mean in "
                                                 f"[{low[0]}, {high[0]:.6g}] and a std in "
                                                 f"[{low[1]}, {high[1]:.6g}]")
