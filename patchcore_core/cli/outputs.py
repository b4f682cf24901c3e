"""Check where results will be written before the work that makes them.

A fit takes minutes; finding out afterwards that ``--out`` names a folder,
sits under a file, or lies on a file system that takes no files (``/proc``,
a read-only mount: ``os.access`` says yes to root there) loses them. So the
checks try it: a file is created and removed again in the folder that will
hold the result. Nothing else is created until the result is written
(through :func:`~.atomic.atomic_path`). :func:`refuse_overwriting` keeps
results off the inputs, and :func:`distinct_names` gives files that would
share a name (``good/000.png``, ``hole/000.png``) names of their own;
:func:`write_json` writes a result file whole, in JSON that strict parsers read.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections import Counter
from pathlib import Path

from patchcore_core.util.atomic import atomic_path
from patchcore_core.util.numbers import json_safe

__all__ = ["OutputPathError", "check_output_file", "check_output_folder", "refuse_overwriting",
           "distinct_names", "write_json"]


class OutputPathError(ValueError):
    """An output path that cannot be written: the message says why."""


def _try_writing_in(folder: Path, path: Path, label: str) -> None:
    """Create and remove a file in ``folder``: the only answer that holds for root too."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".patchcore-write-test-", dir=folder)
    except OSError as exc:
        why = "no permission to write in" if isinstance(exc, PermissionError) else "cannot create files in"
        raise OutputPathError(f"{label} {path}: {why} {folder} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def _check_parent(path: Path, label: str) -> None:
    """The nearest existing ancestor must be a folder this process can create files in."""
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link: mkdir would fail
            raise OutputPathError(f"{label} {path}: {parent} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{label} {path}: {parent} is a file, not a folder")
    _try_writing_in(parent, path, label)


def check_output_file(path, label: str = "output", suffix: str | None = None) -> Path:
    """``path`` as a file to be written: not a folder, in a folder that exists or can be made,
    ending in ``suffix`` when given. Raises :class:`OutputPathError`."""
    path = Path(path)
    if suffix and path.suffix != suffix:
        raise OutputPathError(f"{label} {path}: the file name must end in {suffix}")
    if path.is_dir():
        raise OutputPathError(f"{label} {path}: is a folder; give a file name")
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):  # /dev/stdout, a pipe: replaced, not written
        raise OutputPathError(f"{label} {path}: is not a regular file (a device, pipe or socket); "
                              "give a file name")
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
        _try_writing_in(path, path, label)
        return path
    _check_parent(path, label)
    return path


def refuse_overwriting(outputs: dict[str, list], inputs: list) -> None:
    """Raise :class:`OutputPathError` if a file about to be written is one of ``inputs``
    (the same file by any name: links, ``..``, another spelling) or another output.

    Args:
        outputs: per option (``"--json"``), the files it will write.
        inputs: the files read (images, the model).
    """
    read = {}
    for p in inputs:
        try:
            st = os.stat(p)
        except OSError:
            continue  # not there: the reader reports it, and nothing can overwrite it
        read.setdefault((st.st_dev, st.st_ino), p)
    written = {}
    for label, paths in outputs.items():
        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) in read:
                raise OutputPathError(f"{label} {p}: is the input {read[st.st_dev, st.st_ino]}, which "
                                      "would be overwritten; write the results somewhere else")
            key = os.path.normcase(os.path.realpath(p))
            if key in written:
                raise OutputPathError(f"{label} {p}: is also written by {written[key][0]} "
                                      f"({written[key][1]}); give another name")
            written[key] = (label, p)


def distinct_names(paths: list, suffix: str) -> list[str]:
    """A file name per path, ``<stem><suffix>``, different for each path (case ignored, for
    file systems that ignore it). Paths whose stems clash are named ``<folder>_<stem><suffix>``
    after their folder; any clash left gets ``_2``, ``_3``, ... in the order of ``paths``."""
    stems = [Path(p).stem for p in paths]
    shared = Counter(s.casefold() for s in stems)
    stems = [f"{Path(os.path.abspath(p)).parent.name}_{s}" if shared[s.casefold()] > 1 else s
             for p, s in zip(paths, stems)]
    names, used = [], set()
    for s in stems:
        name, n = f"{s}{suffix}", 2
        while name.casefold() in used:
            name, n = f"{s}_{n}{suffix}", n + 1
        used.add(name.casefold())
        names.append(name)
    return names


def write_json(path, data) -> None:
    """``data`` as JSON at ``path``, written whole or not at all (NaN and infinity as null)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False))
