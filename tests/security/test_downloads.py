"""Security of ``patchcore data download``: links in archives, unpack-size limits ("zip bombs"),
and which checksum a mirror's file is checked against. Archives are built here and served from
a folder by a local HTTP server on 127.0.0.1; no test reaches the internet."""

import functools
import hashlib
import io
import os
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from patchcore_core.cli.main import main
from patchcore_core.data.download import ChecksumError, DownloadError, UnpackLimitError, safe_extract
from patchcore_core.data.get import download_dataset
from patchcore_core.data.mvtec import MVTecCategory
from patchcore_core.data.registry import Archive, DatasetInfo


# ---------------------------------------------------------------- helpers
class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """``(folder, url)``: files written to ``folder`` are served at ``url``."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _png(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _category(prefix: str) -> dict[str, bytes]:
    """One small category in the MVTec layout under ``prefix``."""
    files = {f"{prefix}train/good/{i:03d}.png": _png(i) for i in range(3)}
    return files | {f"{prefix}test/good/000.png": _png(10), f"{prefix}test/crack/000.png": _png(11)}


def _add(t: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))


def _tar(files: dict[str, bytes], links=(), mode="w:gz") -> bytes:
    """A tar of ``files`` plus ``links``: ``(name, target, tarfile.SYMTYPE or LNKTYPE)``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in files.items():
            _add(t, name, data)
        for name, target, kind in links:
            link = tarfile.TarInfo(name)
            link.type, link.linkname = kind, target
            t.addfile(link)
    return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _info(archive: Archive, name: str = "toy") -> DatasetInfo:
    return DatasetInfo(name=name, title="Toy set", homepage="http://127.0.0.1/", layout="mvtec",
                       categories=("widget",), licence="CC BY-NC-SA 4.0",
                       licence_url="https://creativecommons.org/licenses/by-nc-sa/4.0/",
                       licence_summary="non-commercial", citation="A. Author, 2026.", archives=(archive,))


def _get(info, root, **kw):
    return download_dataset(info, root, accept_licence=True, progress=False, out=lambda s: None,
                            note=lambda s: None, **kw)


def _links_under(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_symlink()]


# ---------------------------------------------------------------- links
def test_a_link_safe_where_unpacked_but_escaping_once_arranged_is_refused(served, tmp_path):
    """Threat: a relative symlink in a wrapped archive points outside --root once its category moves up."""
    folder, url = served
    secret = tmp_path / "secret.png"  # outside --root
    secret.write_bytes(_png(99))
    root = tmp_path / "root"
    # unpacked at root/toy/.staging-*/unpacked/w1/w2/widget/train/good/: five '..' stay inside;
    # arranged at root/toy/widget/train/good/: the same five reach tmp_path, outside root
    data = _tar(_category("w1/w2/widget/"),
                links=[("w1/w2/widget/train/good/999.png", "../../../../../secret.png", tarfile.SYMTYPE)])
    (folder / "widget.tar.gz").write_bytes(data)
    info = _info(Archive("widget.tar.gz", f"{url}/widget.tar.gz", "sha256:" + _sha(data)))
    with pytest.raises(DownloadError, match=r"999\.png.*symbolic link to '(\.\./){5}secret\.png'"):
        _get(info, root)
    assert _links_under(root) == []  # nothing escaping is left on disk, not even in staging
    assert not (root / "toy" / "widget").exists()


def test_a_hard_link_is_written_as_a_plain_copy(tmp_path):
    """Threat: a link in the archive leaves a link on disk, whose target a later move or write can change."""
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar({"w/train/good/000.png": _png(0)},
                             links=[("w/train/good/001.png", "w/train/good/000.png", tarfile.LNKTYPE)]))
    safe_extract(archive, tmp_path / "out", progress=False)
    copy = tmp_path / "out" / "w" / "train" / "good" / "001.png"
    assert copy.read_bytes() == _png(0)
    assert not copy.is_symlink() and os.stat(copy).st_nlink == 1  # a file of its own, not a second name


