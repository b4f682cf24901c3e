"""The paper's image transform: resize, centre-crop, normalise (and the same
geometry for ground-truth masks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..util.images import read_image

__all__ = ["CROP_MODES", "MASK_PROTOCOLS", "Preprocess", "check_mask_protocol"]


MASK_PROTOCOLS = ("nearest", "strict")  # how masks are resized for evaluation (Preprocess.mask)


def check_mask_protocol(protocol: str) -> None:
    if protocol not in MASK_PROTOCOLS:
        raise ValueError(f"mask protocol must be one of {', '.join(MASK_PROTOCOLS)}, not {protocol!r}")


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
