"""Reading images safely: any file a user names may be huge, truncated or
not an image at all, so every reader checks the header before decoding.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["DataError", "IMAGE_EXTENSIONS", "ImageTooLargeError", "MAX_PIXELS", "image_size", "read_image",
           "read_mask"]


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# Larger images are refused before decoding (a decompression bomb would
# otherwise fill the memory). 1 MVTec image is ~1 Mpx; 80 Mpx is generous.
MAX_PIXELS = int(os.environ.get("PATCHCORE_MAX_PIXELS", 80_000_000))


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
