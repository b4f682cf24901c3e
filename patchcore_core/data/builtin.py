"""The built-in dataset: real textures that scikit-image ships, with
generated defects and exact masks, written once in the MVTec AD layout.

Everything else in the project (CLI, notebooks, demo, tests) reads it
through the same loader as real data, so nothing is special-cased.

Per category: 24 good training images (random 256 px crops of the
texture with mild brightness/contrast jitter and flips), 12 good test
images, and 4 test images per defect type: ``scratch``, ``stain``,
``hole`` and ``patch`` (a piece of another texture pasted in). 28 test
images are still few: image AUROC moves in steps of 1/192 (about 0.005).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata
from skimage.draw import disk, ellipse, line_aa, polygon

from patchcore_core.util.atomic import move_into_place, scratch_dir

__all__ = ["CATEGORIES", "DEFECTS", "builtin_root", "write_builtin_dataset", "default_cache_dir"]

FORMAT = "builtin-v2"  # v2: 12 good + 16 defective test images (v1: 6 + 8)
# (texture loader, RGB tint): the textures are greyscale; a tint makes the
# demo and notebooks easier to read without changing the structure.
CATEGORIES = {
    "brick": (skdata.brick, (1.00, 0.72, 0.58)),
    "grass": (skdata.grass, (0.70, 1.00, 0.60)),
    "gravel": (skdata.gravel, (0.95, 0.93, 0.88)),
}
DEFECTS = ("scratch", "stain", "hole", "patch")
SIZE = 256
N_TRAIN, N_TEST_GOOD, N_PER_DEFECT = 24, 12, 4
# Defects are kept inside the central 224 px, which the default
# resize-256/crop-224 transform keeps.
MARGIN = 40


def default_cache_dir() -> Path:
    env = os.environ.get("PATCHCORE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "patchcore_core"


def _crop(texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random SIZE crop with mild photometric jitter and flips (float, 0..1)."""
    h, w = texture.shape
    y, x = rng.integers(0, h - SIZE + 1), rng.integers(0, w - SIZE + 1)
    img = texture[y:y + SIZE, x:x + SIZE].astype(np.float32) / 255.0
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1, :]
    contrast, brightness = rng.uniform(0.92, 1.08), rng.uniform(-0.04, 0.04)
    img = (img - img.mean()) * contrast + img.mean() + brightness
    return np.clip(img, 0, 1).copy()


def _centre(rng) -> tuple[int, int]:
    return tuple(int(v) for v in rng.integers(MARGIN + 10, SIZE - MARGIN - 10, size=2))


def _scratch(img, rng, other):
    mask = np.zeros(img.shape, bool)
    cy, cx = _centre(rng)
    angle, length = rng.uniform(0, np.pi), rng.uniform(40, 70)
    dy, dx = np.sin(angle) * length / 2, np.cos(angle) * length / 2
    value = 0.05 if img.mean() > 0.4 else 0.95
    for off in (-1, 0, 1):  # 3 px wide
        rr, cc, _ = line_aa(int(cy - dy + off), int(cx - dx), int(cy + dy + off), int(cx + dx))
        keep = (rr >= 0) & (rr < SIZE) & (cc >= 0) & (cc < SIZE)
        mask[rr[keep], cc[keep]] = True
    img[mask] = value
    return img, mask


def _stain(img, rng, other):
    mask = np.zeros(img.shape, bool)
    cy, cx = _centre(rng)
    rr, cc = ellipse(cy, cx, rng.uniform(10, 18), rng.uniform(14, 24), shape=img.shape,
                     rotation=rng.uniform(0, np.pi))
    mask[rr, cc] = True
    img[mask] = img[mask] * 0.45 + 0.5  # a pale, washed-out blotch
    return img, mask


def _hole(img, rng, other):
    mask = np.zeros(img.shape, bool)
    cy, cx = _centre(rng)
    rr, cc = disk((cy, cx), rng.uniform(8, 14), shape=img.shape)
    mask[rr, cc] = True
    img[mask] = 0.02
    return img, mask


def _patch(img, rng, other):
    mask = np.zeros(img.shape, bool)
    cy, cx = _centre(rng)
    half = int(rng.integers(14, 22))
    corners = np.array([[-half, -half], [-half, half], [half, half], [half, -half]], float)
    theta = rng.uniform(0, np.pi / 2)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = corners @ rot.T + [cy, cx]
    rr, cc = polygon(pts[:, 0], pts[:, 1], shape=img.shape)
    mask[rr, cc] = True
    img[mask] = other[mask]  # the same place of another texture
    return img, mask


_MAKERS = {"scratch": _scratch, "stain": _stain, "hole": _hole, "patch": _patch}


def _save(img: np.ndarray, tint, path: Path):
    rgb = np.clip(img[..., None] * np.asarray(tint, np.float32), 0, 1)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)


def _write_category(root: Path, name: str, seed: int):
    load, tint = CATEGORIES[name]
    texture = load()
    others = [CATEGORIES[o][0]() for o in CATEGORIES if o != name]
    rng = np.random.default_rng([seed, list(CATEGORIES).index(name)])
    (root / name / "train" / "good").mkdir(parents=True)
    (root / name / "test" / "good").mkdir(parents=True)
    for i in range(N_TRAIN):
        _save(_crop(texture, rng), tint, root / name / "train" / "good" / f"{i:03d}.png")
    for i in range(N_TEST_GOOD):
        _save(_crop(texture, rng), tint, root / name / "test" / "good" / f"{i:03d}.png")
    for defect in DEFECTS:
        (root / name / "test" / defect).mkdir(parents=True)
        (root / name / "ground_truth" / defect).mkdir(parents=True)
        for i in range(N_PER_DEFECT):
            other = _crop(others[int(rng.integers(len(others)))], rng)
            img, mask = _MAKERS[defect](_crop(texture, rng), rng, other)
            _save(img, tint, root / name / "test" / defect / f"{i:03d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(
                root / name / "ground_truth" / defect / f"{i:03d}_mask.png")


def write_builtin_dataset(root, seed: int = 0, categories=None) -> Path:
    """Write the dataset under ``root`` (MVTec layout) and return ``root``.

    The folder appears whole or not at all: it is written to a temporary
    sibling and renamed into place.
    """
    root = Path(root)
    if (root / "dataset.json").is_file():
        return root
    with scratch_dir(root) as tmp:
        names = list(categories or CATEGORIES)
        for name in names:
            _write_category(tmp, name, seed)
        (tmp / "dataset.json").write_text(json.dumps(
            {"format": FORMAT, "seed": seed, "categories": names,
             "source": "scikit-image textures (brick, grass, gravel) with generated defects"}, indent=1))
        move_into_place(tmp, root, keep_existing=True)  # another process's finished copy is as good
    return root


def builtin_root(seed: int = 0, cache_dir=None) -> Path:
    """Path of the built-in dataset, writing it on first use (~2 s)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return write_builtin_dataset(cache / f"{FORMAT}-seed{seed}", seed=seed)
