"""The MVTec AD folder layout (``root/category/...``)::

    train/good/*.png                       defect-free training images
    test/good/*.png                        normal test images
    test/<defect>/*.png                    defective test images
    ground_truth/<defect>/<stem>_mask.png  (or <stem>.png) pixel masks
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..util.images import IMAGE_EXTENSIONS, DataError, image_size, read_mask

if TYPE_CHECKING:  # a hint only: listing images needs no torch (the deploy runtime lists folders)
    from ..pipeline.preprocess import Preprocess

__all__ = ["MVTecCategory", "TestItem", "few_shot", "image_folder", "list_categories"]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _skipped_in(folder: Path) -> list[str]:
    """'name (why)' for each entry of ``folder`` that :func:`image_folder` leaves out,
    except hidden files and subfolders."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        if not p.is_file():
            out.append(f"{p.name} (a broken link or a link loop)")
        elif p.suffix.lower() not in IMAGE_EXTENSIONS:
            out.append(f"{p.name} (not one of {', '.join(IMAGE_EXTENSIONS)})")
    return out


def image_folder(folder, on_skip=None) -> list[Path]:
    """All images of a plain folder, sorted by name.

    ``on_skip(message)``, when given, is called once with a one-line notice
    naming the files left out (other types, broken links), if any.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    if on_skip is not None and (skipped := _skipped_in(folder)):
        on_skip(f"{folder}: skipped {len(skipped)} file{'s' if len(skipped) > 1 else ''}: "
                + "; ".join(skipped))
    paths = _images_in(folder)
    if not paths:
        # an MVTec test/ holds its images one level down: say where they are
        below = sorted(d.name for d in folder.iterdir() if d.is_dir() and _images_in(d))
        hint = (f"; its subfolders {', '.join(below[:6])}{', ...' if len(below) > 6 else ''} hold images: "
                f"give them (e.g. {folder / below[0]} or {folder}/*/)") if below else ""
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder{hint}")
    return paths


def few_shot(paths: list, k: int | None, seed: int = 0) -> list:
    """``k`` training images drawn at random (seeded); all of them when ``k`` is None."""
    if k is None or k >= len(paths):
        return list(paths)
    if k < 1:
        raise DataError(f"shots must be at least 1, not {k}")
    return sorted(random.Random(seed).sample(list(paths), k))


def list_categories(root) -> list[str]:
    """Categories of an MVTec-layout root: folders that hold ``train/good``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder")
    return sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())


@dataclass(frozen=True)
class TestItem:
    path: Path
    defect: str             # "good" for normal images
    mask_path: Path | None  # None for good images (and defects without a mask)

    @property
    def is_anomalous(self) -> bool:
        return self.defect != "good"


class MVTecCategory:
    """One category of an MVTec AD-layout dataset.

    >>> cat = MVTecCategory("mvtec", "bottle")      # doctest: +SKIP
    >>> cat.train[:2], cat.test[0].defect          # doctest: +SKIP
    """

    def __init__(self, root, category: str):
        self.root, self.category = Path(root), category
        self.path = self.root / category
        found = list_categories(self.root)
        if category not in found:
            raise DataError(
                f"category {category!r} not found in {self.root}; "
                f"categories found: {', '.join(found) or '(none: no <category>/train/good folder)'}"
            )
        self.train = _images_in(self.path / "train" / "good")
        if not self.train:
            raise DataError(f"{self.path / 'train' / 'good'}: no training images; "
                            f"categories found: {', '.join(found)}")
        self.test = self._test_items()

    def _test_items(self) -> list[TestItem]:
        items = []
        test_dir = self.path / "test"
        if not test_dir.is_dir():
            return items
        for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            defect = defect_dir.name
            for path in _images_in(defect_dir):
                mask = None
                if defect != "good":
                    gt = self.path / "ground_truth" / defect
                    for cand in (gt / f"{path.stem}_mask.png", gt / f"{path.stem}.png"):
                        if cand.is_file():
                            mask = cand
                            break
                items.append(TestItem(path, defect, mask))
        return items

    @property
    def defects(self) -> list[str]:
        return sorted({t.defect for t in self.test if t.is_anomalous})

    def load_mask(self, item: TestItem, preprocess: Preprocess, protocol: str = "nearest") -> np.ndarray:
        """Ground truth for ``item`` after ``preprocess``: ``bool [crop, crop]``.

        Good images (and defects without a mask file) get an empty mask. A
        mask whose size differs from its image is an error, not a guess.
        ``protocol``: see :meth:`Preprocess.mask`.
        """
        if item.mask_path is None:
            return np.zeros((preprocess.crop, preprocess.crop), dtype=bool)
        mask = read_mask(item.mask_path)
        w, h = image_size(item.path)
        if mask.shape != (h, w):
            raise DataError(
                f"{item.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{item.path} is {w}x{h}; a mask must have its image's size"
            )
        return preprocess.mask(mask, protocol)
