"""Write a file or a folder so that readers see the old one or the new one, never half of one."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """This process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as f:  # Linux: no window where the umask is altered
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to.

    When the ``with`` block ends normally, the temporary file replaces
    ``path`` in one rename (atomic on the same file system); when it raises,
    the temporary file is removed and ``path`` is left as it was::

        with atomic_path("model.safetensors") as tmp:
            save_file(tensors, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hidden, unique name in the same folder: same file system, no clash between writers.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        # Some writers (safetensors) create files 0600; the result gets the mode a plain
        # open() would give it (0666 less the umask), or keeps the one it had.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def scratch_dir(beside: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder next to ``beside`` (same file system, so that
    :func:`move_into_place` is one rename); it is removed when the block ends,
    whatever happens, with anything still in it."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{beside.name}.tmp-", dir=beside.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def move_into_place(folder: str | os.PathLike, path: str | os.PathLike, keep_existing: bool = False) -> Path:
    """Rename a finished ``folder`` (from :func:`scratch_dir`) to ``path``. A folder already at
    ``path`` is replaced, or, with ``keep_existing``, kept (another writer finished first)."""
    folder, path = Path(folder), Path(path)
    if path.exists():
        if keep_existing:
            return path
        shutil.rmtree(path)
    try:
        folder.rename(path)
    except OSError:  # another writer won the race in between
        if not (keep_existing and path.exists()):
            raise
    return path
