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

:func:`check_model_state` is the one entry point; whatever builds a model
from ``(metadata, tensors)`` calls it first. Each failure is a
:class:`~patchcore_core.io.model_file.ModelFileError` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields

import torch

from patchcore_core.ext.ann import ANN_BACKENDS, index_from_tensor, index_problem
from patchcore_core.pipeline.backbones import BackboneError, get_spec
from patchcore_core.pipeline.config import MAX_IMAGE_SIDE, PatchCoreConfig, min_image_size

from .model_file import ModelFileError

__all__ = ["MAX_BUILD_BYTES", "check_model_state"]

MAX_BUILD_BYTES = 2 << 30    # memory the channel-pooling matrices may take (WideResNet-50 unfold: ~1 GB)


def embedding_bytes(channels: list[int], pretrain_dim: int, target_dim: int) -> int:
    """Peak float64 memory of building :class:`~patchcore_core.pipeline.features.PatchEmbedding`."""
    n_in, width = sum(channels), len(channels) * pretrain_dim
    cells = (max(channels) ** 2 + n_in * pretrain_dim      # one layer's identity and pooling
             + n_in * width + width ** 2 + width * target_dim  # block diagonal, stack pooling
             + n_in * target_dim + (n_in ** 2 if n_in < target_dim else 0))  # P and its Cholesky
    return 8 * cells


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


class _Checker:
    def __init__(self, source):
        self.source = source

    def fail(self, field: str, why: str):
        raise ModelFileError(f"{self.source}: field {field!r} {why}")

    def int_in(self, field: str, v, lo: int, hi: int | None = None) -> int:
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            upper = f" and at most {hi:,}" if hi is not None else ""
            self.fail(field, f"must be a whole number of at least {lo}{upper}; the file says {v!r}")
        return v


def _check_config(c: _Checker, cfg):
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
        elif isinstance(default, float) and not _is_number(v):
            c.fail(name, f"must be a finite number; the file says {v!r:.80}")
    for key in ("pretrain_dim", "target_dim", "projection_dim", "batch_size"):
        if key in cfg:
            c.int_in(f"config.{key}", cfg[key], 1)
    for key in ("resize", "image_size"):
        if cfg.get(key) is not None:  # resize None: the config's rule (image_size x 256/224)
            c.int_in(f"config.{key}", cfg[key], 1, MAX_IMAGE_SIDE)
    far = cfg.get("false_alarm_rate", 0.0)
    if not (_is_number(far) and 0 <= far < 1):  # 1 would call every good image anomalous
        c.fail("config.false_alarm_rate", f"must be a number in [0, 1); the file says {far!r:.80}")
    if cfg.get("sigma", 0) < 0:
        c.fail("config.sigma", f"must be 0 or more; the file says {cfg['sigma']}")
    try:
        return PatchCoreConfig.from_dict(cfg)  # its own range checks (ratios, choices, sizes)
    except (ValueError, TypeError, BackboneError) as exc:
        c.fail("config", f"is not a valid setting: {exc}")


def check_model_state(meta, tensors: dict, source="model file") -> None:
    """Raise :class:`~patchcore_core.io.model_file.ModelFileError` unless
    ``meta`` (the parsed JSON metadata) and ``tensors`` describe a model
    that can be built and used. ``source`` names the file in messages."""
    c = _Checker(source)
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

    names = meta.get("train_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        c.fail("train_names", f"must be a non-empty list of file names; the file says {names!r:.80}")
    thr = meta.get("threshold")
    if thr is not None and not (_is_number(thr) and thr >= 0):
        # a NaN or negative threshold would call every image normal
        c.fail("threshold", f"must be a finite number, 0 or more (or null: no threshold); "
                            f"the file says {thr!r}")
    cal = meta.get("calibration_scores", [])
    if not isinstance(cal, list) or not all(_is_number(v) for v in cal):
        c.fail("calibration_scores", f"must be a list of finite numbers; the file says {cal!r:.80}")
    if thr is not None and cal and thr < max(cal):
        # both threshold rules put it at or above every held-out good score (calibration.py)
        c.fail("threshold", f"is {thr}, below the largest calibration score {max(cal)}: it would call "
                            "good images that set it anomalous")
    if not isinstance(meta.get("stats", {}), dict):
        c.fail("stats", f"must be an object; the file says {meta.get('stats')!r:.80}")

    _check_bank(c, tensors, ch, config, grid, len(names))


def _check_bank(c: _Checker, tensors: dict, channels: list[int], config, grid, n_names: int):
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


def _check_index(c: _Checker, tensors: dict, backend: str, n: int, d: int):
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
