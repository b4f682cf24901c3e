"""Model files: safetensors tensors plus JSON metadata, never pickle.

This module only turns a model's state (:meth:`PatchCore.state_dict`:
plain tensors and JSON-able metadata) into bytes and back, and checks the
file's format and version. What the state means is the model's business
(:meth:`PatchCore.from_state_dict`). Nothing is ever unpickled, so a model
file from a stranger cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from patchcore_core._version import __version__
from patchcore_core.util.atomic import atomic_path

__all__ = ["FORMAT_VERSION", "ModelFileError", "write_state", "read_state"]

FORMAT = "patchcore_core"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file that is missing, truncated, foreign, inconsistent or of another format version."""


def write_state(path, tensors: dict[str, torch.Tensor], metadata: dict) -> Path:
    """Write a state to ``path`` atomically (temp file, then rename)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: model files end in .safetensors")
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__,
              **metadata}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"patchcore": json.dumps(header)})
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


def read_state(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a model file, after checking its format and version."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    meta, tensors = _read(path)
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: field 'patchcore' (the metadata) must be a JSON object; "
                             f"the file holds a {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: field 'format' is {meta.get('format')!r}, not {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: field 'format_version' is {meta.get('format_version')!r} (written by "
            f"patchcore_core {meta.get('package_version')}); this patchcore_core ({__version__}) "
            f"reads format version {FORMAT_VERSION}. Refit the model or use the matching package version.")
    return tensors, meta
