import json

import numpy as np
import pytest
import torch

import patchcore_core
from patchcore_core import PatchCore, PatchCoreConfig
from patchcore_core.io.model_file import FORMAT_VERSION, ModelFileError
from patchcore_core.pipeline.backbones import BackboneError
from patchcore_core.pipeline.calibration import calibration_folds, threshold_from_scores


def fit_small(brick, **config) -> PatchCore:
    """A quick model on four brick images, no threshold (all four in the bank)."""
    return PatchCore(**{"device": "cpu", "calibration_fraction": 0, **config}).fit(brick.train[:4],
                                                                                    progress=False)


def test_defects_score_above_normal_images(fitted, brick):
    preds = fitted.predict([t.path for t in brick.test])
    good = [p.score for p, t in zip(preds, brick.test) if not t.is_anomalous]
    bad = [p.score for p, t in zip(preds, brick.test) if t.is_anomalous]
    assert np.mean(bad) > np.mean(good)
    assert sum(b > max(good) for b in bad) >= len(bad) // 2


def test_prediction_fields(fitted, brick):
    p = fitted.predict(brick.test[0].path)[0]
    assert p.anomaly_map.shape == (224, 224) and p.patch_scores.shape == fitted.grid == (28, 28)
    assert p.score == pytest.approx(float(p.patch_scores.max()))  # s* = max_i s_i
    assert p.normalised_score == pytest.approx(p.score / fitted.threshold)
    assert p.is_anomalous == (p.normalised_score > 1) and p.verdict in ("normal", "anomalous")


def test_heatmap_peaks_on_the_defect(fitted, brick):
    item = next(t for t in brick.test if t.defect == "hole")
    mask = brick.load_mask(item, fitted.preprocess)
    amap = fitted.predict(item.path)[0].anomaly_map
    assert amap[mask].mean() > 2 * amap[~mask].mean()


def test_threshold_from_held_out_good_images(fitted):
    # the default rule (measured on the real sets, see calibration.py): the largest held-out score
    assert fitted.config.false_alarm_rate == 0
    assert fitted.threshold == max(fitted.calibration_scores)
    assert threshold_from_scores(fitted.calibration_scores, 0.05) >= fitted.threshold
    assert len(fitted.calibration_scores) == 5  # 10% of 24, but at least 5
    assert fitted.stats["memory_bank_size"] == pytest.approx(0.1 * 24 * 28 * 28, rel=0.01)


def test_calibration_folds():
    assert calibration_folds(1) == []
    loo = calibration_folds(3)
    assert loo == [([1, 2], [0]), ([0, 2], [1]), ([0, 1], [2])]
    (kept, held), = calibration_folds(30, 0.1, seed=1)
    assert len(held) == 5 and sorted(kept + held) == list(range(30))
    assert len(calibration_folds(200, 0.1)[0][1]) == 20
    assert calibration_folds(30, 0.1, seed=1) == calibration_folds(30, 0.1, seed=1)


def test_leave_one_out_with_few_images(brick):
    model = PatchCore(device="cpu").fit(brick.train[:3], progress=False)
    assert len(model.calibration_scores) == 3 and model.threshold is not None


def test_single_image_is_uncalibrated(brick):
    model = PatchCore(device="cpu").fit(brick.train[:1], progress=False)
    p = model.predict(brick.test[0].path)[0]
    assert model.threshold is None and p.is_anomalous is None and p.verdict == "uncalibrated"


def test_explain_points_to_a_training_patch(fitted, brick):
    item = next(t for t in brick.test if t.defect == "hole")
    ex = fitted.explain(item.path)
    p = fitted.predict(item.path)[0]
    assert ex.distance == pytest.approx(p.score, rel=1e-5)  # the most anomalous patch
    assert ex.train_name == str(brick.train[ex.train_index])
    assert 0 <= ex.train_row < 28 and 0 <= ex.train_col < 28
    # The named training patch really is at that distance.
    feats = fitted.extract([item.path])[0, ex.row, ex.col]
    train = fitted.extract([brick.train[ex.train_index]])[0, ex.train_row, ex.train_col]
    assert torch.linalg.vector_norm(feats - train).item() == pytest.approx(ex.distance, rel=1e-3)
    with pytest.raises(ValueError, match="outside"):
        fitted.explain(item.path, 99, 0)


