"""Output paths are checked before the work, and files get the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

import patchcore_core
from patchcore_core.cli.main import main
from patchcore_core.cli.outputs import OutputPathError, check_output_file, check_output_folder


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    return f


def _bad_outs(tmp_path, a_file):
    return {"a folder": tmp_path, "under a file": a_file / "m.safetensors",
            "deep under a file": a_file / "x" / "y" / "m.safetensors"}


@pytest.mark.parametrize("case", ["a folder", "under a file", "deep under a file", "wrong suffix"])
def test_fit_checks_out_before_reading_images(case, builtin_root, tmp_path, a_file, never_work, capsys):
    out = _bad_outs(tmp_path, a_file).get(case, tmp_path / "model.pt")
    assert main(["fit", "--data", str(builtin_root), "--category", "brick", "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "Traceback" not in err


@pytest.mark.parametrize("option", ["--json", "--heatmaps"])
def test_predict_checks_outputs_before_loading(option, tmp_path, a_file, never_work, capsys):
    bad = a_file / "out" if option == "--heatmaps" else tmp_path
    assert main(["predict", "--model", str(tmp_path / "m.safetensors"), str(tmp_path),
                 option, str(bad), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {option}")
    if option == "--heatmaps":  # a file where the folder should be
        assert main(["predict", "--model", "m.safetensors", ".", "--heatmaps", str(a_file), "--quiet"]) == 2
        assert "is a file" in capsys.readouterr().err


def test_evaluate_checks_json_before_fitting(builtin_root, tmp_path, a_file, never_work, capsys):
    assert main(["evaluate", "--data", str(builtin_root), "--category", "brick", "--json",
                 str(a_file / "r.json"), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_good_outputs_pass_without_creating_anything(tmp_path):
    assert check_output_file(tmp_path / "new" / "deeper" / "m.safetensors", suffix=".safetensors")
    assert check_output_folder(tmp_path / "maps" / "here")
    assert list(tmp_path.iterdir()) == []  # only looked
    with pytest.raises(OutputPathError, match=r"\.safetensors"):
        check_output_file(tmp_path / "m.bin", "--out", suffix=".safetensors")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="permission"):
            check_output_file(ro / "m.safetensors")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_model_files_get_the_umask_permissions(fitted, tmp_path, umask):
    old = os.umask(umask)
    try:
        path = patchcore_core.save(fitted, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_an_existing_file_keeps_its_mode(fitted, tmp_path):
    path = tmp_path / "m.safetensors"
    patchcore_core.save(fitted, path)
    path.chmod(0o640)
    patchcore_core.save(fitted, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
