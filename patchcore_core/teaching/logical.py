"""Built-in categories of *logical* anomalies (notebooks 09 and 10).

Three parts (a copper disc, a steel-blue square and a green bar) on a grey
plate, written once in the MVTec AD layout like the built-in textures
(:mod:`patchcore_core.data.builtin`). Two categories:

* ``assembly``: the parts in a fixture, always in that order, within a few
  pixels. Anomalies: ``missing`` (a slot left empty: bare plate, as between
  the parts of every good image), ``swapped`` (two parts trade places),
  ``extra`` (a part replaced by a copy of another). The masks mark the
  wrong slots.
* ``kit``: one of each part, anywhere on the plate, in any order.
  Anomalies: ``missing`` (two parts; no mask, since nothing marks where
  the absent part would be) and ``extra`` (a fourth part, a second copy
  of one; both copies are marked).

In both, every part looks as it always does: what is wrong is a rule of
the whole image, which MVTec LOCO AD calls a logical anomaly (Bergmann et
al., IJCV 2022). For contrast, ``scratch`` is a structural defect on a part.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import disk, line_aa, polygon

from patchcore_core.data.builtin import default_cache_dir

__all__ = ["CATEGORY", "CATEGORIES", "DEFECTS", "logical_root", "write_logical_dataset", "render",
           "count_parts"]

FORMAT = "logical-v2"  # v2: the kit category
CATEGORY = "assembly"
# assembly: the parts in a fixture, in a fixed order; kit: one of each part, anywhere.
CATEGORIES = {"assembly": ("extra", "missing", "scratch", "swapped"), "kit": ("extra", "missing", "scratch")}
DEFECTS = CATEGORIES[CATEGORY]
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


def render(placements, rng, scratch: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """An image of parts on the plate: ``placements`` is a list of
    ``(part, y, x)`` centres (``part`` None: nothing there). Returns the
    image (uint8 RGB) and each placement's mask (for None: where a part
    would be)."""
    img = _plate(rng)
    masks = []
    for part, cy, cx in placements:
        if part is None:
            masks.append(_part_mask("disc", cy, cx) | _part_mask("bar", cy, cx))
            continue
        m = _part_mask(part, int(cy), int(cx))
        shade = rng.uniform(0.95, 1.05)
        img[m] = np.clip(np.asarray(COLOURS[part]) * shade + rng.normal(0, 0.015, (m.sum(), 3)), 0, 1)
        masks.append(m)
    if scratch:  # a dark scratch across one part: a structural defect, for contrast
        k = int(rng.choice([i for i, p in enumerate(placements) if p[0] is not None]))
        _, cy, cx = placements[k]
        rr, cc, _ = line_aa(int(cy) - 14, int(cx) - 14, int(cy) + 12, int(cx) + 14)
        line = np.zeros((SIZE, SIZE), bool)
        for off in (-1, 0, 1):
            line[np.clip(rr + off, 0, SIZE - 1), cc] = True
        img[line] = 0.08
        masks = [np.zeros_like(line) for _ in placements]
        masks[k] = line
    return (img * 255).round().astype(np.uint8), masks


def _in_fixture(layout, rng) -> list:
    """The assembly: slot ``i`` holds ``layout[i]``, within ``JITTER`` pixels."""
    def jitter():
        return int(rng.integers(-JITTER, JITTER + 1))

    return [(part, 128 + jitter(), slot + jitter()) for slot, part in zip(SLOTS, layout)]


def _anywhere(parts, rng, min_gap: int = 64) -> list:
    """The kit: the parts at random places (centres ``min_gap`` apart), inside the central crop."""
    while True:
        centres = rng.integers(46, SIZE - 46, size=(len(parts), 2))
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2) + np.eye(len(parts)) * SIZE
        if gaps.min() >= min_gap:
            return [(p, int(y), int(x)) for p, (y, x) in zip(parts, centres)]


def count_parts(image, min_pixels: int = 200) -> int:
    """A hand-written rule for these images: the number of coloured blobs
    (parts). The plate is grey, the parts are saturated, so a saturation
    threshold and connected components count them."""
    img = np.asarray(image).astype(int)
    coloured = img.max(axis=2) - img.min(axis=2) > 60
    labels, _ = ndimage.label(coloured)
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= min_pixels).sum())


def _anomaly(defect: str, rng) -> tuple[list, list[int]]:
    """A wrong assembly layout and the slots that are wrong."""
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


def _kit_anomaly(defect: str, rng) -> tuple[list, list[int]]:
    """A wrong kit (parts anywhere, one of each) and the parts that are wrong."""
    parts = list(PARTS)
    if defect == "missing":  # nothing marks where the absent part is: no mask
        parts.pop(int(rng.integers(3)))
        return parts, []
    if defect == "extra":   # a fourth part, a second copy of one: both copies are marked
        k = int(rng.integers(3))
        parts.append(parts[k])
        return parts, [k, 3]
    return parts, None      # scratch: the kit is right, the mask is the scratch


def _save(base: Path, defect: str, i: int, img, mask):
    Image.fromarray(img).save(base / "test" / defect / f"{i:03d}.png")
    if mask is not None:
        gt = base / "ground_truth" / defect
        gt.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"{i:03d}_mask.png")


def _write(root: Path, seed: int):
    rng = np.random.default_rng([seed, 7])
    for name, defects in CATEGORIES.items():
        base = root / name
        for sub in ["train/good", "test/good"] + [f"test/{d}" for d in defects]:
            (base / sub).mkdir(parents=True)
        good = (lambda: _in_fixture(PARTS, rng)) if name == "assembly" else (lambda: _anywhere(PARTS, rng))
        for folder, n in [("train/good", N_TRAIN), ("test/good", N_TEST_GOOD)]:
            for i in range(n):
                Image.fromarray(render(good(), rng)[0]).save(base / folder / f"{i:03d}.png")
        for defect in defects:
            for i in range(N_PER_DEFECT):
                if name == "assembly":
                    layout, wrong = _anomaly(defect, rng)
                    placements = _in_fixture(layout, rng)
                else:
                    parts, wrong = _kit_anomaly(defect, rng)
                    placements = _anywhere(parts, rng)
                img, masks = render(placements, rng, scratch=defect == "scratch")
                if defect == "scratch":
                    wrong = range(len(masks))
                mask = np.any([masks[k] for k in wrong], axis=0) if wrong else None
                _save(base, defect, i, img, mask)


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
            {"format": FORMAT, "seed": seed, "categories": list(CATEGORIES),
             "source": "generated assemblies with logical anomalies (teaching.logical)"}, indent=1))
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
    """Path of the logical-anomaly dataset (categories ``assembly`` and ``kit``), written on first use."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return write_logical_dataset(cache / f"{FORMAT}-seed{seed}", seed=seed)
