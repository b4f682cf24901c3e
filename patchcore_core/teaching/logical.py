"""A built-in category of *logical* anomalies (notebooks 09 and 10).

Each image is an assembly: three parts (a copper disc, a steel-blue square
and a green bar) in a fixed order on a grey plate, placed with a few pixels
of jitter, like parts in a fixture. The anomalies break a rule of the
assembly, not the look of any part:

* ``missing``: one part is absent (the plate shows there, as it does
  between parts in every good image);
* ``swapped``: two parts trade places (each part looks as it always does);
* ``extra``: one part is replaced by a second copy of another part.

Every patch of such an image also occurs in good images, which is what
MVTec LOCO AD calls a logical anomaly (Bergmann et al., IJCV 2022). For
contrast, ``scratch`` is a structural defect on a part. The masks mark
where the assembly is wrong (for ``missing``: where the part should be).
Written once, in the MVTec AD layout, like the built-in textures
(:mod:`patchcore_core.builtin_data`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import disk, line_aa, polygon

from ..builtin_data import default_cache_dir

__all__ = ["CATEGORY", "DEFECTS", "logical_root", "write_logical_dataset", "render", "count_parts"]

FORMAT = "logical-v1"
CATEGORY = "assembly"
DEFECTS = ("extra", "missing", "scratch", "swapped")
SIZE = 256
N_TRAIN, N_TEST_GOOD, N_PER_DEFECT = 24, 8, 5
SLOTS = (56, 128, 200)         # x centre of each part (y = 128); parts stay inside the central 224 px
PARTS = ("disc", "square", "bar")
COLOURS = {"disc": (0.80, 0.45, 0.20), "square": (0.25, 0.45, 0.75), "bar": (0.30, 0.65, 0.35)}
JITTER = 3                     # pixels: a fixture holds the parts, not perfectly


def _plate(rng) -> np.ndarray:
    """A grey plate with fine noise and a faint gradient (float RGB, 0..1)."""
    noise = rng.normal(0, 0.025, (SIZE, SIZE))
    ramp = np.linspace(-0.03, 0.03, SIZE)[None, :] * rng.choice([-1, 1])
    grey = 0.62 + rng.uniform(-0.02, 0.02) + noise + ramp
    return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2)


def _part_mask(part: str, cy: int, cx: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    if part == "disc":
        mask[disk((cy, cx), 22, shape=mask.shape)] = True
    elif part == "square":
        mask[cy - 19:cy + 19, cx - 19:cx + 19] = True
    else:  # a vertical bar
        rr, cc = polygon([cy - 26, cy - 26, cy + 26, cy + 26], [cx - 9, cx + 9, cx + 9, cx - 9], mask.shape)
        mask[rr, cc] = True
    return mask


def render(layout, rng, scratch: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """An assembly image: ``layout[i]`` is the part in slot ``i`` (or None).
    Returns the image (uint8 RGB) and each slot's part mask (empty if None)."""
    img = _plate(rng)
    masks = []
    for slot, part in zip(SLOTS, layout):
        cy, cx = 128 + rng.integers(-JITTER, JITTER + 1), slot + rng.integers(-JITTER, JITTER + 1)
        if part is None:
            masks.append(_part_mask("disc", 128, slot) | _part_mask("bar", 128, slot))  # where a part belongs
            continue
        m = _part_mask(part, int(cy), int(cx))
        shade = rng.uniform(0.95, 1.05)
        img[m] = np.clip(np.asarray(COLOURS[part]) * shade + rng.normal(0, 0.015, (m.sum(), 3)), 0, 1)
        masks.append(m)
    if scratch:  # a dark scratch across one part: a structural defect, for contrast
        k = int(rng.integers(len(SLOTS)))
        rr, cc, _ = line_aa(128 - 14, SLOTS[k] - 14, 128 + 12, SLOTS[k] + 14)
        line = np.zeros((SIZE, SIZE), bool)
        for off in (-1, 0, 1):
            line[np.clip(rr + off, 0, SIZE - 1), cc] = True
        img[line] = 0.08
        masks = [np.zeros_like(line) for _ in SLOTS]
        masks[k] = line
    return (img * 255).round().astype(np.uint8), masks


def count_parts(image, min_pixels: int = 200) -> int:
    """A hand-written rule for this assembly: the number of coloured blobs
    (parts) in an image. The plate is grey, the parts are saturated, so a
    saturation threshold and connected components count them."""
    from scipy import ndimage

    img = np.asarray(image).astype(int)
    coloured = img.max(axis=2) - img.min(axis=2) > 60
    labels, n = ndimage.label(coloured)
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= min_pixels).sum())


def _anomaly(defect: str, rng) -> tuple[list, list[int]]:
    """A wrong layout and the slots that are wrong."""
    layout = list(PARTS)
    if defect == "missing":
        k = int(rng.integers(3))
        layout[k] = None
        return layout, [k]
    if defect == "swapped":
        a, b = (int(v) for v in rng.choice(3, 2, replace=False))
        layout[a], layout[b] = layout[b], layout[a]
        return layout, [a, b]
    if defect == "extra":  # one part replaced by a copy of another: a duplicate
        a, b = (int(v) for v in rng.choice(3, 2, replace=False))
        layout[a] = layout[b]
        return layout, [a]
    return layout, []  # scratch: the layout is right


def _write(root: Path, seed: int):
    rng = np.random.default_rng([seed, 7])
    base = root / CATEGORY
    for sub in ["train/good", "test/good"] + [f"test/{d}" for d in DEFECTS] + [f"ground_truth/{d}" for d in DEFECTS]:
        (base / sub).mkdir(parents=True)
    for folder, n in [("train/good", N_TRAIN), ("test/good", N_TEST_GOOD)]:
        for i in range(n):
            Image.fromarray(render(PARTS, rng)[0]).save(base / folder / f"{i:03d}.png")
    for defect in DEFECTS:
        for i in range(N_PER_DEFECT):
            layout, wrong = _anomaly(defect, rng)
            img, masks = render(layout, rng, scratch=defect == "scratch")
            mask = np.any([masks[k] for k in (wrong or range(3))], axis=0)
            Image.fromarray(img).save(base / "test" / defect / f"{i:03d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(base / "ground_truth" / defect / f"{i:03d}_mask.png")


def write_logical_dataset(root, seed: int = 0) -> Path:
    """Write the category under ``root`` (MVTec layout), whole or not at
    all (a temporary sibling renamed into place), and return ``root``."""
    root = Path(root)
    if (root / "dataset.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".tmp-", dir=root.parent))
    try:
        _write(tmp, seed)
        (tmp / "dataset.json").write_text(json.dumps(
            {"format": FORMAT, "seed": seed, "categories": [CATEGORY],
             "source": "generated assemblies with logical anomalies (patchcore_core.teaching.logical)"}, indent=1))
        try:
            tmp.rename(root)
        except OSError:  # another process wrote it first: use its copy
            if not (root / "dataset.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def logical_root(seed: int = 0, cache_dir=None) -> Path:
    """Path of the logical-anomaly dataset (category ``assembly``), written on first use."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return write_logical_dataset(cache / f"{FORMAT}-seed{seed}", seed=seed)
