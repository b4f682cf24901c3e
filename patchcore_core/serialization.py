"""Save and load models as safetensors plus JSON metadata.

One ``.safetensors`` file holds the memory bank tensors; its header's
metadata holds a JSON document with the configuration, the transform,
the threshold and the training image names. Nothing is ever unpickled,
so a model file from a stranger cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from .atomic import atomic_path

__all__ = ["FORMAT_VERSION", "ModelFileError", "save_model", "load_model"]

FORMAT = "patchcore_core"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file that is missing, truncated, foreign or of another format version."""


def save_model(model, path) -> Path:
    """Write ``model`` to ``path`` atomically (temp file, then rename)."""
    model._require_fitted()
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: model files end in .safetensors")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(model.config).items()},
        "preprocess": {"resize": model.preprocess.resize, "crop": model.preprocess.crop,
                       "mode": model.preprocess.mode},
        "channels": model.embedding.channels,
        "grid": list(model.grid),
        "threshold": model.threshold,
        "calibration_scores": model.calibration_scores,
        "train_names": model.train_names,
        "stats": model.stats,
    }
    tensors = {"bank.features": model.bank.features.detach().float().cpu().contiguous(),
               "bank.origin": model.bank.origin.detach().cpu().contiguous()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"patchcore": json.dumps(meta)})
    return path


def _read(path: Path):
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if "patchcore" not in header:
                raise ModelFileError(f"{path}: a safetensors file, but not a PatchCore model "
                                     "(its metadata has no 'patchcore' entry)")
            meta = json.loads(header["patchcore"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except ModelFileError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: not a readable PatchCore model file; it may be truncated "
                             f"or not a safetensors file ({exc})") from None
    return meta, tensors


def load_model(path, device: str = "auto"):
    from .data import Preprocess
    from .features import PatchEmbedding
    from .memory_bank import MemoryBank
    from .model import PatchCore, PatchCoreConfig
    from .model_checks import check_model_state

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    meta, tensors = _read(path)
    check_model_state(meta, tensors, path)  # every field, before any of it is used
    model = PatchCore(PatchCoreConfig.from_dict(meta["config"]), device=device)
    p = meta["preprocess"]
    model.preprocess = Preprocess(p["resize"], p["crop"], p["mode"], model.spec.mean, model.spec.std)
    c = model.config
    model.embedding = PatchEmbedding(meta["channels"], c.pretrain_dim, c.target_dim)
    feats = tensors["bank.features"].float()
    model.bank = MemoryBank(feats.to(model.device), tensors["bank.origin"].to(model.device),
                            c.knn_backend)
    model.grid = tuple(meta["grid"])
    model.threshold = meta["threshold"]
    model.calibration_scores = meta.get("calibration_scores", [])
    model.train_names = meta["train_names"]
    model.stats = meta.get("stats", {})
    return model
