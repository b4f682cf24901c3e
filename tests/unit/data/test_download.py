"""``patchcore data download``: archives built here in the publishers' real layouts, served by a
local HTTP server on 127.0.0.1 (with Range support and a connection that can drop midway).
No test reaches the internet."""

import hashlib
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchcore_core.cli import data as data_command
from patchcore_core.cli.main import build_parser, main
from patchcore_core.data.download import ChecksumError, DownloadError, fetch, safe_extract
from patchcore_core.data.get import LicenceError, download_dataset, plan_archives
from patchcore_core.data.mvtec import MVTecCategory
from patchcore_core.data.registry import DATASETS, Archive, DatasetInfo
from patchcore_core.util.images import read_mask


# ---------------------------------------------------------------- the server
class _Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_once: set[str] = set()  # first GET of these sends half the body, then hangs up
        self.honour_range = True
        self.log: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.log.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                found = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if found and server.honour_range:
                    start = int(found.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if name in server.drop_once:
                    server.drop_once.discard(name)
                    body = body[: len(body) // 2]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def add(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.url}/{name}"


@pytest.fixture
def server():
    s = _Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    s.thread.join(timeout=5)


# ---------------------------------------------------------------- archives in the real layouts
def _image(seed: int, mode: str = "RGB", fmt: str = "PNG", size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size, size, 3) if mode == "RGB" else (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, fmt)
    return buf.getvalue()


def _mask(box, value: int = 255, fmt: str = "PNG", size: int = 40) -> bytes:
    arr = np.zeros((size, size), np.uint8)
    y0, y1, x0, x1 = box
    arr[y0:y1, x0:x1] = value
    buf = io.BytesIO()
    Image.fromarray(arr, "L").save(buf, fmt)
    return buf.getvalue()


def _tar(files: dict[str, bytes], mode: str = "w:xz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def mvtec_files(cat: str = "widget") -> dict[str, bytes]:
    """MVTec AD's per-category archive: ``<cat>/...`` plus the licence file."""
    files = {f"{cat}/license.txt": b"CC BY-NC-SA 4.0\n", f"{cat}/readme.txt": b"readme\n"}
    files |= {f"{cat}/train/good/{i:03d}.png": _image(i) for i in range(5)}
    files |= {f"{cat}/test/good/{i:03d}.png": _image(10 + i) for i in range(2)}
    files |= {f"{cat}/test/crack/{i:03d}.png": _image(20 + i) for i in range(2)}
    files |= {f"{cat}/ground_truth/crack/{i:03d}_mask.png": _mask((5, 15, 5, 15)) for i in range(2)}
    return files


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _info(archive: Archive, layout: str = "mvtec", categories=("widget",), name="toy") -> DatasetInfo:
    return DatasetInfo(name=name, title="Toy set", homepage="http://127.0.0.1/", layout=layout,
                       categories=tuple(categories), licence="CC BY-NC-SA 4.0",
                       licence_url="https://creativecommons.org/licenses/by-nc-sa/4.0/",
                       licence_summary="non-commercial", citation="A. Author, 2026.", archives=(archive,))


def _get(info, root, **kw):
    kw.setdefault("accept_licence", True)
    return download_dataset(info, root, progress=False, out=lambda s: None, note=lambda s: None, **kw)


# ---------------------------------------------------------------- the good path
def test_good_archive_ends_in_the_mvtec_layout(server, tmp_path):
    data = _tar(mvtec_files())
    info = _info(Archive("widget.tar.xz", server.add("widget.tar.xz", data), _sha(data)))
    target = _get(info, tmp_path)
    assert target == tmp_path / "toy"
    cat = MVTecCategory(target, "widget")
    assert len(cat.train) == 5 and len(cat.test) == 4 and cat.defects == ["crack"]
    assert all(t.mask_path is not None for t in cat.test if t.is_anomalous)
    assert (target / "license.txt").read_text().startswith("CC BY-NC-SA")  # the licence goes with the data
    assert '"widget"' in (target / "SOURCE.json").read_text()
    # the archive is deleted once unpacked, no staging folder is left
    assert not any((tmp_path / ".downloads").iterdir())
    assert [p.name for p in target.iterdir() if p.name.startswith(".")] == []
    # a second run finds the category and fetches nothing
    n = len(server.log)
    _get(info, tmp_path)
    assert len(server.log) == n


# ---------------------------------------------------------------- checksums and truncation
def test_wrong_checksum_deletes_the_file_and_says_so(server, tmp_path):
    data = _tar(mvtec_files())
    info = _info(Archive("widget.tar.xz", server.add("widget.tar.xz", data), "sha256:" + "0" * 64))
    with pytest.raises(ChecksumError, match="checksum mismatch.*deleted"):
        _get(info, tmp_path)
    assert list((tmp_path / ".downloads").iterdir()) == []  # neither the file nor a .part
    assert not (tmp_path / "toy" / "widget").exists()  # nothing unpacked


def test_truncated_archive_fails_its_checksum(server, tmp_path):
    data = _tar(mvtec_files())
    info = _info(Archive("widget.tar.xz", server.add("widget.tar.xz", data[: len(data) // 2]), _sha(data)))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        _get(info, tmp_path)
    assert not (tmp_path / "toy" / "widget").exists()


def test_truncated_archive_without_a_checksum_is_refused_before_unpacking(server, tmp_path):
    data = _tar(mvtec_files())
    info = _info(Archive("widget.tar.xz", server.add("widget.tar.xz", data[: len(data) * 2 // 3]), None))
    with pytest.raises(DownloadError, match="damaged or incomplete"):
        _get(info, tmp_path)
    assert not (tmp_path / "toy").exists() or list((tmp_path / "toy").rglob("*.png")) == []


# ---------------------------------------------------------------- resuming
def test_dropped_connection_is_resumed_in_the_same_call(server, tmp_path):
    data = bytes(range(256)) * 4000
    url = server.add("big.bin", data)
    server.drop_once.add("big.bin")
    notes = []
    out = fetch(url, tmp_path / "big.bin", progress=False, backoff=0, note=notes.append)
    assert out.read_bytes() == data
    assert server.log[0] == ("big.bin", None)
    # the second request asks only for what is missing
    assert server.log[1] == ("big.bin", f"bytes={len(data) // 2}-")
    assert any("resuming" in n for n in notes)


def test_interrupted_download_resumes_on_the_next_run(server, tmp_path):
    data = _tar(mvtec_files())
    url = server.add("widget.tar.xz", data)
    server.drop_once.add("widget.tar.xz")
    with pytest.raises(DownloadError, match="interrupted.*run the same command again to resume"):
        fetch(url, tmp_path / ".downloads" / "widget.tar.xz", progress=False, retries=0)
    part = tmp_path / ".downloads" / "widget.tar.xz.part"
    kept = part.stat().st_size
    assert 0 < kept < len(data)
    # the next run (the whole command) continues from the kept bytes and checks the result
    _get(_info(Archive("widget.tar.xz", url, _sha(data))), tmp_path)
    assert server.log[-1] == ("widget.tar.xz", f"bytes={kept}-")
    assert not part.exists()
    assert len(MVTecCategory(tmp_path / "toy", "widget").train) == 5


def test_a_server_that_ignores_range_is_read_from_the_start(server, tmp_path):
    data = bytes(range(256)) * 1000
    url = server.add("f.bin", data)
    (tmp_path / "f.bin.part").write_bytes(data[:1000])
    server.honour_range = False
    assert fetch(url, tmp_path / "f.bin", progress=False).read_bytes() == data


def test_missing_file_names_the_address(server, tmp_path):
    with pytest.raises(DownloadError, match=r"nothing\.tar.*HTTP 404"):
        fetch(f"{server.url}/nothing.tar", tmp_path / "nothing.tar", progress=False)


# ---------------------------------------------------------------- unsafe archives
@pytest.mark.parametrize("name", ["../evil.txt", "widget/../../evil.txt", "/tmp/evil-abs.txt"])
def test_members_that_leave_the_target_are_refused(tmp_path, name):
    archive = tmp_path / "bad.tar"
    archive.write_bytes(_tar({"widget/train/good/000.png": _image(0), name: b"x"}, mode="w"))
    with pytest.raises(DownloadError, match="leaves the target folder"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-abs.txt").exists()
    assert list((tmp_path / "out").rglob("*")) == []  # checked before anything is written


def test_links_pointing_outside_are_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        link = tarfile.TarInfo("widget/escape")
        link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
        t.addfile(link)
    (tmp_path / "link.tar").write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="link to '../../outside'"):
        safe_extract(tmp_path / "link.tar", tmp_path / "out", progress=False)


def test_zip_with_dotdot_member_is_refused(tmp_path):
    (tmp_path / "bad.zip").write_bytes(_zip({"a/ok.txt": b"1", "../evil.txt": b"x"}))
    with pytest.raises(DownloadError, match="leaves the target folder"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "out", progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_dotdot_archive_from_the_server_leaves_nothing(server, tmp_path):
    data = _tar(mvtec_files() | {"../../evil.txt": b"x"})
    info = _info(Archive("widget.tar.xz", server.add("widget.tar.xz", data), _sha(data)))
    with pytest.raises(DownloadError, match="leaves the target folder"):
        _get(info, tmp_path / "root")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "root" / "toy" / "widget").exists()


# ---------------------------------------------------------------- the publishers' layouts
def test_loco_region_masks_are_merged(server, tmp_path):
    c = "breakfast_box/"
    files = {c + f"train/good/{i:03d}.png": _image(i) for i in range(3)}
    files |= {c + "validation/good/000.png": _image(7), c + "test/good/000.png": _image(8),
              c + "test/logical_anomalies/000.png": _image(9),
              c + "test/structural_anomalies/000.png": _image(10),
              # two regions of one defect, LOCO-style ids instead of 255
              c + "ground_truth/logical_anomalies/000/000.png": _mask((0, 10, 0, 10), value=1),
              c + "ground_truth/logical_anomalies/000/001.png": _mask((20, 30, 20, 30), value=7),
              c + "ground_truth/structural_anomalies/000/000.png": _mask((5, 8, 5, 8), value=255),
              "license.txt": b"CC BY-NC-SA 4.0", "readme.txt": b"LOCO"}
    data = _tar(files)
    info = _info(Archive("loco.tar.xz", server.add("loco.tar.xz", data), _sha(data)), layout="mvtec_loco",
                 categories=["breakfast_box"])
    target = _get(info, tmp_path)
    gt = target / "breakfast_box" / "ground_truth" / "logical_anomalies"
    assert sorted(p.name for p in gt.iterdir()) == ["000_mask.png"]  # the region folder is gone
    arr = np.asarray(Image.open(gt / "000_mask.png"))
    assert set(np.unique(arr)) == {0, 255}
    assert arr[:10, :10].all() and arr[20:30, 20:30].all() and arr.sum() == 200 * 255
    cat = MVTecCategory(target, "breakfast_box")
    assert {t.defect for t in cat.test if t.mask_path} == {"logical_anomalies", "structural_anomalies"}
    assert (target / "breakfast_box" / "validation" / "good" / "000.png").is_file()


def test_visa_split_file_is_applied(server, tmp_path):
    c = "candle/Data/"
    files = {c + f"Images/Normal/{i:04d}.JPG": _image(i, fmt="JPEG") for i in range(6)}
    files |= {c + f"Images/Anomaly/{i:03d}.JPG": _image(50 + i, fmt="JPEG") for i in range(2)}
    files |= {c + f"Masks/Anomaly/{i:03d}.png": _mask((4, 12, 4, 12), value=1) for i in range(2)}
    files |= {"candle/image_anno.csv": b"image,label,mask\n", "LICENSE-DATASET": b"CC BY 4.0"}
    rows = ["object,split,label,image,mask"]
    rows += [f"candle,train,normal,candle/Data/Images/Normal/{i:04d}.JPG," for i in range(4)]
    rows += [f"candle,test,normal,candle/Data/Images/Normal/{i:04d}.JPG," for i in range(4, 6)]
    rows += [f"candle,test,anomaly,{c}Images/Anomaly/{i:03d}.JPG,{c}Masks/Anomaly/{i:03d}.png"
             for i in range(2)]
    files["split_csv/1cls.csv"] = ("\n".join(rows) + "\n").encode()
    data = _tar(files, mode="w")
    info = _info(Archive("VisA_20220922.tar", server.add("VisA_20220922.tar", data), _sha(data)),
                 layout="visa", categories=["candle"])
    target = _get(info, tmp_path)
    cat = MVTecCategory(target, "candle")
    assert [p.name for p in cat.train] == ["0000.JPG", "0001.JPG", "0002.JPG", "0003.JPG"]
    assert sorted((t.defect, t.path.name) for t in cat.test) == [
        ("bad", "000.JPG"), ("bad", "001.JPG"), ("good", "0004.JPG"), ("good", "0005.JPG")]
    mask = target / "candle" / "ground_truth" / "bad" / "000_mask.png"
    assert set(np.unique(np.asarray(Image.open(mask)))) == {0, 255}  # 0/1 in VisA -> 0/255
    assert read_mask(mask)[4:12, 4:12].all()
    assert (target / "LICENSE-DATASET").is_file()


def test_btad_ok_ko_and_bmp_masks_are_mapped(server, tmp_path):
    b = "BTech_Dataset_transformed/01/"
    files = {b + f"train/ok/{i:04d}.bmp": _image(i, fmt="BMP") for i in range(3)}
    files |= {b + "test/ok/0000.bmp": _image(9, fmt="BMP"), b + "test/ko/0000.bmp": _image(8, fmt="BMP"),
              b + "ground_truth/ko/0000.bmp": _mask((0, 6, 0, 6), fmt="BMP")}
    data = _zip(files)
    info = _info(Archive("btad.zip", server.add("btad.zip", data), _sha(data)), layout="btad",
                 categories=["01"])
    cat = MVTecCategory(_get(info, tmp_path), "01")
    assert len(cat.train) == 3
    assert sorted((t.defect, t.mask_path.name if t.mask_path else None) for t in cat.test) == [
        ("good", None), ("ko", "0000_mask.png")]


# ---------------------------------------------------------------- licence
def test_licence_must_be_accepted(server, tmp_path):
    data = _tar(mvtec_files())
    info = _info(Archive("widget.tar.xz", server.add("widget.tar.xz", data), _sha(data)))
    with pytest.raises(LicenceError, match="--accept-licence"):
        _get(info, tmp_path, accept_licence=False)  # no terminal to ask on
    with pytest.raises(LicenceError, match="not accepted"):
        _get(info, tmp_path, accept_licence=False, ask=lambda prompt: "n")
    assert server.log == []  # nothing was fetched
    prompts = []
    _get(info, tmp_path, accept_licence=False, ask=lambda p: prompts.append(p) or "yes")
    assert "CC BY-NC-SA 4.0" in prompts[0] and (tmp_path / "toy" / "widget").is_dir()


def test_cli_without_a_terminal_or_flag_exits_2(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a tty
    rc = main(["data", "download", "btad", "--root", str(tmp_path), "--mirror", server.url, "--quiet"])
    captured = capsys.readouterr()
    assert rc == 2 and "--accept-licence" in captured.err
    assert "CC BY-NC-SA 4.0" in captured.out and "Mishra" in captured.out  # licence and citation shown
    assert server.log == []


# ---------------------------------------------------------------- mirrors and the CLI
def test_cli_mirror_with_sha256sums(server, tmp_path, capsys):
    data = _tar(mvtec_files("grid"))
    server.add("grid.tar.xz", data)
    server.add("SHA256SUMS", f"{hashlib.sha256(data).hexdigest()}  grid.tar.xz\n".encode())
    # a teacher's own packing: its sums replace the published ones only when asked to, and aloud
    rc = main(["data", "download", "mvtec_ad", "--category", "grid", "--mirror", server.url + "/",
               "--trust-mirror-checksums", "--accept-licence", "--root", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "--trust-mirror-checksums: the mirror's SHA256SUMS replaces the published" in out
    assert "from the mirror's SHA256SUMS" in out and "grid: 5 train, 4 test" in out
    assert ("grid.tar.xz", None) in server.log
    assert len(MVTecCategory(tmp_path / "mvtec_ad", "grid").train) == 5


def test_mirror_without_sums_uses_the_published_checksum(server, tmp_path):
    server.add("grid.tar.xz", _tar(mvtec_files("grid")))  # not MVTec's real file
    with pytest.raises(ChecksumError, match="third-party list"):
        download_dataset("mvtec_ad", tmp_path, ["grid"], mirror=server.url, accept_licence=True,
                         progress=False, out=lambda s: None, note=lambda s: None)


def test_mpdd_from_a_local_folder(tmp_path, capsys):
    files = {f"MPDD/tubes/{k}": v for k, v in mvtec_files("x").items()}
    files = {k.replace("/x/", "/"): v for k, v in files.items()}
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "MPDD.zip").write_bytes(_zip(files))
    with pytest.raises(DownloadError, match="no direct download link.*OneDrive"):  # said before the licence
        download_dataset("mpdd", tmp_path / "data", ["tubes"], accept_licence=False, progress=False,
                         out=lambda s: None, note=lambda s: None)
    notes = []
    target = download_dataset("mpdd", tmp_path / "data", ["tubes"], mirror=str(folder), accept_licence=True,
                              progress=False, out=lambda s: None, note=notes.append)
    assert len(MVTecCategory(target, "tubes").train) == 5
    assert (folder / "MPDD.zip").is_file()  # the user's own file is not deleted
    assert any("no published checksum" in n and "sha256 is" in n for n in notes)


def test_unknown_category_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="no category 'bottel'.*bottle"):
        download_dataset("mvtec_ad", tmp_path, ["bottel"], accept_licence=True)


def test_plan_uses_per_category_archives_for_a_subset():
    info = DATASETS["mvtec_ad"]
    assert [a.filename for a, _ in plan_archives(info, ["grid", "pill"])] == ["grid.tar.xz", "pill.tar.xz"]
    assert [a.filename for a, _ in plan_archives(info, list(info.categories))] == [
        "mvtec_anomaly_detection.tar.xz"]
    assert "43421" in plan_archives(info, ["pill"])[0][0].url  # pill lives on another share
    loco = DATASETS["mvtec_loco"]
    assert [a.filename for a, _ in plan_archives(loco, ["pushpins"])] == [loco.archives[0].filename]


def test_every_dataset_has_licence_citation_and_a_source():
    for d in DATASETS.values():
        assert d.licence and d.licence_url.startswith("https://") and d.citation
        assert all(a.checksum is None or re.fullmatch(r"(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32})", a.checksum)
                   for a in d.archives)
        assert d.manual or all(a.url and a.url.startswith("https://") for a in d.archives)


def test_plain_data_command_still_writes_the_builtin_set():
    args = build_parser().parse_args(["data", "--out", "x"])
    assert args.func is data_command.run and args.data_action is None
    args = build_parser().parse_args(["data", "download", "visa", "--category", "pcb1", "pcb2"])
    assert args.data_action == "download" and args.category == ["pcb1", "pcb2"]
