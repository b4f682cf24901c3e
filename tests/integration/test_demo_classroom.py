"""The demo for a classroom: zips unpacked safely, a labelled set read at any
threshold, batches; their functions and their endpoints (``/evaluate_set``,
``/set_threshold``, ``/batch``) through gradio_client."""

from __future__ import annotations

import csv
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo import batch, logic, thresholds
from demo.archives import extract_zip, images_in


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCORE_CACHE", str(tmp_path / "cache"))


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link
            zf.writestr(info, target)
    return path


def mvtec_zip(path: Path, brick, n_good=4, n_bad=4, train=0) -> Path:
    """A small MVTec-layout zip made of built-in brick images."""
    good = [t for t in brick.test if t.defect == "good"][:n_good]
    bad = [t for t in brick.test if t.defect != "good"][:n_bad]
    members = {f"mine/test/{t.defect}/{t.path.name}": t.path.read_bytes() for t in good + bad}
    members.update({f"mine/train/good/{p.name}": p.read_bytes() for p in brick.train[:train]})
    return make_zip(path, members)


# -------------------------------------------------------------------- zips
@pytest.mark.parametrize("member", ["../escape.png", "/etc/escape.png", "a/../../escape.png", "C:/escape.png",
                                    "a\\..\\..\\escape.png"])
def test_zip_members_that_leave_their_folder_are_refused(tmp_path, member):
    z = make_zip(tmp_path / "evil.zip", {"ok.png": b"x", member: b"y"})
    with pytest.raises(logic.UserError, match="evil.zip: refused") as info:
        extract_zip(z)
    assert str(tmp_path) not in str(info.value)
    assert not list(tmp_path.rglob("escape.png")) and not Path("/etc/escape.png").exists()


def test_zip_symlinks_sizes_and_non_zips_are_refused(tmp_path):
    with pytest.raises(logic.UserError, match="symbolic link"):
        extract_zip(make_zip(tmp_path / "link.zip", {"a.png": b"x"}, {"b.png": "/etc/passwd"}))
    big = make_zip(tmp_path / "big.zip", {"a.bin": b"\0" * 5000, "b.bin": b"\0" * 5000})
    with pytest.raises(logic.UserError, match="more than this demo's limit"):
        extract_zip(big, max_bytes=8000)
    with pytest.raises(logic.UserError, match="entries"):
        extract_zip(big, max_members=1)
    notzip = tmp_path / "photo.zip"
    notzip.write_bytes(b"not a zip at all")
    with pytest.raises(logic.UserError, match="photo.zip: not a zip file"):
        extract_zip(notzip)


def test_zip_that_lies_about_its_size_stops_at_the_limit(tmp_path):
    z = make_zip(tmp_path / "liar.zip", {"a.bin": b"\0" * 50_000})
    raw = bytearray(z.read_bytes())
    # declare 10 bytes in both headers; zipfile then reads more than it was told
    with zipfile.ZipFile(z) as zf:
        info = zf.infolist()[0]
    header = raw.find(b"PK\x03\x04")
    raw[header + 22:header + 26] = (10).to_bytes(4, "little")
    central = raw.find(b"PK\x01\x02")
    raw[central + 24:central + 28] = (10).to_bytes(4, "little")
    z.write_bytes(bytes(raw))
    assert info.file_size == 50_000
    with pytest.raises(logic.UserError, match="liar.zip"):
        extract_zip(z, max_bytes=20_000)


def test_a_good_zip_unpacks_into_a_fresh_folder(tmp_path, brick):
    z = mvtec_zip(tmp_path / "set.zip", brick, train=2)
    folder = extract_zip(z)
    try:
        assert folder.parent == logic.downloads_folder() and len(images_in(folder)) == 10
        items = thresholds.labelled_items(folder)
        assert len(items) == 8 and {d for _, d in items} >= {"good"} and len({d for _, d in items}) >= 2
    finally:
        shutil.rmtree(folder)


def test_a_set_without_test_folder_or_defects_is_explained(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(logic.UserError, match="No `test` folder"):
        thresholds.labelled_items(tmp_path / "a")
    (tmp_path / "b" / "test" / "good").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "b" / "test" / "good" / "x.png")
    with pytest.raises(logic.UserError, match="at least one defect folder"):
        thresholds.labelled_items(tmp_path / "b")