def test_save_load_same_results(fitted, brick, tmp_path):
    path = tmp_path / "m.safetensors"
    patchcore_core.save(fitted, path)
    loaded = patchcore_core.load(path, device="cpu")
    paths = [t.path for t in brick.test[:4]]
    a, b = fitted.predict(paths), loaded.predict(paths)
    for x, y in zip(a, b):
        assert x.score == pytest.approx(y.score, rel=1e-6)
        np.testing.assert_allclose(x.anomaly_map, y.anomaly_map, rtol=1e-5)
    assert loaded.threshold == fitted.threshold and loaded.config == fitted.config
    assert loaded.explain(paths[0]) == fitted.explain(paths[0])
    assert not list(tmp_path.glob("*.tmp"))  # written via a temp file, then renamed


def test_truncated_model_file(fitted, tmp_path):
    path = tmp_path / "m.safetensors"
    patchcore_core.save(fitted, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        patchcore_core.load(path)


def test_foreign_files(tmp_path):
    from safetensors.torch import save_file

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x89PNG not a model")
    with pytest.raises(ModelFileError):
        patchcore_core.load(junk)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, other)
    with pytest.raises(ModelFileError, match="not a PatchCore model"):
        patchcore_core.load(other)
    with pytest.raises(ModelFileError, match="no such"):
        patchcore_core.load(tmp_path / "missing.safetensors")


