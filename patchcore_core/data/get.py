"""``download_dataset``: licence, download, verify, unpack, convert, in that order.

The target is ``root/<data set>/<category>/...`` in the MVTec AD layout.
Archives are downloaded to ``root/.downloads/`` (kept there while
incomplete, so a later run resumes), unpacked into a staging folder beside
the target, converted there, and only then moved into place: an error at any
step leaves no half-made category behind.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import urlopen

from patchcore_core.util.atomic import atomic_path, move_into_place, scratch_dir

from .download import (
    DEFAULT_MAX_RATIO,
    DEFAULT_MAX_UNPACKED_BYTES,
    DownloadError,
    check_archive,
    fetch,
    file_digest,
    safe_extract,
    verify,
)
from .layouts import convert, find_dir
from .mvtec import MVTecCategory
from .registry import Archive, DatasetInfo, get_dataset_info

__all__ = ["LicenceError", "licence_text", "plan_archives", "download_dataset"]


class LicenceError(DownloadError):
    """The data set's licence was not accepted."""


def licence_text(info: DatasetInfo) -> str:
    return "\n".join([
        f"{info.title}: {info.homepage}",
        f"Licence: {info.licence} ({info.licence_url})",
        f"  {info.licence_summary}",
        f"Cite: {info.citation}",
    ])


def _accept(info: DatasetInfo, accepted: bool, ask, out) -> None:
    out(licence_text(info))
    if accepted:
        out("Licence accepted (--accept-licence).")
        return
    if ask is None:
        raise LicenceError(f"the licence of {info.name} ({info.licence}) must be accepted: add "
                           "--accept-licence (no terminal to ask on)")
    if ask(f"Accept the {info.licence} licence of {info.name}? [y/N] ").strip().lower() not in ("y", "yes"):
        raise LicenceError(f"the licence of {info.name} was not accepted; nothing was downloaded")


def plan_archives(info: DatasetInfo, categories: list[str]) -> list[tuple[Archive, list[str]]]:
    """Which archives to fetch for ``categories``: per-category archives when the
    publisher offers one for each (smaller, resumable one by one), and the whole
    data set's archive otherwise, or when every category is wanted."""
    per_cat = {a.categories[0]: a for a in info.archives if a.categories and len(a.categories) == 1}
    whole = [a for a in info.archives if a.categories is None]
    if categories != list(info.categories) and all(c in per_cat for c in categories):
        return [(per_cat[c], [c]) for c in categories]
    if whole:
        return [(whole[0], list(categories))]
    return [(per_cat[c], [c]) for c in categories]


def _mirror_sums(mirror: str) -> dict[str, str]:
    """``{filename: "sha256:HEX"}`` from the mirror's ``SHA256SUMS`` (``sha256sum`` output), if any.

    A teacher's mirror may serve files of its own (a subset, another packing):
    its SHA256SUMS says what they are, trusted only as :func:`_choose_checksum` says.
    """
    try:
        if _is_folder(mirror):
            path = Path(mirror).expanduser() / "SHA256SUMS"
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
        else:
            with urlopen(mirror.rstrip("/") + "/SHA256SUMS", timeout=30) as resp:
                text = resp.read(1 << 20).decode("utf-8", "replace")
    except HTTPError:
        return {}
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{mirror}: the mirror cannot be reached ({reason})") from None
    sums = {}
    for line in text.splitlines():
        m = re.match(r"^([0-9a-fA-F]{64})\s+\*?(.+?)\s*$", line)
        if m:
            sums[Path(m.group(2)).name] = f"sha256:{m.group(1).lower()}"
    return sums


def _is_folder(mirror: str) -> bool:
    """A local folder (a path or file:// address) rather than a server."""
    return not mirror.startswith(("http://", "https://"))


def _folder(mirror: str) -> Path:
    return Path(urlparse(mirror).path if mirror.startswith("file:") else mirror).expanduser()


def _choose_checksum(archive: Archive, sums: dict, trust_mirror: bool, out, note) -> tuple[str | None, str]:
    """The checksum to verify ``archive`` with, and where it comes from.

    The published sum wins: the mirror's SHA256SUMS comes from the same (often
    plain-http) server as the file, so it proves nothing about the file. It is
    used for files with no published sum, or for all files under
    ``--trust-mirror-checksums`` (a teacher's own packing), which is said aloud.
    """
    mirror_sum = sums.get(archive.filename)
    if mirror_sum and (trust_mirror or not archive.checksum):
        if archive.checksum and mirror_sum != archive.checksum:
            out(f"{archive.filename}: using the mirror's sum instead of the published one "
                "(--trust-mirror-checksums)")
        why = "--trust-mirror-checksums" if archive.checksum else "no published checksum"
        return mirror_sum, f"the mirror's SHA256SUMS, {why}"
    if mirror_sum and mirror_sum != archive.checksum:
        note(f"{archive.filename}: the mirror's SHA256SUMS lists another sum; the published one is checked "
             "(--trust-mirror-checksums would use the mirror's)")
    return archive.checksum, archive.checksum_source


