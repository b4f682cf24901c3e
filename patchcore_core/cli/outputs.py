"""Check where results will be written before the work that makes them.

A fit takes minutes; finding out afterwards that ``--out`` names a folder,
or sits under a file, loses them. These checks only look: nothing is
created until the result is written (through :func:`~.atomic.atomic_path`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["OutputPathError", "check_output_file", "check_output_folder"]


class OutputPathError(ValueError):
    """An output path that cannot be written: the message says why."""


def _check_parent(path: Path, label: str) -> None:
    """The nearest existing ancestor must be a folder this process may write in."""
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link: mkdir would fail
            raise OutputPathError(f"{label} {path}: {parent} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{label} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{label} {path}: no permission to write in {parent}")


def check_output_file(path, label: str = "output", suffix: str | None = None) -> Path:
    """``path`` as a file to be written: not a folder, in a folder that exists or can be made,
    ending in ``suffix`` when given. Raises :class:`OutputPathError`."""
    path = Path(path)
    if suffix and path.suffix != suffix:
        raise OutputPathError(f"{label} {path}: the file name must end in {suffix}")
    if path.is_dir():
        raise OutputPathError(f"{label} {path}: is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{label} {path}: no permission to replace it")
    _check_parent(path, label)
    return path


def check_output_folder(path, label: str = "output folder") -> Path:
    """``path`` as a folder to write into: a folder already, or one that can be made."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputPathError(f"{label} {path}: is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(f"{label} {path}: no permission to write in it")
        return path
    _check_parent(path, label)
    return path