# -------------------------------------------------------------- thresholds
def synthetic_set(calibrated=2.5) -> thresholds.LabelledSet:
    defects = ["good"] * 4 + ["hole"] * 4
    scores = np.array([1.0, 2.0, 3.0, 4.0, 2.2, 5.0, 6.0, 7.0])
    overlays = [np.full((4, 4, 3), i, np.uint8) for i in range(8)]
    return thresholds.LabelledSet([f"{d}/{i}.png" for i, d in enumerate(defects)], defects, scores,
                                  calibrated, "synthetic", overlays)


def test_counts_precision_recall_f1_at_a_threshold():
    s = synthetic_set()
    st = thresholds.at_threshold(s, 2.5)
    # called anomalous: 3.0, 4.0 (good) and 5, 6, 7 (defective); 2.2 is a missed defect
    assert st["confusion"] == {"true_positive": 3, "false_positive": 2, "false_negative": 1,
                               "true_negative": 2}
    assert st["precision"] == pytest.approx(3 / 5) and st["recall"] == pytest.approx(3 / 4)
    assert st["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert st["misses"] == ["hole/4.png"] and st["false_alarms"] == ["good/2.png", "good/3.png"]
    assert st["image_auroc"] == pytest.approx(14 / 16)  # pairs (defective > good): 2 + 3 x 4
    gallery = thresholds.mistakes(s, 2.5)
    assert [c.split(":")[0] for _, c in gallery] == ["false alarm", "false alarm", "miss"]
    assert gallery[0][1].startswith("false alarm: good/3.png")  # the worst first
    # a higher threshold: fewer false alarms, never more recall
    hi = thresholds.at_threshold(s, 4.5)
    assert hi["confusion"]["false_positive"] == 0 and hi["recall"] <= st["recall"]
    lo, top = thresholds.slider_range(s)
    assert lo <= 1.0 and top >= 7.0 and thresholds.default_threshold(s) == 2.5


def test_figures_mark_the_operating_point_and_calibration():
    s = synthetic_set()
    st = thresholds.at_threshold(s, 4.5)
    roc = thresholds.roc_figure(s, 4.5)
    labels = [ln.get_label() for ln in roc.axes[0].get_lines()]
    assert "slider" in labels and "calibrated" in labels
    point = next(ln for ln in roc.axes[0].get_lines() if ln.get_label() == "slider")
    assert point.get_xdata()[0] == st["false_positive_rate"] and point.get_ydata()[0] == st["recall"]
    dist = thresholds.distribution_figure(s, 4.5)
    assert {ln.get_xdata()[0] for ln in dist.axes[0].get_lines()} == {4.5, 2.5}
    conf = thresholds.confusion_figure(st)
    assert "R 0.75" in conf.axes[0].get_title()
    uncal = synthetic_set(calibrated=None)
    assert thresholds.default_threshold(uncal) == pytest.approx(np.mean(thresholds.slider_range(uncal)))


def test_score_set_on_the_builtin_brick_set(fitted, brick):
    items = [(t.path, t.defect) for t in brick.test]
    calls = []
    s = thresholds.score_set(fitted, items, "brick", progress=lambda f, t: calls.append(f))
    assert len(s.scores) == len(brick.test) and s.calibrated == fitted.threshold
    assert s.overlays[0].shape == (224, 224, 3) and calls and calls == sorted(calls)
    st = thresholds.at_threshold(s, fitted.threshold)
    assert st["image_auroc"] > 0.9 and st["n_good"] == 12 and st["n_defective"] == 16
    truth = [fitted.predict([p])[0].score for p, _ in items[:2]]
    assert s.scores[:2] == pytest.approx(truth, rel=1e-4)


# ------------------------------------------------------------------ batches
def test_batch_marks_a_bad_file_and_scores_the_rest(fitted, brick, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    hole = next(t.path for t in brick.test if t.defect == "hole")
    items = [("a.png", str(brick.train[0])), ("notes.png", str(bad)), ("hole.png", str(hole))]
    rows, overlays = batch.score_batch(fitted, items)
    assert [r["file"] for r in rows] == ["a.png", "notes.png", "hole.png"]
    assert rows[1]["score"] is None and rows[1]["verdict"].startswith("error: notes.png")
    assert rows[2]["verdict"] == "anomalous" and rows[2]["score"] > rows[0]["score"]
    assert rows[2]["score / threshold"] == pytest.approx(rows[2]["score"] / fitted.threshold, abs=2e-3)
    assert set(overlays) == {"a.png", "hole.png"}
    csv_path, zip_path = batch.write_outputs(rows, overlays)
    table = list(csv.DictReader(open(csv_path)))
    assert [r["file"] for r in table] == ["a.png", "notes.png", "hole.png"] and table[1]["score"] == ""
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == ["overlays/a.png", "overlays/hole.png"]
        assert Image.open(io.BytesIO(zf.read("overlays/hole.png"))).size == (224, 224)
    assert batch.unique_names(["/x/a.png", "/y/a.png", "/z/b.png"]) == ["a.png", "a (2).png", "b.png"]
    with pytest.raises(logic.UserError, match="Upload images"):
        batch.score_batch(fitted, [])


# --------------------------------------------------------- the app's endpoints
@pytest.fixture(scope="module")
def app_url(fitted, brick):
    from servers import serve

    with serve(fitted, examples=[(str(brick.test[0].path), "good")], category="brick") as url:
        yield url


@pytest.fixture
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def test_evaluate_set_then_set_threshold_without_the_model(client, fitted, monkeypatch):
    thr, dist, roc, conf, gallery, summary, numbers = client.predict("brick", None, api_name="/evaluate_set")
    assert thr["value"] == pytest.approx(fitted.threshold, abs=1e-3)  # starts calibrated
    assert numbers["threshold"] == pytest.approx(fitted.threshold, abs=1e-3)
    assert numbers["calibrated_threshold"] == pytest.approx(fitted.threshold)
    assert numbers["image_auroc"] > 0.9 and sum(numbers["confusion"].values()) == 28
    assert "AUROC" in summary and dist is not None and roc is not None
    assert len(gallery) == len(numbers["misses"]) + len(numbers["false_alarms"])

    def no_model(*a, **k):
        raise AssertionError("the slider ran the model")

    monkeypatch.setattr(fitted, "predict", no_model)  # the server runs in this process
    monkeypatch.setattr(fitted, "score", no_model)
    *_, gallery_lo, summary_lo, low = client.predict(float(thr["minimum"]), api_name="/set_threshold")
    assert low["recall"] == 1.0 and low["confusion"]["true_negative"] == 0
    assert len(gallery_lo) == low["n_good"]  # below every score: every good image is a false alarm
    *_, high = client.predict(float(thr["maximum"]), api_name="/set_threshold")
    assert high["confusion"]["true_positive"] == 0 and len(high["misses"]) == high["n_defective"]


def test_set_threshold_before_any_set_says_so(client):
    *_, summary, numbers = client.predict(1.0, api_name="/set_threshold")
    assert "Score a set first" in summary and numbers == {}


def test_evaluate_set_from_a_zip_fits_on_its_training_images(client, brick, tmp_path):
    from gradio_client import handle_file

    z = mvtec_zip(tmp_path / "mine.zip", brick, train=3)
    *_, summary, numbers = client.predict("brick", handle_file(str(z)), api_name="/evaluate_set")
    assert "fitted on its 3 training images" in summary
    assert numbers["n_good"] == 4 and numbers["n_defective"] == 4
    evil = make_zip(tmp_path / "evil.zip", {"test/good/a.png": b"x", "../../x.png": b"y"})
    *_, summary, numbers = client.predict("brick", handle_file(str(evil)), api_name="/evaluate_set")
    assert "evil.zip: refused" in summary and numbers == {} and str(tmp_path) not in summary


def test_batch_endpoint_table_csv_and_overlays(client, brick, tmp_path, fitted):
    from gradio_client import handle_file

    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    z = make_zip(tmp_path / "more.zip", {f"imgs/{p.name}": p.read_bytes() for p in brick.train[:2]})
    hole = next(t.path for t in brick.test if t.defect == "hole")
    files = [handle_file(str(hole)), handle_file(str(bad)), handle_file(str(z))]
    unpacked = {p for p in logic.downloads_folder().iterdir() if p.name.startswith("zip-")}
    table, csv_file, zip_file, summary = client.predict(files, api_name="/batch")
    rows = table["data"]
    assert [r[0] for r in rows] == [hole.name, "notes.txt", f"more.zip/imgs/{brick.train[0].name}",
                                    f"more.zip/imgs/{brick.train[1].name}"]
    assert rows[0][3] == "anomalous" and rows[1][3].startswith("error: notes.txt")
    assert rows[0][1] == pytest.approx(fitted.predict([hole])[0].score, rel=1e-3)
    assert "4 files" in summary and "1 could not be read" in summary
    assert len(list(csv.reader(open(csv_file)))) == 5
    with zipfile.ZipFile(zip_file) as zf:
        assert len(zf.namelist()) == 3
    now = {p for p in logic.downloads_folder().iterdir() if p.name.startswith("zip-")}
    assert now <= unpacked, "the batch's unpacked zip was kept"


def test_new_endpoints_are_named(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/evaluate_set", "/set_threshold", "/batch"} <= names
    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") == "False"
