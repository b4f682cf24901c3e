import json
import subprocess
import sys

import pytest
from PIL import Image

import patchcore_core
from patchcore_core.cli.main import main
from patchcore_core.data.builtin import DEFECTS, N_PER_DEFECT, N_TEST_GOOD

REQUIRED = ["image_auroc", "pixel_auroc", "aupro", "f1_max", "n_train", "n_test", "memory_bank_size",
            "fit_seconds", "predict_seconds_per_image", "peak_rss_mb", "backbone", "coreset_ratio",
            "image_size"]


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "patchcore_core.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for cmd in ["fit", "predict", "evaluate", "data"]:
        assert cmd in out


def test_evaluate_writes_the_table_and_json(builtin_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(builtin_root), "--category", "gravel", "--shots", "8",
                 "--json", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "gravel" in table and "image_auroc" in table
    res = json.loads(out.read_text())["gravel"]
    assert all(k in res for k in REQUIRED)
    assert res["n_train"] == 8 and res["n_test"] == N_TEST_GOOD + N_PER_DEFECT * len(DEFECTS)
    assert res["image_auroc"] > 0.7


def test_evaluate_with_strict_masks(builtin_root, tmp_path):
    # gravel at twice its size, so that resizing the masks has borders to decide on
    src, root = builtin_root / "gravel", tmp_path / "big"
    for f in src.rglob("*.png"):
        dst = root / "gravel" / f.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(f) as im:
            im.resize((2 * im.width, 2 * im.height), Image.NEAREST).save(dst)
    runs = {}
    for protocol in ("nearest", "strict"):
        out = tmp_path / f"{protocol}.json"
        assert main(["evaluate", "--data", str(root), "--category", "gravel", "--shots", "8",
                     "--mask-protocol", protocol, "--json", str(out), "--quiet"]) == 0
        runs[protocol] = json.loads(out.read_text())["gravel"]
    assert runs["strict"]["mask_protocol"] == "strict"
    # same model and maps: image figures agree, pixel figures are scored on other masks
    assert runs["strict"]["image_auroc"] == runs["nearest"]["image_auroc"]
    assert runs["strict"]["pixel_auroc"] != runs["nearest"]["pixel_auroc"]


def test_fit_then_predict(builtin_root, tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    assert main(["fit", "--data", str(builtin_root), "--category", "brick", "--shots", "6",
                 "--out", str(model), "--quiet"]) == 0
    assert model.is_file()
    hole = builtin_root / "brick" / "test" / "hole"
    assert main(["predict", "--model", str(model), str(hole), "--heatmaps", str(tmp_path / "maps"),
                 "--json", str(tmp_path / "p.json"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "p.json").read_text())
    assert len(rows) == N_PER_DEFECT and all(r["verdict"] == "anomalous" for r in rows)
    assert len(list((tmp_path / "maps").glob("*_heatmap.png"))) == N_PER_DEFECT


def test_unknown_category_is_a_clear_error(builtin_root, capsys):
    assert main(["evaluate", "--data", str(builtin_root), "--category", "bottle", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bottle" in err and "brick, grass, gravel" in err


def test_bad_ratio_and_backbone_are_refused(builtin_root, capsys):
    assert main(["evaluate", "--data", str(builtin_root), "--category", "brick",
                 "--coreset-ratio", "1.5", "--quiet"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    # --backbone takes a+b+c ensembles, so the config (not argparse) checks each name and lists the choices
    for backbone in ("vgg", "efficientnet_lite0+vgg"):
        assert main(["fit", "--images", ".", "--out", "x.safetensors", "--backbone", backbone]) == 2
        err = capsys.readouterr().err
        assert "unknown backbone 'vgg'" in err and "efficientnet_lite0" in err


def test_predict_with_a_broken_model(tmp_path, capsys):
    bad = tmp_path / "m.safetensors"
    bad.write_bytes(b"garbage")
    assert main(["predict", "--model", str(bad), str(tmp_path)]) == 2
    assert "m.safetensors" in capsys.readouterr().err


def test_data_command_writes_the_builtin_dataset(tmp_path, capsys):
    assert main(["data", "--out", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "d")
    assert (tmp_path / "d" / "grass" / "ground_truth" / "scratch" / "000_mask.png").is_file()


def test_every_config_field_is_a_cli_option():
    import dataclasses

    from patchcore_core import PatchCoreConfig
    from patchcore_core.cli.main import build_parser

    for command in ("evaluate", "fit"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]
        dests = {a.dest for a in sub._actions}
        assert {f.name for f in dataclasses.fields(PatchCoreConfig)} <= dests, command


def test_a_new_config_field_appears_in_the_parser():
    import argparse
    import dataclasses

    from patchcore_core import PatchCoreConfig
    from patchcore_core.cli.options import add_config_options, config_from_args
    from patchcore_core.pipeline.config import setting

    Extended = dataclasses.make_dataclass(
        "Extended", [("new_knob", int, setting(7, "a knob only this test has", choices=(7, 8)))],
        bases=(PatchCoreConfig,))
    p = argparse.ArgumentParser()
    add_config_options(p, Extended)
    assert "--new-knob" in p.format_help() and "a knob only this test has (default: 7)" in " ".join(
        p.format_help().split())
    args = p.parse_args(["--new-knob", "8", "--coreset-ratio", "0.05", "--layers", "a", "b"])
    assert config_from_args(args, Extended) == {"new_knob": 8, "coreset_ratio": 0.05, "layers": ["a", "b"]}
    with pytest.raises(SystemExit):
        p.parse_args(["--new-knob", "9"])  # not among the field's choices


def test_cli_defaults_come_from_the_config(builtin_root, tmp_path):
    """No option given: the saved model's settings are exactly the config's defaults."""
    from patchcore_core import PatchCoreConfig

    out = tmp_path / "m.safetensors"
    assert main(["fit", "--data", str(builtin_root), "--category", "brick", "--shots", "3",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert patchcore_core.load(out, device="cpu").config == PatchCoreConfig()


def test_ray_starts_only_after_the_data_and_settings_are_checked(builtin_root, tmp_path, capsys, monkeypatch):
    """Joining or starting a cluster takes seconds to minutes: a typo is named before it starts."""
    import patchcore_core.cluster as cluster

    monkeypatch.setattr(cluster, "RayCluster", lambda *a, **k: pytest.fail("a Ray cluster was started"))
    data = ["--data", str(builtin_root), "--ray", "local"]
    assert main(["evaluate", "--category", "nosuch", *data]) == 2
    assert "category 'nosuch' not found" in capsys.readouterr().err
    assert main(["fit", "--category", "nosuch", "--out", str(tmp_path / "m.safetensors"), *data]) == 2
    assert "category 'nosuch' not found" in capsys.readouterr().err
    out = ["--out", str(tmp_path / "m.safetensors")]
    ensemble = ["--backbone", "efficientnet_lite0+efficientnet_lite1"]
    assert main(["fit", "--category", "brick", *ensemble, *out, *data]) == 2
    assert "is an ensemble, which runs on one machine" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


# Every command that takes or makes a model, with an ensemble: tiny images, few shots.
ENSEMBLE = ["--backbone", "efficientnet_lite0+efficientnet_lite1", "--image-size", "96",
            "--coreset-ratio", "0.05", "--device", "cpu", "--quiet"]


def test_fit_and_predict_with_an_ensemble(builtin_root, tmp_path, capsys):
    model = tmp_path / "ens.safetensors"
    assert main(["fit", "--data", str(builtin_root), "--category", "brick", "--shots", "6",
                 "--out", str(model), *ENSEMBLE]) == 0
    assert "saved" in capsys.readouterr().out
    loaded = patchcore_core.load(model, device="cpu")
    assert isinstance(loaded, patchcore_core.PatchCoreEnsemble)
    assert [m.config.backbone for m in loaded.members] == ["efficientnet_lite0", "efficientnet_lite1"]
    assert loaded.summary()["n_train"] == 6 and loaded.threshold > 0
    test = builtin_root / "brick" / "test"
    assert main(["predict", "--model", str(model), str(test / "hole"), str(test / "good"), "--device", "cpu",
                 "--heatmaps", str(tmp_path / "maps"), "--json", str(tmp_path / "p.json"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "p.json").read_text())
    holes = [r for r in rows if "/hole/" in r["image"]]
    goods = [r for r in rows if "/good/" in r["image"]]
    assert len(holes) == N_PER_DEFECT and len(goods) == N_TEST_GOOD
    assert all(r["verdict"] == "anomalous" for r in holes)
    assert min(r["score"] for r in holes) > max(r["score"] for r in goods)
    assert len(list((tmp_path / "maps").glob("*_heatmap.png"))) == len(rows)


def test_evaluate_with_an_ensemble(builtin_root, tmp_path, capsys):
    """Once ended in AttributeError: 'PatchCoreEnsemble' object has no attribute 'stats'."""
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(builtin_root), "--category", "brick", "--shots", "6",
                 "--json", str(out), *ENSEMBLE]) == 0
    assert "brick" in capsys.readouterr().out
    res = json.loads(out.read_text())["brick"]
    assert all(k in res for k in REQUIRED)
    assert res["backbone"] == "efficientnet_lite0+efficientnet_lite1" and res["image_size"] == 96
    assert res["n_train"] == 6 and res["n_test"] == N_TEST_GOOD + N_PER_DEFECT * len(DEFECTS)
    assert res["image_auroc"] > 0.7 and res["memory_bank_size"] > 0
