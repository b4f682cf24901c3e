"""Images in, tensors out: safe reading, the paper's transform, and the
MVTec AD folder layout.

MVTec AD layout (``root/category/...``)::

    train/good/*.png                       defect-free training images
    test/good/*.png                        normal test images
    test/<defect>/*.png                    defective test images
    ground_truth/<defect>/<stem>_mask.png  (or <stem>.png) pixel masks
"""

from __future__ import annotations

import os
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DataError", "IMAGE_EXTENSIONS", "MASK_PROTOCOLS", "CROP_MODES", "check_mask_protocol", "read_image",
    "read_mask", "ImageTooLargeError", "Preprocess", "TestItem", "MVTecCategory", "list_categories",
    "image_folder", "few_shot",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_PROTOCOLS = ("nearest", "strict")  # how masks are resized for evaluation (Preprocess.mask)
# Larger images are refused before decoding (a decompression bomb would
# otherwise fill the memory). 1 MVTec image is ~1 Mpx; 80 Mpx is generous.
MAX_PIXELS = int(os.environ.get("PATCHCORE_MAX_PIXELS", 80_000_000))


def check_mask_protocol(protocol: str) -> None:
    if protocol not in MASK_PROTOCOLS:
        raise ValueError(f"mask protocol must be one of {', '.join(MASK_PROTOCOLS)}, not {protocol!r}")


class DataError(ValueError):
    """Bad input data: the message names the file or folder and what is accepted."""


class ImageTooLargeError(DataError):
    """An image over :data:`MAX_PIXELS`, refused before its pixels are decoded."""

    def __init__(self, name: str, pixels: int, size: tuple[int, int] | None = None):
        self.name, self.pixels, self.size, self.limit = name, pixels, size, MAX_PIXELS
        dims = f"{size[0]}x{size[1]} = " if size else ""
        super().__init__(f"{name}: {dims}{pixels:,} pixels is more than the limit of {MAX_PIXELS:,} "
                         "(a guard against decompression bombs); resize it first, or raise "
                         "PATCHCORE_MAX_PIXELS")


if MAX_PIXELS > Image.MAX_IMAGE_PIXELS:  # PATCHCORE_MAX_PIXELS raised: Pillow's own guard follows it
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _open_header(path) -> Image.Image:
    """``Image.open`` (reads the header only), its errors as :class:`DataError`."""
    name = str(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 Mpx on; our size check follows and says more
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at twice its warning size
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageTooLargeError(name, int(found.group(1)) if found else 2 * Image.MAX_IMAGE_PIXELS) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(
            f"{name}: not a readable image ({exc}); accepted: {', '.join(IMAGE_EXTENSIONS)}"
        ) from None


def _open(path_or_image) -> Image.Image:
    if isinstance(path_or_image, Image.Image):
        img = path_or_image
        name = "image"
    else:
        name = str(path_or_image)
        img = _open_header(path_or_image)
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise ImageTooLargeError(name, w * h, (w, h))
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise DataError(f"{name}: the image data is corrupt or truncated ({exc})") from None
    return img


def _to_uint8(img: Image.Image) -> Image.Image:
    """16-bit and float images -> 8-bit, scaled by their type's range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.float32) / 257.0
        return Image.fromarray(arr.round().clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max() > 255 else 255.0
        return Image.fromarray((arr * (255.0 / top)).round().clip(0, 255).astype(np.uint8), "L")
    return img


def read_image(path_or_image) -> Image.Image:
    """Read any common image as 8-bit RGB.

    Greyscale is repeated to three channels, 16-bit is scaled to 8-bit,
    and transparency is composited onto black (MVTec masks and most
    industrial captures have none).
    """
    img = _to_uint8(_open(path_or_image))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def read_mask(path) -> np.ndarray:
    """Read a ground-truth mask as a bool array ``[H, W]`` (non-zero = defect)."""
    img = _to_uint8(_open(path))
    return np.asarray(img.convert("L")) > 0


# auto: crop square images as the paper does, squash elongated ones (see Preprocess).
CROP_MODES = ("auto", "crop", "squash")


@dataclass(frozen=True)
class Preprocess:
    """The paper's transform: resize to ``resize`` then centre-crop ``crop``.

    ``mode="crop"`` (square images, as in the paper and MVTec AD) resizes
    the whole image to ``resize x resize`` and keeps the central
    ``crop x crop``. ``mode="squash"`` resizes straight to ``crop x crop``
    and keeps everything: for elongated images, where a centre crop would
    cut away the borders (where defects often sit).
    """

    resize: int = 256
    crop: int = 224
    mode: str = "crop"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self):
        if self.mode not in ("crop", "squash"):
            raise ValueError(f"mode must be 'crop' or 'squash', not {self.mode!r}")
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"need 0 < crop <= resize, got crop={self.crop}, resize={self.resize}")

    def _geometry(self, img: Image.Image, resample) -> Image.Image:
        if self.mode == "squash":
            return img.resize((self.crop, self.crop), resample)
        img = img.resize((self.resize, self.resize), resample)
        off = (self.resize - self.crop) // 2
        return img.crop((off, off, off + self.crop, off + self.crop))

    def display(self, image) -> np.ndarray:
        """The RGB pixels the model sees, ``uint8 [crop, crop, 3]`` (for overlays)."""
        return np.array(self._geometry(read_image(image), Image.BILINEAR))

    def __call__(self, image) -> torch.Tensor:
        """Image (path, PIL or array) -> normalised tensor ``[3, crop, crop]``."""
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        x = torch.from_numpy(self.display(image)).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std

    def mask(self, mask: np.ndarray, protocol: str = "nearest") -> np.ndarray:
        """Transform a bool mask with its image's geometry: ``bool [crop, crop]``.

        ``protocol`` says which resized pixels count as defect:

        * ``"nearest"``: each pixel takes its nearest mask pixel (the usual
          choice, and anomalib's);
        * ``"strict"``: only pixels wholly inside the defect. The PatchCore
          reference code resizes masks bilinearly and casts them to int, so
          defect borders count as normal; use this to compare with its figures.
        """
        check_mask_protocol(protocol)
        img = Image.fromarray(mask.astype(np.uint8) * 255)
        if protocol == "strict":
            return np.asarray(self._geometry(img, Image.BILINEAR)) == 255
        return np.asarray(self._geometry(img, Image.NEAREST)) > 127

    @staticmethod
    def choose_mode(sizes: list[tuple[int, int]], tolerance: float = 0.05) -> str:
        """``"crop"`` when every image is square (within ``tolerance``), else ``"squash"``."""
        square = all(abs(w / h - 1.0) <= tolerance for w, h in sizes)
        return "crop" if square else "squash"


def image_size(path_or_image) -> tuple[int, int]:
    """(width, height) without decoding the pixels."""
    if isinstance(path_or_image, Image.Image):
        return path_or_image.size
    if isinstance(path_or_image, np.ndarray):
        return path_or_image.shape[1], path_or_image.shape[0]
    with _open_header(path_or_image) as img:
        w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(str(path_or_image), w * h, (w, h))
    return w, h


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
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
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
