"""Bring an unpacked data set to the MVTec AD layout that :mod:`patchcore_core.data` reads.

Each converter takes the folder an archive was unpacked into (``src``), the
output folder (``out``) and the categories wanted, and leaves
``out/<category>/{train/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png}``.
Files are moved, not copied (the data sets are gigabytes), so ``src`` is
consumed. Publishers wrap their folders differently (``BTech_Dataset_transformed/``,
``MPDD/`` or nothing), so each converter looks for its marker a few levels down.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from patchcore_core.util.images import IMAGE_EXTENSIONS, DataError, read_mask

__all__ = ["CONVERTERS", "convert", "find_dir"]


def find_dir(base: Path, found: Callable[[Path], bool], depth: int = 3) -> Path | None:
    """The shallowest folder under ``base`` (``base`` included) for which ``found`` holds."""
    level = [base]
    for _ in range(depth + 1):
        for d in level:
            if found(d):
                return d
        level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir() and not c.is_symlink()]
    return None


def _missing(what: str, cat: str, src: Path, present: list[str]) -> DataError:
    return DataError(f"the archive has no {what} for category {cat!r} (found: "
                     f"{', '.join(present) or 'nothing recognisable'}); is it the right file?")


def _write_mask(mask: np.ndarray, dest: Path) -> None:
    """A bool mask as an 8-bit PNG, 0 and 255 (what MVTec AD uses)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(dest)


def _move(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dest))


def _category_dirs(src: Path, categories: list[str], marker: str = "train") -> dict[str, Path]:
    """``{category: folder}`` for folders named after a category that hold ``marker``."""
    out = {}
    for cat in categories:
        d = find_dir(src, lambda p, c=cat: p.name == c and (p / marker).is_dir())
        if d is None:
            present = sorted(p.parent.name for p in src.rglob(marker) if p.is_dir())
            raise _missing(f"{cat}/{marker} folder", cat, src, present)
        out[cat] = d
    return out


def convert_mvtec(src: Path, out: Path, categories: list[str], progress: bool = True) -> None:
    """MVTec AD and MPDD: already in the layout; each category folder is moved as it is."""
    for cat, d in _category_dirs(src, categories).items():
        _move(d, out / cat)


def merge_region_masks(gt: Path, progress: bool = True) -> int:
    """MVTec LOCO: ``gt/<defect>/<stem>/000.png, 001.png ...`` (one mask per defect region)
    -> ``gt/<defect>/<stem>_mask.png``, their union. Returns the number of masks written.

    LOCO's region masks hold an id per region rather than 255, so any
    non-zero pixel counts as defect.
    """
    folders = sorted(p for p in gt.glob("*/*") if p.is_dir())
    for folder in tqdm(folders, desc=f"merge masks {gt.parent.name}", unit="image", disable=not progress):
        parts = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not parts:
            raise DataError(f"{folder}: a mask folder with no mask images")
        union = None
        for p in parts:
            m = read_mask(p)
            if union is not None and m.shape != union.shape:
                raise DataError(f"{p}: mask is {m.shape[1]}x{m.shape[0]}, its sibling masks "
                                f"{union.shape[1]}x{union.shape[0]}")
            union = m if union is None else union | m
        _write_mask(union, folder.parent / f"{folder.name}_mask.png")
        shutil.rmtree(folder)
    return len(folders)


def convert_loco(src: Path, out: Path, categories: list[str], progress: bool = True) -> None:
    for cat, d in _category_dirs(src, categories).items():
        _move(d, out / cat)
        if (out / cat / "ground_truth").is_dir():
            merge_region_masks(out / cat / "ground_truth", progress)


def _split_path(base: Path, rel: str, csv_path: Path) -> Path:
    """A path from the split file, refused when it leaves the data folder."""
    p = (base / rel).resolve()
    if base.resolve() not in p.parents:
        raise DataError(f"{csv_path}: path {rel!r} leaves the data folder")
    if not p.is_file():
        raise DataError(f"{csv_path}: lists {rel!r}, which the archive does not hold")
    return p


def convert_visa(src: Path, out: Path, categories: list[str], progress: bool = True) -> None:
    """VisA: ``<cat>/Data/Images/{Normal,Anomaly}`` + ``split_csv/1cls.csv`` (columns
    object, split, label, image, mask) -> train/good, test/good, test/bad and
    ground_truth/bad/<stem>_mask.png. VisA's masks hold small class ids; any
    non-zero pixel becomes 255.
    """
    base = find_dir(src, lambda p: (p / "split_csv" / "1cls.csv").is_file())
    if base is None:
        raise DataError("the archive has no split_csv/1cls.csv (VisA's split file); is it the right file?")
    split_file = base / "split_csv" / "1cls.csv"
    with open(split_file, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f)]
    need = {"object", "split", "label", "image", "mask"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"{split_file}: expected the columns {', '.join(sorted(need))}")
    wanted = [r for r in rows if r["object"] in categories]
    for cat in categories:
        if not any(r["object"] == cat for r in wanted):
            raise _missing("rows in split_csv/1cls.csv", cat, src, sorted({r["object"] for r in rows}))
    for r in tqdm(wanted, desc="arrange VisA", unit="image", disable=not progress):
        if r["split"] not in ("train", "test") or r["label"] not in ("normal", "anomaly"):
            raise DataError(f"{split_file}: unexpected split/label {r['split']!r}/{r['label']!r}")
        img = _split_path(base, r["image"], split_file)
        label = "good" if r["label"] == "normal" else "bad"
        if r["split"] == "train" and label == "bad":
            raise DataError(f"{split_file}: {r['image']} is an anomaly in the training split")
        _move(img, out / r["object"] / r["split"] / label / img.name)
        if label == "bad" and r["mask"]:
            mask = _split_path(base, r["mask"], split_file)
            _write_mask(read_mask(mask), out / r["object"] / "ground_truth" / "bad" / f"{img.stem}_mask.png")


def convert_btad(src: Path, out: Path, categories: list[str], progress: bool = True) -> None:
    """BTAD: ``<cat>/{train/ok, test/ok, test/ko, ground_truth/ko}`` -> good / ko, masks
    (PNG or BMP, named like their image) -> ``ground_truth/ko/<stem>_mask.png``."""
    for cat, d in _category_dirs(src, categories, marker="train").items():
        dest = out / cat
        for split in ("train", "test"):
            for label_dir in sorted(p for p in (d / split).iterdir() if p.is_dir()):
                label = "good" if label_dir.name == "ok" else label_dir.name
                _move(label_dir, dest / split / label)
        gt = d / "ground_truth"
        for defect_dir in sorted(p for p in gt.iterdir() if p.is_dir()) if gt.is_dir() else []:
            for m in sorted(p for p in defect_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
                _write_mask(read_mask(m), dest / "ground_truth" / defect_dir.name / f"{m.stem}_mask.png")


CONVERTERS = {"mvtec": convert_mvtec, "mvtec_loco": convert_loco, "visa": convert_visa, "btad": convert_btad}


def convert(layout: str, src: Path, out: Path, categories: list[str], progress: bool = True) -> None:
    if layout not in CONVERTERS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(CONVERTERS)}")
    CONVERTERS[layout](Path(src), Path(out), list(categories), progress)
