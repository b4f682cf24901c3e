"""Your own images (notebook 06): a stand-in copied from MVTec-layout data, and
a test folder read with whatever labels its layout gives."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchcore_core.data.builtin import builtin_root
from patchcore_core.data.mvtec import MVTecCategory
from patchcore_core.util.images import IMAGE_EXTENSIONS, DataError

__all__ = ["sample_own_data", "TestImages", "read_test_folder", "hold_back"]


def sample_own_data(dst, root=None, category: str = "brick") -> dict[str, Path]:
    """A stand-in for "your own images": ``dst/good`` (the category's good
    training images) and ``dst/test`` (its test images, in ``good/`` and one
    sub-folder per defect, as :func:`read_test_folder` reads them), copied from an
    MVTec-layout ``root`` (default: the built-in data). Returns
    ``{"good": ..., "test": ...}``."""
    cat = MVTecCategory(root or builtin_root(), category)
    dst = Path(dst)
    out = {"good": dst / "good", "test": dst / "test"}
    out["good"].mkdir(parents=True, exist_ok=True)
    for path in cat.train:
        shutil.copy2(path, out["good"] / path.name)
    for item in cat.test:
        (out["test"] / item.defect).mkdir(parents=True, exist_ok=True)
        shutil.copy2(item.path, out["test"] / item.defect / item.path.name)
    return out


@dataclass
class TestImages:
    """Test images and what is known about them.

    ``is_bad[i]`` says whether ``paths[i]`` is defective; ``None`` when the
    folder does not say. ``source`` says where the images and labels came from.
    """

    __test__ = False  # not a pytest class

    paths: list[Path]
    is_bad: np.ndarray | None
    source: str

    @property
    def n_bad(self) -> int:
        return 0 if self.is_bad is None else int(self.is_bad.sum())

    @property
    def n_good(self) -> int:
        return 0 if self.is_bad is None else int((~self.is_bad).sum())


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_test_folder(folder) -> TestImages:
    """The images of a test folder, labelled by its layout, never by file names.

    ``folder/good/*`` and other sub-folders (``folder/scratch/*``, ...), no
    loose images: ``good`` images are normal, the other sub-folders'
    defective (the MVTec layout). Otherwise every image of the folder and its sub-folders, with
    no labels (``is_bad`` is ``None``). Hidden folders are left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    subs = {p.name: _images(p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    subs = {name: imgs for name, imgs in subs.items() if imgs}
    loose = _images(folder)
    paths = loose + [p for imgs in subs.values() for p in imgs]
    if not paths:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in it or its sub-folders")
    if "good" in subs and not loose:
        is_bad = np.array([p.parent.name != "good" for p in paths])
        kinds = ", ".join(f"{name}/ {len(imgs)}" for name, imgs in subs.items())
        return TestImages(paths, is_bad, f"{folder}: labelled by sub-folder ({kinds})")
    why = ("images outside the sub-folders" if loose and subs else
           "no good/ sub-folder" if subs else "no sub-folders")
    return TestImages(paths, None, f"{folder}: no labels ({why}; use good/ and one sub-folder per defect)")


def hold_back(good: list[Path], most: int = 10) -> tuple[list[Path], TestImages]:
    """Without a test folder: the last fifth of the good images (at most
    ``most``, none when there are fewer than 2) held back from training, as
    test images known to be good. Returns ``(training images, test images)``."""
    n = min(most, len(good) // 5) if len(good) >= 5 else min(1, len(good) - 1)
    train, held = list(good[:len(good) - n]), list(good[len(good) - n:])
    return train, TestImages(held, np.zeros(len(held), dtype=bool),
                             f"no test folder: {len(held)} of the good images held back from training")