def _obtain(info: DatasetInfo, archive: Archive, mirror: str | None, sums: dict, downloads: Path,
            progress: bool, out, note, trust_mirror: bool = False) -> tuple[Path, bool, str | None]:
    """The verified archive file, whether it is ours to delete (not a file of the user's), and
    the checksum it was verified with."""
    checksum, source = _choose_checksum(archive, sums, trust_mirror, out, note)
    if mirror and _is_folder(mirror):
        path, ours = _folder(mirror) / archive.filename, False
        if not path.is_file():
            raise DownloadError(f"{path}: no such file in the mirror folder (expected {archive.filename})")
        out(f"using {path}")
    else:
        url = f"{mirror.rstrip('/')}/{archive.filename}" if mirror else archive.url
        if url is None:
            raise DownloadError(f"{info.name} has no direct download link. {info.manual}")
        path, ours = downloads / archive.filename, True
        if not path.is_file():  # a complete download from an earlier run is reused after checking it
            out(f"downloading {url}" + (f" ({archive.size})" if archive.size else ""))
            fetch(url, path, progress=progress, note=note)
    if checksum:
        out(f"checking {archive.filename} ({checksum.split(':')[0]} from {source})")
        try:
            verify(path, checksum, delete=ours, progress=progress)
        except DownloadError as exc:
            hint = (" (that sum is from a third-party list: if the file came from the publisher, the list "
                    "may be wrong)" if "third-party" in source else "")
            if sums.get(archive.filename) not in (None, checksum):
                hint += (" (the mirror's SHA256SUMS lists another sum: if you trust the mirror's own "
                         "packing, --trust-mirror-checksums uses it)")
            raise type(exc)(f"{exc}{hint}") from None
    else:
        digest = file_digest(path, "sha256", progress=progress)
        note(f"{archive.filename}: no published checksum to compare with; its sha256 is {digest} "
             "(compare it with your source); checking that the archive reads to its end")
        check_archive(path, progress=progress)
    return path, ours, checksum


def _present(target: Path, cat: str) -> bool:
    return (target / cat / "train" / "good").is_dir()


def _keep_licence_files(unpacked: Path, target: Path) -> None:
    """The publisher's licence and readme files go with the data."""
    top = find_dir(unpacked, lambda p: any(re.match(r"(licen[cs]e|readme)", f.name, re.I)
                                           for f in p.iterdir() if f.is_file()), depth=2)
    for f in sorted(top.iterdir()) if top else []:
        if f.is_file() and re.match(r"(licen[cs]e|readme)", f.name, re.I):
            shutil.copyfile(f, target / f.name)


def _record(target: Path, info: DatasetInfo, done: dict) -> None:
    path = target / "SOURCE.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    record.update({"dataset": info.name, "title": info.title, "homepage": info.homepage,
                   "licence": info.licence, "licence_url": info.licence_url, "citation": info.citation})
    record.setdefault("categories", {}).update(done)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True))


def download_dataset(name: str | DatasetInfo, root, categories: list[str] | None = None, *,
                     mirror: str | None = None, accept_licence: bool = False,
                     ask: Callable[[str], str] | None = None, force: bool = False,
                     keep_archives: bool = False, trust_mirror_checksums: bool = False,
                     max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
                     max_ratio: float = DEFAULT_MAX_RATIO, progress: bool = True,
                     out: Callable[[str], None] = print, note: Callable[[str], None] = print) -> Path:
    """Download ``categories`` (default: all) of a data set into ``root/<name>`` (MVTec layout).

    ``mirror``: a base address (or a local folder) serving the publisher's
    file names, used instead of the publisher's; a ``SHA256SUMS`` file there
    checks files with no published sum (all files with ``trust_mirror_checksums``).
    Each archive may unpack to at most ``max_unpacked_bytes`` and ``max_ratio``
    times its own size. ``ask(prompt) -> answer`` asks for the
    licence when ``accept_licence`` is False (None: no one to ask, an error).
    Categories already present are skipped unless ``force``.
    """
    info = get_dataset_info(name) if isinstance(name, str) else name
    wanted = list(dict.fromkeys(categories or info.categories))
    unknown = [c for c in wanted if c not in info.categories]
    if unknown:
        raise ValueError(f"{info.name} has no category {', '.join(map(repr, unknown))}; "
                         f"its categories: {', '.join(info.categories)}")
    root = Path(root).expanduser()
    target = root / info.name
    todo = [c for c in wanted if force or not _present(target, c)]
    if not todo:
        out(f"{target}: {', '.join(wanted)} already there (--force to fetch again)")
        return target
    plan = plan_archives(info, todo)
    if not mirror and any(a.url is None for a, _ in plan):  # said before the licence is asked for
        raise DownloadError(f"{info.name} has no direct download link. {info.manual}")
    _accept(info, accept_licence, ask, out)
    sums = _mirror_sums(mirror) if mirror else {}
    if trust_mirror_checksums and sums:
        out("--trust-mirror-checksums: the mirror's SHA256SUMS replaces the published checksums, so whoever "
            "controls the mirror (or the network to it) chooses what is unpacked")
    done = {}
    for archive, cats in plan:
        path, ours, checksum = _obtain(info, archive, mirror, sums, root / ".downloads", progress, out, note,
                                       trust_mirror_checksums)
        with scratch_dir(target / f"staging-{archive.filename}") as staging:
            safe_extract(path, staging / "unpacked", progress=progress, max_bytes=max_unpacked_bytes,
                         max_ratio=max_ratio)
            _keep_licence_files(staging / "unpacked", target)  # before convert moves the folders away
            convert(info.layout, staging / "unpacked", staging / "out", cats, progress=progress)
            for cat in cats:
                MVTecCategory(staging / "out", cat)  # loadable, or a DataError naming what is wrong
            for cat in cats:
                move_into_place(staging / "out" / cat, target / cat)
                done[cat] = {"archive": archive.filename, "date": time.strftime("%Y-%m-%d"),
                             "checksum": checksum}
        if ours and not keep_archives:
            path.unlink(missing_ok=True)
    _record(target, info, done)
    for cat in wanted:
        c = MVTecCategory(target, cat)
        masks = sum(t.mask_path is not None for t in c.test)
        out(f"{cat}: {len(c.train)} train, {len(c.test)} test ({len(c.defects)} defect types, {masks} masks)")
    out(f"ready: {target}\n  patchcore evaluate --data {target} --category {wanted[0]}")
    return target
