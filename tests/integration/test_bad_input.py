"""Smaller points of bad input: skipped files named, one bad file among many,
unencodable names, decompression bombs, unknown devices."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from paths import ROOT
from PIL import Image

import patchcore_core
from patchcore_core import PatchCore
from patchcore_core.cli.main import main
from patchcore_core.data.mvtec import image_folder
from patchcore_core.util.images import DataError, ImageTooLargeError, image_size, read_image


@pytest.fixture(scope="module")
def model_file(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.safetensors"
    return patchcore_core.save(fitted, path)


@pytest.fixture
def folder_with_odd_files(brick, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in brick.test[:3]:
        shutil.copy(p.path, folder / f"{p.defect}_{p.path.name}")
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue")]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    (folder / "loop.png").symlink_to(folder / "loop.png")   # a link to itself
    (folder / ".DS_Store").write_bytes(b"x")                # hidden: silently left out
    return folder


def test_skipped_files_are_named_in_one_notice(folder_with_odd_files):
    notes = []
    paths = image_folder(folder_with_odd_files, on_skip=notes.append)
    assert len(paths) == 3 and len(notes) == 1 and "\n" not in notes[0]
    assert "anim.gif" in notes[0] and "loop.png" in notes[0] and "link loop" in notes[0]
    assert ".DS_Store" not in notes[0]


def test_predict_scores_the_others_and_fails_at_the_end(model_file, folder_with_odd_files, tmp_path, capsys):
    (folder_with_odd_files / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "p.json"
    assert main(["predict", "--model", str(model_file), str(folder_with_odd_files), "--json", str(out),
                 "--heatmaps", str(tmp_path / "maps"), "--quiet", "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "note:" in captured.err and "anim.gif" in captured.err
    assert "broken.png" in captured.err and "1 of 4 images could not be read" in captured.err
    rows = json.loads(out.read_text())
    by_name = {Path(r["image"]).name: r for r in rows}
    assert by_name["broken.png"]["verdict"] == "error" and by_name["broken.png"]["score"] is None
    scored = [r for r in rows if r["verdict"] != "error"]
    assert len(scored) == 3 and all(r["score"] > 0 for r in scored)
    assert len(list((tmp_path / "maps").glob("*.png"))) == 3


def test_an_unencodable_file_name_is_printed_escaped(model_file, brick, tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    name = os.fsdecode(b"bad\xff.png")  # not valid UTF-8: a lone surrogate in Python
    Path(folder, name).write_bytes(b"not an image")
    assert main(["predict", "--model", str(model_file), str(folder / name), "--quiet",
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "bad\\udcff.png" in err  # escaped, and still says which file


def test_a_name_the_terminal_cannot_encode_in_a_subprocess(model_file, brick, tmp_path):
    img = tmp_path / "défaut_ü.png"
    shutil.copy(brick.test[0].path, img)
    res = subprocess.run([sys.executable, "-m", "patchcore_core.cli", "predict",
                          "--model", str(model_file),
                          str(img), "--quiet", "--device", "cpu"], cwd=ROOT, capture_output=True,
                         env={**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONPATH": str(ROOT)},
                         timeout=300)
    out = res.stdout.decode("ascii")
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert "d\\xe9faut_\\xfc.png" in out and "Traceback" not in res.stderr.decode(errors="replace")


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """Tiny files of huge images: over Pillow's error size, and in its warning range."""
    folder = tmp_path_factory.mktemp("bombs")
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only to write them
    try:
        Image.new("1", (20_000, 10_000)).save(folder / "error.png")   # 200 Mpx > 2 x 89 Mpx
        Image.new("1", (12_000, 10_000)).save(folder / "warn.png")    # 120 Mpx: Pillow only warns
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return folder


@pytest.mark.parametrize("name", ["error.png", "warn.png"])
def test_decompression_bombs_get_the_projects_message(bombs, name):
    for read in (read_image, image_size):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no Pillow warning gets out either
            with pytest.raises(ImageTooLargeError) as info:
                read(bombs / name)
        msg = str(info.value)
        assert name in msg and "limit of 80,000,000" in msg and "PATCHCORE_MAX_PIXELS" in msg
        assert isinstance(info.value, DataError)


def test_the_demo_tells_a_visitor_the_limit_not_a_server_setting(fitted, bombs):
    from demo import logic

    with pytest.raises(logic.UserError) as info:
        logic.predict(fitted, bombs / "error.png")
    msg = str(info.value)
    assert "error.png" in msg and "80,000,000" in msg
    assert "PATCHCORE_MAX_PIXELS" not in msg and str(bombs) not in msg


@pytest.mark.parametrize("device", ["gpu", "cuda0", "tpu", "Metal"])
def test_unknown_device_is_a_clear_error(device, builtin_root, tmp_path, capsys):
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        PatchCore(device=device)
    assert main(["fit", "--data", str(builtin_root), "--category", "brick", "--out",
                 str(tmp_path / "m.safetensors"), "--device", device, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"unknown device '{device}'" in err and "auto, cpu, cuda" in err


def test_demo_refuses_an_unknown_device_at_start(capsys):
    from demo.__main__ import main as demo_main

    assert demo_main(["--device", "gpu"]) == 2
    assert "auto, cpu, cuda" in capsys.readouterr().err


def test_known_devices_still_work():
    assert str(PatchCore(device="cpu").device) == "cpu"
    assert str(PatchCore(device=" CPU ").device) == "cpu"
