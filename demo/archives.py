"""Unpacking a visitor's zip file, safely. No Gradio here.

A zip names its members by relative paths that it chooses itself: a member
called ``../../home/x`` or ``/etc/x``, or a symbolic link, would write (or
point) outside the folder it is unpacked into. And a few kilobytes of zip can
unpack to gigabytes. So every member is checked before anything is written,
the total unpacked size is bounded by the sizes the zip declares *and* by the
bytes actually written, and one bad member refuses the whole archive.

The zip's own path must already have passed :meth:`demo.uploads.UploadPolicy.check`.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .logic import UserError, downloads_folder

# A class's worth of images (MVTec's largest test set is ~170 images of ~1 MB).
MAX_UNPACKED_BYTES = 200 * 2**20
MAX_MEMBERS = 2000
_CHUNK = 2**20


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why ``info`` may not be unpacked (None: it may)."""
    name = info.filename
    if "\x00" in name or "\\" in name:
        return "has a character that is not allowed in a file name"
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        return "is an absolute path"
    if ".." in path.parts:
        return "leaves its folder (`..`)"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    return None


def extract_zip(path, max_bytes: int = MAX_UNPACKED_BYTES, max_members: int = MAX_MEMBERS,
                into=None, already: int = 0) -> Path:
    """Unpack the zip at ``path`` into a fresh folder of ``into`` (default:
    this process's downloads folder); that folder. Raises :class:`UserError`
    (naming the zip, not the server's folders) for a file that is not a zip, a
    member that leaves its folder, too many members or too many bytes.

    ``already``: bytes this request has unpacked from other zips; ``max_bytes``
    bounds them all together. On any failure nothing of this zip is left; the
    caller removes ``into`` (a request's temporary folder) whatever happens.
    """
    name = Path(path).name
    if not zipfile.is_zipfile(path):
        raise UserError(f"{name}: not a zip file.")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                raise UserError(f"{name}: {len(infos)} entries is more than this demo unpacks "
                                f"({max_members}).")
            for info in infos:
                problem = _member_problem(info)
                if problem:
                    raise UserError(f"{name}: refused, the entry {info.filename!r} {problem}.")
            declared = sum(i.file_size for i in infos)
            if already + declared > max_bytes:
                raise UserError(f"{name}: unpacks to {declared / 2**20:.0f} MB{_with_others(already)}, "
                                f"more than this demo's limit of {max_bytes / 2**20:.0f} MB.")
            dest = Path(tempfile.mkdtemp(prefix="zip-", dir=into or downloads_folder()))
            try:
                _write_members(zf, infos, dest, name, max_bytes, already)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
            return dest
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression
        raise UserError(f"{name}: could not unpack this zip ({type(exc).__name__}).") from None


def _with_others(already: int) -> str:
    return f" (with this request's other zips: {already / 2**20:.0f} MB more)" if already else ""


def unpacked_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (what a zip unpacked to)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


def _write_members(zf: zipfile.ZipFile, infos, dest: Path, name: str, max_bytes: int,
                   already: int = 0) -> None:
    written = already
    root = os.path.realpath(dest)
    for info in infos:
        target = os.path.realpath(os.path.join(root, info.filename))
        if os.path.commonpath([target, root]) != root:  # belt and braces after _member_problem
            raise UserError(f"{name}: refused, the entry {info.filename!r} leaves its folder.")
        if info.is_dir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            # the declared sizes were checked; a zip that lies about them stops here
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise UserError(f"{name}: unpacks to more than this demo's limit of "
                                    f"{max_bytes / 2**20:.0f} MB{_with_others(already)}.")
                out.write(chunk)


def images_in(folder: Path) -> list[Path]:
    """Image files under ``folder`` (any depth), sorted; macOS's ``__MACOSX``
    copies and hidden files left out."""
    from patchcore_core.util.images import IMAGE_EXTENSIONS

    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith((".", "__MACOSX")) for part in p.relative_to(folder).parts))