def test_model_of_another_format_version(fitted, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    patchcore_core.save(fitted, path)
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["patchcore"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["format_version"] = FORMAT_VERSION + 1
    save_file(tensors, path, metadata={"patchcore": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="format version"):
        patchcore_core.load(path)


@pytest.mark.parametrize("ratio", [0.0, -1.0, 1.01])
def test_bad_coreset_ratio(ratio):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        PatchCoreConfig(coreset_ratio=ratio)


def test_unknown_backbone_in_config():
    with pytest.raises(BackboneError, match="efficientnet_lite0"):
        PatchCore(backbone="nope")


def test_random_and_full_banks(brick):
    full, rand = fit_small(brick, coreset="none"), fit_small(brick, coreset="random")
    assert len(full.bank) == 4 * 28 * 28 and len(rand.bank) == round(0.1 * 4 * 28 * 28)


def test_unfold_aggregation_fits_saves_and_finds_defects(brick, tmp_path):
    model = PatchCore(device="cpu", aggregation="unfold").fit(brick.train[:6], progress=False)
    assert model.bank.features.shape[1] == 1024  # (40 + 112) x 9 values, pooled to 1024
    path = tmp_path / "unfold.safetensors"
    patchcore_core.save(model, path)
    again = patchcore_core.load(path, device="cpu")
    assert again.config.aggregation == "unfold"
    good = [t.path for t in brick.test if not t.is_anomalous][:2]
    bad = [t.path for t in brick.test if t.is_anomalous][:4]
    scores = again.score(good + bad)[0]
    torch.testing.assert_close(scores, model.score(good + bad)[0])
    assert scores[2:].min() > scores[:2].max()
    with pytest.raises(ValueError, match="aggregation must be one of mean, unfold"):
        PatchCoreConfig(aggregation="max")


def test_torch_and_faiss_search_agree(brick):
    a, b = fit_small(brick, knn_backend="faiss"), fit_small(brick, knn_backend="torch")
    sa, sb = a.predict(brick.test[-1].path)[0], b.predict(brick.test[-1].path)[0]
    np.testing.assert_allclose(sa.patch_scores, sb.patch_scores, rtol=1e-3, atol=1e-3)


def test_reweighting_changes_only_the_image_score(brick):
    plain, rew = fit_small(brick), fit_small(brick, reweight_neighbours=3)
    a, b = plain.predict(brick.test[-1].path)[0], rew.predict(brick.test[-1].path)[0]
    np.testing.assert_allclose(a.patch_scores, b.patch_scores)
    assert 0 < b.score <= a.score


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(brick):
    cpu, gpu = fit_small(brick), fit_small(brick, device="cuda")
    assert gpu.bank.features.is_cuda
    a, b = cpu.predict(brick.test[-1].path)[0], gpu.predict(brick.test[-1].path)[0]
    assert a.score == pytest.approx(b.score, rel=1e-2)


def test_state_dict_round_trip_predicts_the_same(fitted, brick):
    tensors, metadata = fitted.state_dict()
    assert all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in tensors.values())
    json.dumps(metadata)  # plain JSON, nothing else
    again = PatchCore.from_state_dict(tensors, metadata, device="cpu")
    path = brick.test[-1].path
    np.testing.assert_allclose(again.predict(path)[0].anomaly_map, fitted.predict(path)[0].anomaly_map)
    assert again.threshold == fitted.threshold and again.train_names == fitted.train_names


def test_serialization_knows_nothing_of_the_model():
    import ast
    from pathlib import Path

    import patchcore_core.io.model_file as ser

    tree = ast.parse(Path(ser.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.endswith("model") for m in imported), imported
    assert "_require_fitted" not in Path(ser.__file__).read_text()


def test_model_file_of_the_previous_layout_still_loads(fitted, brick, tmp_path):
    """Files written before `resize` defaulted to None store the resolved 256."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"
    patchcore_core.save(fitted, path)
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["patchcore"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["config"]["resize"] is None
    meta["config"]["resize"] = 256
    save_file(tensors, path, metadata={"patchcore": json.dumps(meta)})
    old = patchcore_core.load(path, device="cpu")
    assert old.config.resize == 256 and old.preprocess.resize == 256
    np.testing.assert_allclose(old.predict(brick.test[0].path)[0].score,
                               fitted.predict(brick.test[0].path)[0].score, rtol=1e-5)


def test_resize_is_decided_by_the_config():
    assert PatchCoreConfig().resize is None and PatchCoreConfig().resize_to == 256
    assert PatchCoreConfig(image_size=320).resize_to == round(320 * 256 / 224)
    assert PatchCoreConfig(image_size=320, resize=400).resize_to == 400
    with pytest.raises(ValueError, match="image_size <= resize"):
        PatchCoreConfig(image_size=300, resize=256)
    assert PatchCore(image_size=160, device="cpu")._make_preprocess("crop").resize == round(160 * 256 / 224)


def test_prepare_chooses_the_preprocessing_as_fit_does():
    from PIL import Image

    square, wide = Image.new("RGB", (64, 64)), Image.new("RGB", (200, 64))
    model = PatchCore(device="cpu")
    assert model.prepare([square, square]).preprocess.mode == "crop"
    assert model.prepare([square, wide]).preprocess.mode == "squash"
    assert PatchCore(device="cpu", crop_mode="crop").prepare([wide]).preprocess.mode == "crop"
    assert model.extract([wide]).shape[1:3] == (28, 28)  # features without fitting


@pytest.mark.parametrize("field,value", [("coreset", "kmeans"), ("crop_mode", "pad"),
                                         ("knn_backend", "annoy"), ("upsample", "cubic")])
def test_every_choice_is_checked_by_the_config(field, value):
    with pytest.raises(ValueError, match=f"{field} must be one of"):
        PatchCoreConfig(**{field: value})


def test_a_setting_error_names_its_field_and_survives_pickling():
    """A Ray task's error travels pickled: SettingError must come back whole (it did not)."""
    import pickle

    from patchcore_core.pipeline.config import SettingError

    with pytest.raises(SettingError) as info:
        PatchCoreConfig(image_size=16)
    again = pickle.loads(pickle.dumps(info.value))
    assert again.field == info.value.field == "image_size" and str(again) == str(info.value)
