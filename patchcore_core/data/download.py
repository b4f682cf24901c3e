"""Fetch a file over HTTP, check it, unpack it safely: nothing here knows about data sets.

* :func:`fetch` downloads to ``<name>.part`` and renames it when complete; an
  interrupted download resumes where it stopped (an HTTP ``Range`` request),
  within one call (a dropped connection is retried) or in a later one (the
  ``.part`` file is kept).
* :func:`verify` compares a file with its published checksum and deletes it
  when they differ, so a damaged download is never used or resumed.
* :func:`check_archive` reads an archive to its end without writing anything:
  the only check left when no checksum is known.
* :func:`safe_extract` unpacks a tar or zip archive, refusing any member that
  would land outside the target folder (``../``, absolute paths, links that
  point out, devices).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

__all__ = ["DownloadError", "ChecksumError", "fetch", "file_digest", "verify", "check_archive",
           "safe_extract", "ARCHIVE_SUFFIXES"]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".zip")
_CHUNK = 1 << 20


class DownloadError(ValueError):
    """A download, checksum or unpacking problem; the message names the file or address."""


class ChecksumError(DownloadError):
    """A file whose checksum is not the published one (the file has been deleted)."""


def _quiet(_msg: str) -> None:
    pass


def _total_from(resp, have: int) -> int | None:
    """The full file size from a response: ``Content-Range: bytes a-b/TOTAL`` or the length."""
    found = re.match(r"bytes\s+(\d+)-\d+/(\d+)", resp.headers.get("Content-Range", ""))
    if found:
        return int(found.group(2))
    length = resp.headers.get("Content-Length")
    return have + int(length) if length and length.isdigit() else None


def fetch(url: str, dest, *, progress: bool = True, retries: int = 3, timeout: float = 60.0,
          backoff: float = 2.0, note: Callable[[str], None] = _quiet) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    Bytes go to ``dest + ".part"`` first; ``dest`` appears only once the
    server's announced size has arrived. A connection that drops is resumed
    from the bytes already kept (up to ``retries`` times, ``backoff`` seconds
    apart, doubling); a server that ignores ``Range`` is read from the start.
    """
    from tqdm.auto import tqdm

    from patchcore_core._version import __version__

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": f"patchcore-core/{__version__}"}
        if have:
            headers["Range"] = f"bytes={have}-"
        total = None
        try:
            with urlopen(Request(url, headers=headers), timeout=timeout) as resp:
                if have and resp.status != 206:  # the server sends the whole file again
                    note(f"{url}: the server does not resume downloads; starting again from byte 0")
                    have = 0
                total = _total_from(resp, have)
                with open(part, "ab" if have else "wb") as f, \
                        tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=dest.name, disable=not progress) as bar:
                    while block := resp.read(_CHUNK):
                        f.write(block)
                        bar.update(len(block))
            size = part.stat().st_size
            if total is not None and size < total:
                # the connection closed before the announced end: keep the bytes, resume
                raise http.client.IncompleteRead(b"", total - size)
            os.replace(part, dest)
            return dest
        except HTTPError as exc:
            if exc.code == 416 and have:  # asked past the end: what we kept is the whole file, or junk
                sent = exc.headers.get("Content-Range", "") if exc.headers else ""
                found = re.match(r"bytes\s+\*/(\d+)", sent)
                if found and int(found.group(1)) == have:
                    os.replace(part, dest)
                    return dest
                part.unlink(missing_ok=True)
                note(f"{part}: does not match the file on the server; starting again")
                continue
            raise DownloadError(f"{url}: the server answered HTTP {exc.code} ({exc.reason})") from None
        except (URLError, OSError, http.client.HTTPException) as exc:
            kept = part.stat().st_size if part.exists() else 0
            reason = getattr(exc, "reason", None) or exc.__class__.__name__
            if attempt == retries:
                raise DownloadError(
                    f"{url}: the download was interrupted ({reason}); {kept:,} bytes are kept in {part}: "
                    "run the same command again to resume") from None
            note(f"{dest.name}: connection lost ({reason}) after {kept:,}"
                 f"{f' of {total:,}' if total else ''} bytes; resuming (retry {attempt + 1} of {retries})")
            time.sleep(backoff * 2 ** attempt)
    raise DownloadError(f"{url}: could not be downloaded after {retries} retries")