# ---------------------------------------------------------------- unpack size limits
def test_a_compression_bomb_is_refused_before_it_is_written(tmp_path):
    """Threat: a small archive unpacks to gigabytes and fills the disk (a "zip bomb")."""
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(_tar({"w/train/good/000.png": _png(0), "w/zeros.bin": bytes(20_000_000)}))
    assert archive.stat().st_size < 100_000  # 20 MB of zeros compress to a few KB
    with pytest.raises(UnpackLimitError, match=r"bomb\.tar\.gz: its members declare 20 MB.*--max-ratio"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_the_total_unpacked_size_is_limited(tmp_path):
    """Threat: an archive of honest ratio but enormous size fills the disk."""
    archive = tmp_path / "big.zip"
    archive.write_bytes(_zip({"w/noise.bin": np.random.default_rng(0).bytes(3_000_000)}))
    with pytest.raises(UnpackLimitError, match=r"big\.zip: .*3 MB, more than 1 MB.*--max-unpacked-gb"):
        safe_extract(archive, tmp_path / "out", progress=False, max_bytes=1_000_000)
    assert not (tmp_path / "out").exists()


def test_bytes_written_are_counted_when_the_headers_understate_them(tmp_path, monkeypatch):
    """Threat: zip headers that lie about member sizes get past a check of the declared sizes alone."""
    import patchcore_core.data.download as download

    real_plan = download._plan_zip
    monkeypatch.setattr(download, "_plan_zip", lambda root, infos: (real_plan(root, infos)[0], 0))
    archive = tmp_path / "liar.zip"
    archive.write_bytes(_zip({"w/a.txt": b"ok", "w/zeros.bin": bytes(20_000_000)}))
    said = r"liar\.zip: unpacking it wrote more than its headers declare.*--max-ratio"
    with pytest.raises(UnpackLimitError, match=said):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # the first member, and the part of the second, are gone


def test_a_zip_whose_sizes_lie_leaves_nothing_half_written(tmp_path):
    """Threat: an archive that fails midway leaves half-written files that later look like data."""
    data = bytearray(_zip({"w/a.txt": b"first", "w/b.txt": b"x" * 5000}))
    # the central directory says b.txt holds 10 bytes: zipfile stops there, then fails its CRC
    entry = data.rfind(b"PK\x01\x02")
    data[entry + 24:entry + 28] = (10).to_bytes(4, "little")
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match=r"liar\.zip: the archive is damaged"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_bomb_names_the_flag_and_the_flag_lets_a_trusted_archive_through(tmp_path, capsys):
    """Threat: a mirror serves a zip bomb for a data set with no published checksum (MPDD)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    files = _category("MPDD/tubes/") | {"MPDD/tubes/zeros.bin": bytes(20_000_000)}
    (folder / "MPDD.zip").write_bytes(_zip(files))
    args = ["data", "download", "mpdd", "--category", "tubes", "--mirror", str(folder), "--accept-licence",
            "--root", str(tmp_path / "data"), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "MPDD.zip" in err and "--max-ratio raises it" in err
    assert not (tmp_path / "data" / "mpdd" / "tubes").exists()
    assert [p.name for p in (tmp_path / "data" / "mpdd").iterdir()] == []  # no staging left
    assert main(args + ["--max-ratio", "10000"]) == 0
    assert len(MVTecCategory(tmp_path / "data" / "mpdd", "tubes").train) == 3


# ---------------------------------------------------------------- checksums
def test_a_mirrors_sha256sums_does_not_override_the_published_checksum(served, tmp_path):
    """Threat: whoever controls a (plain-http) mirror serves any archive with a matching SHA256SUMS."""
    folder, url = served
    data = _tar(_category("widget/"))  # not the published file
    (folder / "widget.tar.gz").write_bytes(data)
    (folder / "SHA256SUMS").write_text(f"{_sha(data)}  widget.tar.gz\n")
    published = Archive("widget.tar.gz", "https://publisher.invalid/widget.tar.gz", "sha256:" + "1" * 64)
    with pytest.raises(ChecksumError, match="checksum mismatch.*--trust-mirror-checksums"):
        _get(_info(published), tmp_path / "root", mirror=url)
    assert not (tmp_path / "root" / "toy" / "widget").exists()
    # asked for explicitly, and said aloud, the mirror's sum is used
    said = []
    download_dataset(_info(published), tmp_path / "root", mirror=url, trust_mirror_checksums=True,
                     accept_licence=True, progress=False, out=said.append, note=lambda s: None)
    assert any(s.startswith("--trust-mirror-checksums:") for s in said)
    assert (tmp_path / "root" / "toy" / "widget" / "train" / "good").is_dir()


def test_a_mirrors_sha256sums_still_checks_files_with_no_published_checksum(served, tmp_path):
    """Threat: a damaged or swapped file without a published checksum goes unchecked."""
    folder, url = served
    data = _tar(_category("widget/"))
    (folder / "widget.tar.gz").write_bytes(data)
    (folder / "SHA256SUMS").write_text(f"{'2' * 64}  widget.tar.gz\n")
    unpublished = Archive("widget.tar.gz", None, None, checksum_source="none published")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        _get(_info(unpublished), tmp_path / "root", mirror=url)
    (folder / "SHA256SUMS").write_text(f"{_sha(data)}  widget.tar.gz\n")
    _get(_info(unpublished), tmp_path / "root", mirror=url)
    assert (tmp_path / "root" / "toy" / "widget" / "train" / "good").is_dir()
