"""The CLI never loses data: its outputs never land on its inputs or on each other, output
paths are tried for real before the work, and settings that cannot work are refused up front."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

import patchcore_core
from patchcore_core.cli.main import main
from patchcore_core.cli.outputs import OutputPathError, check_output_file, check_output_folder
from patchcore_core.pipeline.config import PatchCoreConfig


@pytest.fixture
def inputs(brick, tmp_path):
    """A model file and two images in a folder, copied so the test may lose nothing real."""
    folder = tmp_path / "images"
    folder.mkdir()
    for src in brick.train[:2]:
        shutil.copy(src, folder / src.name)
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"a model's bytes")
    return model, sorted(folder.iterdir())


def _contents(paths) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def _same_file_spellings(target, tmp_path):
    """``target`` by other names: itself, a symbolic link, a hard link, a path through ``..``."""
    link, hard = tmp_path / "link.png", tmp_path / "hard.png"
    link.symlink_to(target)
    os.link(target, hard)
    return {"itself": target, "symlink": link, "hard link": hard,
            "dotdot": target.parent / ".." / target.parent.name / target.name}


@pytest.mark.parametrize("spelling", ["itself", "symlink", "hard link", "dotdot"])
def test_json_onto_an_input_image_is_refused_before_work(spelling, inputs, tmp_path, never_work, capsys):
    """Threat: `predict --json` replaces an input image with JSON (input lost, exit 0)."""
    model, images = inputs
    before = _contents(images)
    target = _same_file_spellings(images[0], tmp_path)[spelling]
    assert main(["predict", "--model", str(model), *map(str, images), "--json", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --json") and "would be overwritten" in err and images[0].name in err
    assert _contents(images) == before


def test_json_onto_the_model_or_a_folder_input_is_refused(inputs, tmp_path, never_work, capsys):
    """Threat: `predict --json` replaces the model file, or an image found in a folder given as input."""
    model, images = inputs
    assert main(["predict", "--model", str(model), str(images[0]), "--json", str(model), "--quiet"]) == 2
    assert "would be overwritten" in capsys.readouterr().err
    assert main(["predict", "--model", str(model), str(images[0].parent), "--json", str(images[1]),
                 "--quiet"]) == 2
    assert "would be overwritten" in capsys.readouterr().err
    assert model.read_bytes() == b"a model's bytes" and images[1].read_bytes()[:4] == b"\x89PNG"


def test_a_heatmap_onto_an_input_is_refused_before_work(inputs, tmp_path, never_work, capsys):
    """Threat: `predict --heatmaps` writes an overlay over an input image of the same name."""
    model, images = inputs
    victim = images[0].parent / f"{images[1].stem}_heatmap.png"  # an input where a heatmap will go
    shutil.copy(images[0], victim)
    before = victim.read_bytes()
    linked = tmp_path / "maps"
    linked.symlink_to(images[0].parent)  # the same folder by another name
    for out in (images[0].parent, linked):
        assert main(["predict", "--model", str(model), str(images[0].parent), "--heatmaps", str(out),
                     "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --heatmaps") and "would be overwritten" in err and victim.name in err
    assert victim.read_bytes() == before


def test_json_and_a_heatmap_on_the_same_file_are_refused(inputs, tmp_path, never_work, capsys):
    """Threat: one output of a run silently replaces another (the JSON or a heatmap is lost)."""
    model, images = inputs
    json_path = tmp_path / "maps" / f"{images[0].stem}_heatmap.png"
    assert main(["predict", "--model", str(model), str(images[0]), "--heatmaps", str(tmp_path / "maps"),
                 "--json", str(json_path), "--quiet"]) == 2
    assert "is also written by --json" in capsys.readouterr().err


def test_same_file_names_in_two_folders_get_two_heatmaps(builtin_root, brick, tmp_path, capsys):
    """Threat: two inputs with one file name share one heatmap; one is lost while 'wrote 2' is printed."""
    from patchcore_core import PatchCore

    model = tmp_path / "m.safetensors"
    patchcore_core.save(PatchCore(device="cpu", image_size=64).fit(brick.train[:4], progress=False), model)
    test = builtin_root / "brick" / "test"
    good, hole = test / "good" / "000.png", test / "hole" / "000.png"
    maps, out = tmp_path / "maps", tmp_path / "p.json"
    assert main(["predict", "--model", str(model), str(good), str(hole), "--heatmaps", str(maps),
                 "--json", str(out), "--quiet", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in maps.iterdir()) == ["good_000_heatmap.png", "hole_000_heatmap.png"]
    assert (maps / "good_000_heatmap.png").read_bytes() != (maps / "hole_000_heatmap.png").read_bytes()
    rows = json.loads(out.read_text())
    assert [(r["image"], r["heatmap"]) for r in rows] == [
        (str(good), str(maps / "good_000_heatmap.png")), (str(hole), str(maps / "hole_000_heatmap.png"))]
    assert "wrote 2 heatmaps" in err
    assert f"{good} -> good_000_heatmap.png" in err and f"{hole} -> hole_000_heatmap.png" in err


def test_heatmap_names_are_distinct_and_deterministic():
    """Threat: heatmap names that clash (same stem, other suffix, case, same folder name) overwrite."""
    from patchcore_core.cli.outputs import distinct_names

    paths = ["a/x/0.png", "b/x/0.png", "a/1.png", "a/1.jpg", "a/2.png", "a/Q.png", "b/q.png"]
    names = distinct_names(paths, "_heatmap.png")
    assert names == ["x_0_heatmap.png", "x_0_2_heatmap.png", "a_1_heatmap.png", "a_1_2_heatmap.png",
                     "2_heatmap.png", "a_Q_heatmap.png", "b_q_heatmap.png"]
    assert len({n.casefold() for n in names}) == len(paths)
    assert distinct_names(paths, "_heatmap.png") == names
    assert distinct_names(["good/000.png"], "_heatmap.png") == ["000_heatmap.png"]  # unchanged when unique


@pytest.mark.parametrize("value", ["nan", "inf", "NaN", "1e999", "-nan"])
@pytest.mark.parametrize("command", ["fit", "evaluate"])
def test_sigma_nan_or_inf_is_refused_when_parsed(command, value, builtin_root, tmp_path, never_work, capsys):
    """Threat: --sigma nan/inf passes every range check and fails (or crashes) after the work starts."""
    args = {"fit": ["fit", "--category", "brick", "--out", str(tmp_path / "m.safetensors")],
            "evaluate": ["evaluate", "--category", "brick"]}[command]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--data", str(builtin_root), f"--sigma={value}", "--quiet"])
    assert exc.value.code == 2
    assert "argument --sigma: must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_nan_and_inf_are_refused_by_the_config_too():
    """Threat: a NaN/inf sigma through the Python API (the demo, notebooks) crashes at fit or predict."""
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma must be a finite number"):
            PatchCoreConfig(sigma=value)


@pytest.mark.parametrize("command", ["fit", "evaluate", "benchmark"])
def test_a_neighbourhood_wider_than_the_grid_is_refused_before_work(command, builtin_root, tmp_path,
                                                                     never_work, capsys):
    """Threat: a neighbourhood beyond the patch grid runs minutes (or exhausts memory) for nothing."""
    args = {"fit": ["fit", "--category", "brick", "--out", str(tmp_path / "m.safetensors")],
            "evaluate": ["evaluate", "--category", "brick"],
            "benchmark": ["benchmark", "--out", str(tmp_path / "bench")]}[command]
    small = ["--image-size", "64", "--neighbourhood", "9"]
    for extra, grid, most in ((["--neighbourhood", "29"], 28, 27), (small, 8, 7)):
        assert main([*args, "--data", str(builtin_root), *extra, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"neighbourhood {extra[-1]} is larger than the {grid}x{grid} patch grid" in err
        assert f"give at most {most}" in err
    with pytest.raises(SystemExit):  # even: refused by argparse itself
        main([*args, "--data", str(builtin_root), "--neighbourhood", "4", "--quiet"])
    assert "positive odd number" in capsys.readouterr().err
    assert PatchCoreConfig(neighbourhood=27).patch_grid == 28  # the largest that fits is accepted


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_outputs_are_tried_for_real_before_work(inputs, tmp_path, never_work, capsys):
    """Threat: os.access says yes (root, /proc, read-only mounts) and the results are lost after the work."""
    with pytest.raises(OutputPathError, match="cannot create files in /proc"):
        check_output_file("/proc/results.json", "--json")
    with pytest.raises(OutputPathError, match="/proc"):
        check_output_folder("/proc/maps", "--heatmaps")
    model, images = inputs
    for option, target in (("--json", "/proc/results.json"), ("--heatmaps", "/proc/maps")):
        assert main(["predict", "--model", str(model), str(images[0]), option, target, "--quiet"]) == 2
        assert capsys.readouterr().err.startswith(f"error: {option} {target}")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_special_file_is_refused_as_output(inputs, tmp_path, never_work, capsys):
    """Threat: an output on a device or pipe (/dev/null, /dev/stdout) is replaced by a regular file."""
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    model, images = inputs
    assert main(["predict", "--model", str(model), str(images[0]), "--json", str(fifo), "--quiet"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert main(["fit", "--images", str(images[0].parent), "--out", str(fifo), "--quiet"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert fifo.is_fifo()