def file_digest(path, algorithm: str = "sha256", progress: bool = False) -> str:
    """Hex digest of a file, read in chunks (archives are gigabytes)."""
    from tqdm.auto import tqdm

    path = Path(path)
    h = hashlib.new(algorithm)
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                     unit_divisor=1024, desc=f"{algorithm} {path.name}",
                                     disable=not progress) as bar:
        while block := f.read(_CHUNK):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def verify(path, checksum: str, *, delete: bool = True, progress: bool = False) -> None:
    """Check ``path`` against ``checksum`` (``"sha256:HEX"`` or ``"md5:HEX"``).

    On a mismatch the file is deleted (unless ``delete=False``: a file the
    user gave, not one we downloaded) and :class:`ChecksumError` says so.
    """
    path = Path(path)
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in ("sha256", "md5") or not re.fullmatch(r"[0-9a-fA-F]+", expected):
        raise DownloadError(f"checksum {checksum!r}: expected 'sha256:HEX' or 'md5:HEX'")
    got = file_digest(path, algorithm, progress=progress)
    if got.lower() != expected.lower():
        if delete:
            path.unlink(missing_ok=True)
        what = "it has been deleted; run the command again to download it afresh" if delete else \
            "it was left as it is"
        raise ChecksumError(f"{path.name}: checksum mismatch ({algorithm} expected {expected.lower()}, "
                            f"got {got}): the file is damaged or not the published one; {what}")


def _archive_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if any(name.endswith(s) for s in ARCHIVE_SUFFIXES):
        return "tar"
    raise DownloadError(f"{path}: not an archive this command unpacks ({', '.join(ARCHIVE_SUFFIXES)})")


def check_archive(path, progress: bool = False) -> int:
    """Read the whole archive without writing anything; the number of members.

    A truncated or corrupt archive raises :class:`DownloadError` here, before
    a single file is unpacked (zip members are checked against their CRC).
    """
    path = Path(path)
    try:
        if _archive_kind(path) == "zip":
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
                if bad is not None:
                    raise DownloadError(f"{path.name}: member {bad!r} is corrupt (CRC mismatch)")
                return len(z.infolist())
        with tarfile.open(path) as t:  # reading every header reads the whole stream
            return len(t.getmembers())
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DownloadError(f"{path.name}: the archive is damaged or incomplete ({exc}); delete it and "
                            "download it again") from None


def _inside(root: Path, name: str) -> Path:
    """``root / name`` if it stays inside ``root``; a :class:`DownloadError` otherwise."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in pure.parts:
        raise DownloadError(f"refused to unpack {name!r}: the path leaves the target folder")
    target = (root / pure).resolve()
    if target != root and root not in target.parents:
        raise DownloadError(f"refused to unpack {name!r}: the path leaves the target folder")
    return target


def _check_tar_member(root: Path, m: tarfile.TarInfo) -> None:
    where = _inside(root, m.name)
    if m.issym() or m.islnk():
        # a symlink's target is relative to its folder; a hard link's to the archive root
        base = where.parent if m.issym() else root
        link = PurePosixPath(m.linkname)
        target = (base / link).resolve()
        if link.is_absolute() or (target != root and root not in target.parents):
            raise DownloadError(f"refused to unpack {m.name!r}: a link to {m.linkname!r}, outside the "
                                "target folder")
    elif not (m.isfile() or m.isdir()):
        raise DownloadError(f"refused to unpack {m.name!r}: not a plain file or folder (a device or pipe)")


def safe_extract(archive, dest, progress: bool = True) -> list[Path]:
    """Unpack ``archive`` (tar, tar.gz/xz/bz2 or zip) into ``dest``; the paths written.

    Every member is checked before anything is written: a name that leaves
    ``dest`` (``../x``, ``/etc/x``), a link pointing outside it, or a device
    refuses the whole archive.
    """
    from tqdm.auto import tqdm

    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written = []
    try:
        if _archive_kind(archive) == "zip":
            with zipfile.ZipFile(archive) as z:
                infos = z.infolist()
                for info in infos:
                    _inside(root, info.filename)
                    if stat.S_ISLNK(info.external_attr >> 16):  # zip symlinks (Unix mode bits)
                        raise DownloadError(f"refused to unpack {info.filename!r}: a symbolic link")
                for info in tqdm(infos, desc=f"unpack {archive.name}", unit="file", disable=not progress):
                    written.append(Path(z.extract(info, root)))
            return written
        with tarfile.open(archive) as t:
            members = t.getmembers()
            for m in members:
                _check_tar_member(root, m)
            for m in tqdm(members, desc=f"unpack {archive.name}", unit="file", disable=not progress):
                # filter="data" (Python >= 3.11.4) repeats the checks above and drops modes we do
                # not want (setuid, devices); older Pythons rely on the checks above alone
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                t.extract(m, root, **kwargs)
                written.append(root / m.name)
        return written
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DownloadError(f"{archive.name}: the archive is damaged ({exc})") from None
