"""Model files from strangers: crafted or inconsistent files get a clear
ModelFileError naming the field (and the accepted range), from the library,
``patchcore predict`` (exit 2) and ``python -m demo --model``, before any
value is used or shown on the model card; every honest model still loads."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import patchcore_core
from patchcore_core import PatchCore, PatchCoreConfig
from patchcore_core.cli.main import main as cli_main
from patchcore_core.ext.ensemble import make_model
from patchcore_core.io.model_file import ModelFileError


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "good.safetensors"
    patchcore_core.save(fitted, path)
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


def _scaled_calibration(factor):
    """Calibration scores and threshold scaled together: the threshold still agrees with them."""
    def change(meta, tensors):
        meta["calibration_scores"] = [s * factor for s in meta["calibration_scores"]]
        meta["threshold"] = max(meta["calibration_scores"])
    return change


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
    # finite but absurd: each refused against what the fit itself makes
    ("threshold 1e308", _set("threshold", 1e308), "threshold"),
    ("threshold 1.5x the fitted one", lambda m, t: m.update(threshold=m["threshold"] * 1.5), "threshold"),
    ("threshold without calibration scores", _set("calibration_scores", []), "threshold"),
    ("bank x1e30", _tensor("bank.features", lambda t: t * 1e30), "bank.features"),
    ("bank x1e15", _tensor("bank.features", lambda t: t * 1e15), "bank.features"),
    ("calibration and threshold x1e10", _scaled_calibration(1e10), "calibration_scores"),
    ("calibration score negative", _set("calibration_scores", [-1.0]), "calibration_scores"),
    ("neighbourhood 10001", _set("config.neighbourhood", 10001), "config.neighbourhood"),
    ("layer unknown", _set("config.layers", ["blocks.2", "blocks.9"]), "config.layers"),
    ("layer twice", _set("config.layers", ["blocks.2", "blocks.2"]), "config.layers"),
    ("grid of other layers", _set("config.layers", ["blocks.3", "blocks.4"]), "grid"),
    ("grid larger than the features", _set("grid", [100, 100]), "grid"),
    ("stats Markdown", _set("stats.fit_seconds", "**0** [click](javascript:alert(1))"), "stats.fit_seconds"),
    ("stats HTML device", _set("stats.device", "<img src=x onerror=alert(1)>"), "stats.device"),
    ("stats bool", _set("stats.n_patches", True), "stats.n_patches"),
    ("stats infinite", _set("stats.fit_seconds", float("inf")), "stats.fit_seconds"),
    ("stats hide the threshold", _set("stats.threshold", 0.5), "stats"),
    ("stats HTML key", _set("stats.<b>x</b>", 1), "stats"),
    ("stats wrong image count", _set("stats.n_train", 10**9), "stats.n_train"),
    ("stats wrong crop mode", _set("stats.crop_mode", "squash"), "stats.crop_mode"),
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
    """Threat: a crafted file predicts wrongly or crashes: the library refuses it, naming the field."""
    path, field = crafted
    with pytest.raises(ModelFileError) as info:
        patchcore_core.load(path, device="cpu")
    assert str(path) in str(info.value) and f"'{field}'" in str(info.value)


def test_cli_predict_exits_2_naming_the_field(crafted, brick, capsys):
    """Threat: a crafted file gives a traceback or wrong verdicts in ``patchcore predict``."""
    path, field = crafted
    assert cli_main(["predict", "--model", str(path), str(brick.test[0].path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"'{field}'" in err and "Traceback" not in err


def test_demo_refuses_the_model_at_start(crafted, capsys):
    """Threat: a crafted file's values reach the demo's pages (model card) before they are checked."""
    from demo.__main__ import main as demo_main

    path, field = crafted
    assert demo_main(["--model", str(path), "--device", "cpu"]) == 2
    assert f"'{field}'" in capsys.readouterr().err


def test_a_good_file_still_loads_and_predicts_the_same(saved, fitted, brick):
    """Threat (to availability): the checks refuse an honest model."""
    path, _, _ = saved
    model = patchcore_core.load(path, device="cpu")
    img = brick.test[-1].path
    assert model.predict([img])[0].score == pytest.approx(fitted.predict([img])[0].score, rel=1e-5)


def test_a_nan_threshold_no_longer_calls_a_defect_normal(saved, tmp_path, brick):
    """Threat: a NaN threshold calls every defective image normal."""
    _, meta, tensors = saved
    meta = {**meta, "threshold": float("nan")}
    path = _write(tmp_path / "nan.safetensors", meta, tensors)
    with pytest.raises(ModelFileError, match="threshold"):
        patchcore_core.load(path, device="cpu")


@pytest.mark.parametrize("size", [8, 16])
def test_image_size_too_small_for_the_backbone_is_refused_before_fitting(size, tmp_path, capsys):
    """Threat: an image size no backbone cell fits in fails only after a long fit."""
    with pytest.raises(ValueError, match="too small"):
        PatchCoreConfig(image_size=size, resize=size)
    out = tmp_path / "m.safetensors"
    folder = tmp_path / "not-read"  # refused before any image is looked for
    assert cli_main(["fit", "--images", str(folder), "--out", str(out), "--image-size", str(size)]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "not-read" not in err and not out.exists()


def test_smallest_allowed_image_size_fits_and_predicts(brick):
    """Threat (to availability): the size floor refuses a size that works."""
    from patchcore_core.pipeline.config import min_image_size

    size = min_image_size("efficientnet_lite0", 4.0)
    model = PatchCore(device="cpu", image_size=size, resize=size).fit(brick.train[:3], progress=False)
    assert model.predict([brick.test[0].path])[0].anomaly_map.shape == (size, size)
    with pytest.raises(ValueError, match="too small"):
        PatchCore(device="cpu", image_size=size - 1, resize=size)


def test_a_huge_threshold_would_call_a_defect_normal_and_is_refused(saved, fitted, brick, tmp_path):
    """Threat: a finite threshold far above the calibration scores (1e308) calls every defect normal."""
    _, meta, tensors = saved
    defect = next(t.path for t in brick.test if t.defect != "good")
    assert fitted.predict([defect])[0].is_anomalous  # what the honest model says
    path = _write(tmp_path / "huge.safetensors", {**meta, "threshold": 1e308}, tensors)
    with pytest.raises(ModelFileError, match=r"'threshold'.*accepted range"):
        patchcore_core.load(path, device="cpu")


# ------------------------------------------------------------------ ensembles
ENSEMBLE = {"backbone": "efficientnet_lite0+efficientnet_lite1", "image_size": 96, "coreset_ratio": 0.05,
            "device": "cpu"}


@pytest.fixture(scope="module")
def saved_ensemble(brick, tmp_path_factory):
    path = tmp_path_factory.mktemp("ensemble") / "good.safetensors"
    patchcore_core.save(make_model(**ENSEMBLE).fit(brick.train[:12], progress=False), path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["patchcore"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return path, meta, tensors


def _ens(key, make):
    def change(meta):
        meta["ensemble"][key] = make(meta["ensemble"])
    return change


def _ens_scaled_calibration(meta):
    ens = meta["ensemble"]
    ens["calibration_scores"] = [s * 1e10 for s in ens["calibration_scores"]]
    ens["threshold"] = max(ens["calibration_scores"])


def _member_sigma(meta):
    meta["members"][1]["config"]["sigma"] = 1.0


ENSEMBLE_CASES = [
    ("image stats bool", _ens("image_stats", lambda e: [[True, True]] * 2), "ensemble.image_stats"),
    ("pixel stats bool", _ens("pixel_stats", lambda e: [[True, True]] * 2), "ensemble.pixel_stats"),
    ("threshold below the calibration scores",
     _ens("threshold", lambda e: min(e["calibration_scores"]) / 2), "ensemble.threshold"),
    ("threshold 1e308", _ens("threshold", lambda e: 1e308), "ensemble.threshold"),
    ("image stats not the members'",
     _ens("image_stats", lambda e: [[mu + 5 * sd, sd] for mu, sd in e["image_stats"]]),
     "ensemble.image_stats[0]"),
    ("calibration and threshold x1e10", _ens_scaled_calibration, "ensemble.calibration_scores"),
    ("pixel std 1e-300", _ens("pixel_stats", lambda e: [[mu, 1e-300] for mu, _ in e["pixel_stats"]]),
     "ensemble.pixel_stats[0]"),
    ("pixel mean 1e300", _ens("pixel_stats", lambda e: [[1e300, sd] for _, sd in e["pixel_stats"]]),
     "ensemble.pixel_stats[0]"),
    ("a member with other settings", _member_sigma, "members[1].config"),
]


@pytest.mark.parametrize("what,change,field", ENSEMBLE_CASES, ids=[c[0] for c in ENSEMBLE_CASES])
def test_ensemble_statistics_are_checked_like_a_single_models(saved_ensemble, tmp_path, capsys,
                                                               brick, what, change, field):
    """Threat: crafted ensemble statistics (bools, an absurd threshold) crash or flip verdicts."""
    _, meta, tensors = saved_ensemble
    meta = json.loads(json.dumps(meta))
    change(meta)
    path = _write(tmp_path / "crafted.safetensors", meta, tensors)
    with pytest.raises(ModelFileError) as info:
        patchcore_core.load(path, device="cpu")
    assert str(path) in str(info.value) and f"'{field}'" in str(info.value)
    assert cli_main(["predict", "--model", str(path), str(brick.test[0].path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"'{field}'" in err and "Traceback" not in err


def test_a_good_ensemble_still_loads_and_predicts_the_same(saved_ensemble, brick):
    """Threat (to availability): the ensemble checks refuse an honest ensemble."""
    path, _, _ = saved_ensemble
    again = patchcore_core.load(path, device="cpu")
    twice = patchcore_core.load(patchcore_core.save(again, path.with_name("again.safetensors")), device="cpu")
    img = brick.test[-1].path
    assert twice.predict([img])[0].score == pytest.approx(again.predict([img])[0].score, rel=1e-5)
    assert twice.threshold == again.threshold


# ------------------------------------------------------------ honest models
HONEST = {
    "identical images, no coreset": ({"coreset": "none", "knn_backend": "torch"}, "same"),
    "identical images, faiss": ({"coreset": "none"}, "same"),
    "one image: no threshold": ({}, 1),
    "fitted threshold (5% false alarms)": ({"false_alarm_rate": 0.05}, 12),
    "leave-one-out, Eq. 7": ({"reweight_neighbours": 3}, 4),
    "other layers, unfold": ({"layers": ["blocks.1", "blocks.2"], "aggregation": "unfold"}, 4),
    "widest neighbourhood": ({"neighbourhood": 7}, 4),  # 64 px: an 8x8 grid, so at most 7
    "random coreset of 0.1%": ({"coreset": "random", "coreset_ratio": 0.001}, 12),
}


@pytest.mark.parametrize("settings,images", HONEST.values(), ids=list(HONEST))
def test_honest_models_of_every_kind_still_load(settings, images, brick, tmp_path):
    """Threat (to availability): the range checks refuse a model the project itself fitted."""
    train = [brick.train[0]] * 3 if images == "same" else brick.train[:images]
    model = PatchCore(device="cpu", image_size=64, **settings).fit(train, progress=False)
    again = patchcore_core.load(patchcore_core.save(model, tmp_path / "m.safetensors"), device="cpu")
    img = brick.test[0].path
    assert again.threshold == model.threshold
    assert again.predict([img])[0].score == pytest.approx(model.predict([img])[0].score, rel=1e-5)


def test_declared_stage_strides_are_the_networks_grids():
    """Threat: the grid check's stride table drifts from the real networks and refuses honest models."""
    import math

    import torch
    import torchvision

    from patchcore_core.pipeline.backbones import FeatureExtractor, _efficientnet_lite, stage_strides

    for name, net in (("efficientnet_lite0", _efficientnet_lite("efficientnet_lite0")),
                      ("resnet18", torchvision.models.get_model("resnet18", weights=None))):
        strides = stage_strides(name)
        extractor = FeatureExtractor(net, tuple(strides))
        for size in (17, 64, 225):
            out = extractor(torch.zeros(1, 3, size, size))
            assert {k: tuple(v.shape[-2:]) for k, v in out.items()} == {
                k: (math.ceil(size / s),) * 2 for k, s in strides.items()}
