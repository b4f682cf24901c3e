"""Saving and loading models: one ``.safetensors`` file with JSON metadata, never pickle.

    >>> import patchcore_core
    >>> patchcore_core.save(model, "brick.safetensors")          # doctest: +SKIP
    >>> model = patchcore_core.load("brick.safetensors")         # doctest: +SKIP

Either kind of model (:class:`~patchcore_core.ext.ensemble.AnomalyModel`): one
backbone or an ensemble; :func:`load` returns whichever the file holds. A file
may come from a stranger, so every field is checked
(:mod:`.model_checks`) before any of it is used.
"""

from __future__ import annotations

from pathlib import Path

from patchcore_core.ext.ensemble import AnomalyModel, PatchCoreEnsemble
from patchcore_core.pipeline.patchcore import PatchCore

from .model_checks import check_ensemble_state, check_model_state
from .model_file import ModelFileError, read_state, write_state

__all__ = ["save", "load"]


def save(model: AnomalyModel, path) -> Path:
    """Write a fitted model (written whole or not at all); returns the path."""
    return write_state(path, *model.state_dict())


def load(path, device: str = "auto") -> AnomalyModel:
    """Read a model written by :func:`save`: a :class:`~patchcore_core.PatchCore` or a
    :class:`~patchcore_core.ext.ensemble.PatchCoreEnsemble`. Raises
    :class:`~patchcore_core.io.model_file.ModelFileError` naming the file and the field
    when anything in it is wrong."""
    tensors, metadata = read_state(path)
    try:
        if isinstance(metadata, dict) and "ensemble" in metadata:
            check_ensemble_state(metadata, tensors, path)
            return PatchCoreEnsemble.from_state_dict(tensors, metadata, device)
        check_model_state(metadata, tensors, path)
        return PatchCore.from_state_dict(tensors, metadata, device)
    except ModelFileError:
        raise  # already names the file and the field
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelFileError(f"{path}: inconsistent model file: {detail}") from None
