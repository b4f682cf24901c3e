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
  would land outside the target folder (``../``, absolute paths), symbolic
  links, devices, and archives that unpack to more than a size limit.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from patchcore_core._version import __version__

__all__ = ["DownloadError", "ChecksumError", "UnpackLimitError", "fetch", "file_digest", "verify",
           "check_archive", "safe_extract", "ARCHIVE_SUFFIXES", "DEFAULT_MAX_UNPACKED_BYTES",
           "DEFAULT_MAX_RATIO"]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".zip")
_CHUNK = 1 << 20


class DownloadError(ValueError):
    """A download, checksum or unpacking problem; the message names the file or address."""


class ChecksumError(DownloadError):
    """A file whose checksum is not the published one (the file has been deleted)."""


class UnpackLimitError(DownloadError):
    """An archive that would unpack to more than the size limits allow (a "zip bomb")."""


# The largest public set, MVTec AD, unpacks to about 5 GB; its images (PNG, JPEG, BMP) hardly
# compress, so an honest archive unpacks to ~1-3 times its size while a bomb reaches 1000 times.
DEFAULT_MAX_UNPACKED_BYTES = 20 * 10**9
DEFAULT_MAX_RATIO = 50.0


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


# Links. Symbolic links are refused: the data sets are folders of images that need none, and a
# link checked where it is unpacked can still escape once layouts.py moves its folder up
# (``w1/w2/bottle/x -> ../../../../../y`` points inside the staging folder, and outside --root once
# ``bottle/`` sits at ROOT/NAME/bottle). A hard link names an earlier file of the archive: it is
# written as a copy of that file, a plain file that stays safe wherever it is moved.


def _plan_tar(root: Path, members: list[tarfile.TarInfo]) -> tuple[list, int]:
    """``[(member, path, hard-link source or None)]`` and the bytes they declare; refuses unsafe ones."""
    plan, files, declared = [], {}, 0
    for m in members:
        where = _inside(root, m.name)
        if m.issym():
            raise DownloadError(f"refused to unpack {m.name!r}: a symbolic link to {m.linkname!r}; "
                                "data set archives hold plain files and folders only")
        if m.islnk():
            source = files.get(PurePosixPath(m.linkname.replace("\\", "/")).as_posix())
            if source is None:
                raise DownloadError(f"refused to unpack {m.name!r}: a hard link to {m.linkname!r}, not "
                                    "a file earlier in the archive (outside the target folder?)")
            plan.append((m, where, source))
            declared += source.size
            files[PurePosixPath(m.name).as_posix()] = source
        elif m.isfile():
            plan.append((m, where, None))
            declared += m.size
            files[PurePosixPath(m.name).as_posix()] = m
        elif m.isdir():
            plan.append((m, where, None))
        else:
            raise DownloadError(f"refused to unpack {m.name!r}: not a plain file or folder "
                                "(a device or pipe)")
    return plan, declared


def _plan_zip(root: Path, infos: list[zipfile.ZipInfo]) -> tuple[list, int]:
    """``[(info, path)]`` and the bytes they declare; refuses unsafe ones."""
    plan = []
    for info in infos:
        where = _inside(root, info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):  # zip symlinks (Unix mode bits)
            raise DownloadError(f"refused to unpack {info.filename!r}: a symbolic link")
        plan.append((info, where))
    return plan, sum(info.file_size for info in infos)


class _Budget:
    """The bytes an archive may unpack to: the smaller of ``max_bytes`` and ``max_ratio`` times
    the archive's own size, checked against the declared sizes first, then while writing."""

    def __init__(self, archive: Path, max_bytes: int, max_ratio: float):
        self.archive, size = archive, archive.stat().st_size
        by_ratio = int(max_ratio * size)
        if by_ratio < max_bytes:
            self.limit, self.why = by_ratio, (f"{max_ratio:g} times the archive's own {_human(size)}; "
                                              "--max-ratio raises it")
        else:
            self.limit, self.why = max_bytes, "the unpacked-size limit; --max-unpacked-gb raises it"
        self.written = 0

    def refuse(self, what: str, outcome: str) -> UnpackLimitError:
        return UnpackLimitError(f"{self.archive.name}: {what}, more than {_human(self.limit)} ({self.why}, "
                                f"if you trust the archive); {outcome}")

    def check_declared(self, declared: int) -> None:
        if declared > self.limit:
            raise self.refuse(f"its members declare {_human(declared)}", "refused before unpacking")

    def copy(self, src, path: Path) -> None:
        """Write ``src`` to ``path``, stopping before the limit is passed (zip headers can lie)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as dst:
            while block := src.read(_CHUNK):
                if self.written + len(block) > self.limit:
                    raise self.refuse(f"unpacking it wrote more than its headers declare, at least "
                                      f"{_human(self.written + len(block))}",
                                      "stopped, and what was written is removed")
                dst.write(block)
                self.written += len(block)


def _human(n: float) -> str:
    """``"36.1 KB"``, ``"20 GB"``: sizes in the units the limits are given in."""
    if n < 1000:
        return f"{n:,.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.3g} {unit}" if n < 1000 else f"{n:,.0f} {unit}"


def safe_extract(archive, dest, progress: bool = True, *, max_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
                 max_ratio: float = DEFAULT_MAX_RATIO) -> list[Path]:
    """Unpack ``archive`` (tar, tar.gz/xz/bz2 or zip) into ``dest``; the files written.

    ``dest`` must be new or empty. Every member is checked before anything is
    written: a name that leaves ``dest`` (``../x``, ``/etc/x``), a symbolic
    link, a device, or members whose declared sizes add up to more than
    ``max_bytes`` or ``max_ratio`` times the archive's size refuse the whole
    archive. The bytes really written are counted too; on any error ``dest``
    is left as it was found (nothing half-written).
    """
    archive, dest = Path(archive), Path(dest)
    kind = _archive_kind(archive)
    if dest.exists() and any(dest.iterdir()):
        raise DownloadError(f"{dest}: not empty; archives are unpacked into a new or empty folder")
    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    budget = _Budget(archive, max_bytes, max_ratio)
    written = []
    # members are written by _Budget.copy rather than tarfile/zipfile's extract: only a writer of
    # our own can count the bytes as they are written and create nothing but files and folders
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as z:
                plan, declared = _plan_zip(root, z.infolist())
                budget.check_declared(declared)
                for info, where in tqdm(plan, desc=f"unpack {archive.name}", unit="file",
                                        disable=not progress):
                    if info.is_dir():
                        where.mkdir(parents=True, exist_ok=True)
                        continue
                    with z.open(info) as src:
                        budget.copy(src, where)
                    written.append(where)
            return written
        with tarfile.open(archive) as t:
            plan, declared = _plan_tar(root, t.getmembers())
            budget.check_declared(declared)
            copies = {}  # archive name -> where it was written, for hard links
            for m, where, source in tqdm(plan, desc=f"unpack {archive.name}", unit="file",
                                         disable=not progress):
                if m.isdir():
                    where.mkdir(parents=True, exist_ok=True)
                    continue
                with (open(copies[source.name], "rb") if source is not None else t.extractfile(m)) as src:
                    budget.copy(src, where)
                copies[m.name] = where
                written.append(where)
        return written
    except BaseException as exc:
        # nothing half-written: remove what this call made, then say why
        if made:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for child in list(dest.iterdir()):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        if isinstance(exc, (tarfile.TarError, zipfile.BadZipFile, EOFError)):
            raise DownloadError(f"{archive.name}: the archive is damaged ({exc}); nothing of it was "
                                "kept") from None
        raise
