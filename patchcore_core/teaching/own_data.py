"""A stand-in for "your own images" (notebook 06), copied from MVTec-layout data."""

from __future__ import annotations

import shutil
from pathlib import Path

from patchcore_core.data.builtin import builtin_root
from patchcore_core.data.mvtec import MVTecCategory

__all__ = ["sample_own_data"]


def sample_own_data(dst, root=None, category: str = "brick") -> dict[str, Path]:
    """A stand-in for "your own images": ``dst/good`` (the category's good
    training images) and ``dst/test`` (its test images, named
    ``<defect>_<name>``), copied from an MVTec-layout ``root`` (default:
    the built-in data). Returns ``{"good": ..., "test": ...}``."""
    cat = MVTecCategory(root or builtin_root(), category)
    dst = Path(dst)
    out = {"good": dst / "good", "test": dst / "test"}
    for p in out.values():
        p.mkdir(parents=True, exist_ok=True)
    for path in cat.train:
        shutil.copy2(path, out["good"] / path.name)
    for item in cat.test:
        shutil.copy2(item.path, out["test"] / f"{item.defect}_{item.path.name}")
    return out
