"""Crafted or inconsistent model files: a clear ModelFileError naming the field,
from the library, ``patchcore predict`` (exit 2) and ``python -m demo --model``."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from patchcore_core import PatchCore, PatchCoreConfig
from patchcore_core.cli.main import main as cli_main
from patchcore_core.io.model_file import ModelFileError


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "good.safetensors"
    fitted.save(path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["patchcore"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return path, meta, tensors


def _write(path, meta, tensors, raw=None):
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"patchcore": raw if raw is not None else json.dumps(meta)})
    return path


def _set(key, value):
    def change(meta, tensors):
        node, *rest = key.split(".")
        if rest:
            meta[node][rest[0]] = value
        elif value is _DELETE:
            del meta[node]
        else:
            meta[node] = value
    return change


_DELETE = object()


def _tensor(key, make):
    def change(meta, tensors):
        tensors[key] = make(tensors[key])
    return change


def _origin_out_of_range(origin):
    origin = origin.clone()
    origin[0, 0] = 10_000  # a training image that does not exist
    return origin


# (what, change, the field the message must name)
CASES = [
    ("metadata a list", "raw:[1, 2, 3]", "patchcore"),
    ("metadata a string", 'raw:"hello"', "patchcore"),
    ("config missing", _set("config", _DELETE), "config"),
    ("config not an object", _set("config", [1, 2]), "config"),
    ("config ratio text", _set("config.coreset_ratio", "lots"), "config.coreset_ratio"),
    ("config unknown backbone", _set("config.backbone", "vgg_evil"), "config"),
    ("config image_size huge", _set("config.image_size", 100_000), "config.image_size"),
    ("channels text", _set("channels", ["a", "b"]), "channels"),
    ("channels a number", _set("channels", 40), "channels"),
    ("channels terabytes", _set("channels", [1_000_000, 1_000_000]), "channels"),
    ("pretrain_dim terabytes", _set("config.pretrain_dim", 10_000_000), "channels"),
    ("empty bank", _tensor("bank.features", lambda t: t[:0]), "bank.features"),
    ("bank width", _tensor("bank.features", lambda t: t[:, :5]), "bank.features"),
    ("bank NaN", _tensor("bank.features", lambda t: t.clone().fill_(float("nan"))), "bank.features"),
    ("bank missing", lambda m, t: t.pop("bank.features"), "bank.features"),
    ("origin float", _tensor("bank.origin", lambda t: t.float()), "bank.origin"),
    ("origin out of range", _tensor("bank.origin", _origin_out_of_range), "bank.origin"),
    ("threshold NaN", _set("threshold", float("nan")), "threshold"),
    ("threshold negative", _set("threshold", -1.0), "threshold"),
    ("threshold text", _set("threshold", "high"), "threshold"),
    ("false_alarm_rate 1.5", _set("config.false_alarm_rate", 1.5), "config.false_alarm_rate"),
    ("false_alarm_rate text", _set("config.false_alarm_rate", "few"), "config.false_alarm_rate"),
    ("false_alarm_rate NaN", _set("config.false_alarm_rate", float("nan")), "config.false_alarm_rate"),
    ("threshold below the held-out scores", _set("threshold", 1e-6), "threshold"),
    ("resize 100000", _set("preprocess.resize", 100_000), "preprocess.resize"),
    ("resize disagrees", _set("preprocess.resize", 300), "preprocess.resize"),
    ("crop disagrees", _set("preprocess.crop", 200), "preprocess.crop"),
    ("preprocess missing", _set("preprocess", _DELETE), "preprocess"),
    ("mode unknown", _set("preprocess.mode", "zoom"), "preprocess.mode"),
    ("grid huge", _set("grid", [100_000, 100_000]), "grid[0]"),
    ("grid not a pair", _set("grid", 28), "grid"),
    ("train_names not a list", _set("train_names", "a.png"), "train_names"),
    ("calibration scores text", _set("calibration_scores", ["x"]), "calibration_scores"),
    ("stats a list", _set("stats", [1]), "stats"),
    ("format version", _set("format_version", 99), "format_version"),
]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def crafted(request, saved, tmp_path):
    _, meta, tensors = saved
    what, change, field = request.param
    meta, tensors = json.loads(json.dumps(meta)), dict(tensors)
    path = tmp_path / "crafted.safetensors"
    if isinstance(change, str):
        _write(path, meta, tensors, raw=change[len("raw:"):])
    else:
        change(meta, tensors)
        _write(path, meta, tensors)
    return path, field


def test_library_names_the_field(crafted):
    path, field = crafted
    with pytest.raises(ModelFileError) as info:
        PatchCore.load(path, device="cpu")
    assert str(path) in str(info.value) and f"'{field}'" in str(info.value)


def test_cli_predict_exits_2_naming_the_field(crafted, brick, capsys):
    path, field = crafted
    assert cli_main(["predict", "--model", str(path), str(brick.test[0].path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"'{field}'" in err and "Traceback" not in err


def test_demo_refuses_the_model_at_start(crafted, capsys):
    from demo.__main__ import main as demo_main

    path, field = crafted
    assert demo_main(["--model", str(path), "--device", "cpu"]) == 2
    assert f"'{field}'" in capsys.readouterr().err


def test_a_good_file_still_loads_and_predicts_the_same(saved, fitted, brick):
    path, _, _ = saved
    model = PatchCore.load(path, device="cpu")
    img = brick.test[-1].path
    assert model.predict([img])[0].score == pytest.approx(fitted.predict([img])[0].score, rel=1e-5)


def test_a_nan_threshold_no_longer_calls_a_defect_normal(saved, tmp_path, brick):
    _, meta, tensors = saved
    meta = {**meta, "threshold": float("nan")}
    path = _write(tmp_path / "nan.safetensors", meta, tensors)
    with pytest.raises(ModelFileError, match="threshold"):
        PatchCore.load(path, device="cpu")


@pytest.mark.parametrize("size", [8, 16])
def test_image_size_too_small_for_the_backbone_is_refused_before_fitting(size, tmp_path, capsys):
    with pytest.raises(ValueError, match="too small"):
        PatchCoreConfig(image_size=size, resize=size)
    out = tmp_path / "m.safetensors"
    folder = tmp_path / "not-read"  # refused before any image is looked for
    assert cli_main(["fit", "--images", str(folder), "--out", str(out), "--image-size", str(size)]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "not-read" not in err and not out.exists()


def test_smallest_allowed_image_size_fits_and_predicts(brick):
    from patchcore_core.pipeline.config import min_image_size

    size = min_image_size("efficientnet_lite0", 4.0)
    model = PatchCore(device="cpu", image_size=size, resize=size).fit(brick.train[:3], progress=False)
    assert model.predict([brick.test[0].path])[0].anomaly_map.shape == (size, size)
    with pytest.raises(ValueError, match="too small"):
        PatchCore(device="cpu", image_size=size - 1, resize=size)
