"""The notebook helpers of patchcore_core.teaching and the sweeps' cache, on the built-in brick data."""

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

import patchcore_core.evaluation.category as evaluation
from patchcore_core.data.builtin import DEFECTS, N_PER_DEFECT, N_TEST_GOOD
from patchcore_core.pipeline.coreset import covering_radius, greedy_coreset
from patchcore_core.teaching import coreset_plots as tcoreset
from patchcore_core.teaching import evaluation_plots as tevaluation
from patchcore_core.teaching import own_data, sweeps
from patchcore_core.teaching import patch_features as features
from patchcore_core.teaching import scoring_plots as tscoring
from patchcore_core.util.images import DataError
from patchcore_core.util.tables import format_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def test_feature_maps_and_geometry(fitted, brick):
    maps = features.feature_maps(fitted, brick.train[0])
    assert list(maps) == list(fitted.layers)
    geo = features.layer_geometry(fitted, brick.train[0])
    assert [g["stride"] for g in geo] == [8, 16]
    assert geo[0]["grid"] == tuple(fitted.grid)


def test_receptive_field_grows_with_depth_and_aggregation(fitted, brick):
    img = brick.train[0]
    shallow = features.rf_extent(features.receptive_field(fitted, img, "blocks.2"))
    deep = features.rf_extent(features.receptive_field(fitted, img, "blocks.4"))
    wider = features.rf_extent(features.receptive_field(fitted, img, "blocks.2", neighbourhood=3))
    assert 8 < shallow[0] < deep[0] <= 224
    assert wider[0] >= shallow[0] + 8 * 2 - 1  # two more cells of stride 8
    with pytest.raises(ValueError):
        features.receptive_field(fitted, img, "nope")


def test_pca_rgb_is_deterministic_and_spans_colours():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 6, 7, 10, generator=g)
    rgb = features.pca_rgb(f)
    assert rgb.shape == (2, 6, 7, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, features.pca_rgb(f))
    assert rgb.reshape(-1, 3).min(0).max() < 30 and rgb.reshape(-1, 3).max(0).min() > 220
    # The first component of a rank-1 cloud carries its ordering.
    line = torch.linspace(-1, 1, 20)[:, None] * torch.tensor([1.0, 2.0, 0.5])
    red = features.pca_rgb(line)[:, 0].astype(int)
    assert np.all(np.diff(red) >= 0) or np.all(np.diff(red) <= 0)


def test_upsample_nearest_repeats_cells():
    grid = np.arange(4).reshape(2, 2)
    up = features.upsample_nearest(grid, 4)
    assert np.array_equal(up, np.kron(grid, np.ones((2, 2), dtype=int)))


def test_layer_view_aggregation_smooths(fitted, brick):
    v1 = features.layer_view(fitted, brick.train[0], "blocks.2", 1)
    v3 = features.layer_view(fitted, brick.train[0], "blocks.2", 3)
    assert torch.equal(v1["raw"], v1["aggregated"])
    assert v3["smoothness"] < v1["smoothness"]
    assert v3["rgb"].shape == (28, 28, 3) and len(v3["channels"]) == 4
    fig = features.plot_layer_view(fitted, brick.train[0], "blocks.4", 3)
    assert "blocks.4" in fig._suptitle.get_text()
    plt.close(fig)


def test_bank_footprint():
    fp = tcoreset.bank_footprint(2, (28, 28), 1024)
    assert fp["patches"] == 1568 and fp["megabytes"] == pytest.approx(1568 * 4096 / 2**20)


def test_radius_curves_greedy_covers_better_than_random():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(500, 8, generator=g), 8 + torch.randn(5, 8, generator=g)])
    r = tcoreset.radius_curves(x, [5, 20, 50])
    assert r["counts"] == [5, 20, 50]
    assert all(a >= b - 1e-5 for a, b in zip(r["greedy"], r["greedy"][1:]))
    assert r["greedy"][-1] < r["random"][-1]
    assert r["greedy"][0] == pytest.approx(
        covering_radius(x, greedy_coreset(x, count=5).indices))


def test_coreset_trial_scores_like_the_model(fitted, brick):
    from patchcore_core.evaluation.metrics import image_auroc

    train = fitted.extract(brick.train[:6])
    test = fitted.extract([t.path for t in brick.test])
    labels = [int(t.is_anomalous) for t in brick.test]
    full = tcoreset.coreset_trial(train, test, labels, 1.0)
    small = tcoreset.coreset_trial(train, test, labels, 0.05, "random")
    assert full["size"] == 6 * 28 * 28 and full["covering_radius"] < 0.5  # 0 up to cdist rounding
    assert small["size"] == round(0.05 * full["size"]) and small["covering_radius"] > 0
    # A bank of all patches: each test score is the max over patches of the NN distance.
    d = torch.cdist(test.reshape(-1, test.shape[-1]), train.reshape(-1, train.shape[-1])).amin(1)
    assert np.allclose(full["scores"], d.view(len(labels), -1).amax(1).numpy(), rtol=1e-3)
    assert full["image_auroc"] == pytest.approx(image_auroc(labels, full["scores"]))
    with pytest.raises(ValueError):
        tcoreset.coreset_trial(train, test, labels, 0.1, "kmeans")


def test_defect_patches():
    mask = np.zeros((224, 224), bool)
    mask[:16, :16] = True
    m = tcoreset.defect_patches(mask, (28, 28))
    assert m.shape == (28, 28) and m.sum() == 4 and m[:2, :2].all()


def test_embed_2d_pca():
    x = np.random.default_rng(0).normal(size=(50, 5))
    y = tcoreset.embed_2d(x, "pca")
    assert y.shape == (50, 2)
    with pytest.raises(ValueError):
        tcoreset.embed_2d(x, "tsne")


def test_eq7_breakdown_matches_the_package(fitted, brick):
    bad = next(t for t in brick.test if t.is_anomalous)
    eq = tscoring.eq7_breakdown(fitted, bad.path, b=3)
    assert len(eq["neighbours"]) == 3 and eq["neighbours"][0] == eq["m_star"]
    assert eq["distances"][0] == pytest.approx(eq["s_star"], rel=1e-4)
    assert sum(eq["softmax"]) == pytest.approx(1.0)
    assert 0 <= eq["weight"] <= 1
    assert eq["score"] == pytest.approx(eq["weight"] * eq["s_star"], rel=1e-6)
    # The same image scored by the model with Eq. 7 switched on (same bank).
    tensors, meta = fitted.state_dict()
    meta["config"]["reweight_neighbours"] = 3
    reweighted = type(fitted).from_state_dict(tensors, meta, device="cpu")
    assert eq["score"] == pytest.approx(reweighted.predict([bad.path])[0].score, rel=1e-4)
    pred = fitted.predict([bad.path])[0]
    assert eq["s_star"] == pytest.approx(pred.score, rel=1e-4)


def test_map_stages():
    p = np.zeros((4, 4), np.float32)
    p[1, 2] = 1
    st = tscoring.map_stages(p, 32, 2.0)
    assert st["nearest"].shape == st["bilinear"].shape == st["smoothed"].shape == (32, 32)
    assert st["nearest"].max() == 1 and st["smoothed"].max() < st["bilinear"].max()
    assert st["smoothed"].sum() == pytest.approx(st["bilinear"].sum(), rel=0.05)


def test_plot_explanation(fitted, brick):
    bad = next(t for t in brick.test if t.is_anomalous)
    fig = tscoring.plot_explanation(fitted, bad.path)
    assert len(fig.axes) >= 4 and "nearest normal" in fig.axes[2].get_title()
    plt.close(fig)


def test_per_defect_table_and_worst_failures():
    defects = ["good", "good", "hole", "hole", "scratch"]
    scores = [1.0, 3.0, 5.0, 2.5, 4.0]
    rows = tevaluation.per_defect_table(defects, scores, threshold=2.0)
    assert [r["defect"] for r in rows] == ["good", "hole", "scratch"]
    assert rows[0]["flagged"] == 0.5 and rows[1]["flagged"] == 1.0
    worst = tevaluation.worst_failures([0, 0, 1, 1, 1], scores, threshold=2.0, n=2)
    assert [w["index"] for w in worst] == [1, 3]
    assert worst[0]["kind"] == "false alarm" and worst[1]["kind"] == "closest defect"


def test_cached_evaluation_reads_its_cache(builtin_root, tmp_path, monkeypatch):
    calls = []
    import patchcore_core.evaluation.category as ev

    class Fake:
        metrics = {"image_auroc": 1.0, "aupro": float("nan")}

    monkeypatch.setattr(ev, "evaluate_category", lambda *a, **k: calls.append(k) or Fake())
    a = evaluation.cached_evaluation(builtin_root, "brick", cache_dir=tmp_path, coreset_ratio=0.05)
    b = evaluation.cached_evaluation(builtin_root, "brick", cache_dir=tmp_path, coreset_ratio=0.05)
    c = evaluation.cached_evaluation(builtin_root, "brick", cache_dir=tmp_path, coreset_ratio=0.1)
    assert len(calls) == 2 and not a["cached"] and b["cached"] and not c["cached"]
    assert a["aupro"] is None and b["image_auroc"] == 1.0
    files = list(tmp_path.glob("brick-*.json"))
    assert len(files) == 2 and json.loads(files[0].read_text())["key"]["category"] == "brick"


def test_sample_own_data(builtin_root, tmp_path):
    out = own_data.sample_own_data(tmp_path / "mine", builtin_root, "grass")
    assert len(list(out["good"].glob("*.png"))) == 24
    test = own_data.read_test_folder(out["test"])
    assert len(test.paths) == N_TEST_GOOD + N_PER_DEFECT * len(DEFECTS)
    assert test.n_good == N_TEST_GOOD and test.n_bad == N_PER_DEFECT * len(DEFECTS)


def _images(folder, names):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 8)).save(folder / name)


def test_test_folder_labels_come_from_sub_folders_never_names(tmp_path):
    _images(tmp_path / "t" / "good", ["scratch_1.png", "a.jpg"])  # a misleading name stays good
    _images(tmp_path / "t" / "dent", ["good_2.png"])              # and a defect named good_ stays bad
    _images(tmp_path / "t" / ".ipynb_checkpoints", ["x.png"])
    test = own_data.read_test_folder(tmp_path / "t")
    assert [(p.parent.name, p.name, bool(b)) for p, b in zip(test.paths, test.is_bad)] == [
        ("dent", "good_2.png", True), ("good", "a.jpg", False), ("good", "scratch_1.png", False)]
    assert "dent/ 1" in test.source
    _images(tmp_path / "only" / "good", ["1.png"])
    assert own_data.read_test_folder(tmp_path / "only").n_good == 1  # all known to be good


@pytest.mark.parametrize("layout", [{"": ["good_1.png", "bad_1.png"]},             # flat: any names
                                    {"a": ["1.png"], "b": ["2.png"]},               # no good/
                                    {"": ["0.png"], "good": ["1.png"], "x": ["2.png"]}])  # loose files too
def test_test_folder_without_a_labelled_layout_has_no_labels(tmp_path, layout):
    for sub, names in layout.items():
        _images(tmp_path / "t" / sub, names)
    test = own_data.read_test_folder(tmp_path / "t")
    assert test.is_bad is None and test.n_bad == 0 and "no labels" in test.source
    assert len(test.paths) == sum(len(n) for n in layout.values())


def test_test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        own_data.read_test_folder(tmp_path / "missing")
    (tmp_path / "empty" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="empty: no images"):
        own_data.read_test_folder(tmp_path / "empty")


@pytest.mark.parametrize("n, held", [(1, 0), (2, 1), (4, 1), (5, 1), (24, 4), (200, 10)])
def test_hold_back_keeps_most_good_images_for_training(n, held):
    good = [Path(f"{i:03d}.png") for i in range(n)]
    train, test = own_data.hold_back(good)
    assert len(test.paths) == held and train + test.paths == good
    assert test.n_bad == 0 and test.n_good == held


def test_plot_predictions_and_markdown(fitted, brick):
    paths = [t.path for t in brick.test[:3]]
    fig = tevaluation.plot_predictions(fitted, paths, fitted.predict(paths), titles=["a", "b", "c"], ncols=2)
    assert "score" in fig.axes[0].get_title()
    plt.close(fig)
    rows = [{"a": 1, "b": 0.12345}, {"a": 2, "b": 123456.0}, {"a": 3, "b": float("nan")}]
    md = format_table(rows, markdown=True)
    assert md.splitlines()[0] == "| a | b |" and "0.123" in md and "123,456" in md and "n/a" in md
    plain = format_table(rows, ["b", "a"]).splitlines()
    assert plain[0].split() == ["b", "a"] and set(plain[1]) <= {"-", " "} and len(plain) == 5


def test_plot_sweep_numeric_categorical_and_failed_rows():
    rows = [{"r": 0.01, "image_auroc": 0.9, "pixel_auroc": 0.8, "aupro": None, "fit_seconds": 1.0},
            {"r": 0.1, "image_auroc": 1.0, "pixel_auroc": 0.9, "aupro": 0.7, "fit_seconds": 2.0}]
    fig = sweeps.plot_sweep(rows, "r", "ratio", logx=True)
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)
    rows = [{"b": "lite0", "image_auroc": 1.0, "pixel_auroc": 1.0, "aupro": 1.0, "fit_seconds": 1.0},
            {"b": "lite1", "error": "not installed"}]
    fig = sweeps.plot_sweep(rows, "b", "backbone")
    assert "failed: lite1" in fig._suptitle.get_text()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["lite0"]
    plt.close(fig)


def test_plot_sweep_by_group_draws_one_line_per_group_and_metric():
    rows = [{"r": r, "s": s, "image_auroc": 0.5 + r, "pixel_auroc": 0.6 + r, "aupro": 0.4 + r,
             "fit_seconds": r} for s in ("greedy", "random") for r in (0.01, 0.1)]
    fig = sweeps.plot_sweep(rows, "r", "sampling", logx=True, by="s")
    acc, cost = fig.axes[:2]
    labels = [line.get_label() for line in acc.get_lines()]
    metrics = ("image_auroc", "pixel_auroc", "aupro")
    assert labels == [f"{m}, {s}" for s in ("greedy", "random") for m in metrics]
    greedy_px = acc.get_lines()[1]
    assert list(greedy_px.get_xdata()) == [0.01, 0.1] and list(greedy_px.get_ydata()) == [0.61, 0.7]
    assert [line.get_label() for line in cost.get_lines()] == ["greedy", "random"]
    plt.close(fig)


def test_zoom_box_stays_square_at_the_border():
    from patchcore_core.util.viz import zoom_box

    img = np.arange(224 * 224 * 3, dtype=np.uint32).reshape(224, 224, 3).astype(np.uint8)
    inner = zoom_box(img, (100, 100, 108, 108), pad=8)
    corner = zoom_box(img, (0, 0, 8, 8), pad=8)
    assert inner.shape == corner.shape == (24, 24, 3)
    assert np.array_equal(inner, img[92:116, 92:116])
    assert zoom_box(img, (0, 0, 8, 8), pad=8, size=96).shape == (96, 96, 3)


def test_mean_over_seeds_averages_numbers_and_keeps_the_spread():
    runs = [{"backbone": "lite0", "aupro": 0.8, "n_train": 24, "cached": True},
            {"backbone": "lite0", "aupro": 0.9, "n_train": 24, "cached": False}]
    row = evaluation.mean_over_seeds(runs)
    assert row["backbone"] == "lite0" and row["seeds"] == 2 and row["cached"] is False
    assert row["aupro"] == pytest.approx(0.85) and row["aupro_std"] == pytest.approx(0.0707, abs=1e-4)
    assert row["n_train"] == 24 and isinstance(row["n_train"], int) and row["n_train_std"] == 0
    assert evaluation.mean_over_seeds(runs[:1])["aupro_std"] == 0.0
    assert evaluation.mean_over_seeds([runs[0], {"error": "not installed"}]) == {"error": "not installed"}


def test_plot_sweep_draws_error_bars_for_rows_with_a_spread():
    rows = [{"r": r, "image_auroc": 0.9, "image_auroc_std": 0.05, "pixel_auroc": 0.8, "aupro": 0.7,
             "fit_seconds": 1.0} for r in (0.01, 0.1)]
    fig = sweeps.plot_sweep(rows, "r", "ratio", logx=True)
    bars = fig.axes[0].containers
    assert len(bars) == 1 and bars[0].get_label() == "image_auroc"
    plt.close(fig)


def test_projection_distortion_concentrates_around_one_and_widens_with_fewer_dims():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 152, generator=g)
    out = tcoreset.projection_distortion(x, dims=(128, 32, 16, 152), n_pairs=3000, seed=0)
    assert set(out) == {128, 32, 16, 152}
    assert np.allclose(out[152], 1.0, atol=1e-5)  # no projection at the features' own width
    spread = {d: float(np.std(out[d])) for d in (128, 32, 16)}
    assert spread[128] < spread[32] < spread[16]
    for d in (128, 32, 16):  # JL: mean near 1, spread near 1 / sqrt(2 d)
        assert abs(np.mean(out[d]) - 1) < 0.05
        assert 0.5 / np.sqrt(2 * d) < spread[d] < 2 / np.sqrt(2 * d)


def _fake_category(n_good, per_kind):
    from types import SimpleNamespace

    from patchcore_core.data.mvtec import TestItem

    test = [TestItem(Path(f"good{i}.png"), "good", None) for i in range(n_good)]
    for kind, n in per_kind.items():
        test += [TestItem(Path(f"{kind}{i}.png"), kind, Path(f"{kind}{i}_mask.png")) for i in range(n)]
    return SimpleNamespace(test=test, defects=sorted(per_kind))


@pytest.mark.parametrize("n_good,per_kind", [
    (12, {"hole": 4, "patch": 4, "scratch": 4, "stain": 4}),  # built-in: 4 good + 8 = 2 rows of 6
    (3, {"bent": 3, "broken": 2, "glue": 2, "metal_contamination": 2, "thread": 2}),  # MVTec grid, few goods
    (6, {"colour": 17}),  # one defect type: one row
    (191, {"blowhole": 115, "break": 85, "crack": 57, "fray": 32, "uneven": 103}),
])
def test_overview_items_show_at_most_two_per_defect_type_and_fill_whole_rows(n_good, per_kind):
    from patchcore_core.teaching.problem import overview_items

    items, ncols = overview_items(_fake_category(n_good, per_kind), per_defect=2)
    kinds = [t.defect for t in items]
    assert all(kinds.count(k) == min(2, n) for k, n in per_kind.items())
    assert 2 <= kinds.count("good") <= 6
    assert kinds[:kinds.count("good")] == ["good"] * kinds.count("good"), "good images first"
    assert len(items) % ncols == 0, f"{len(items)} images in rows of {ncols} leave an empty band"


def test_plot_overview_draws_each_image_with_its_mask_contour(brick):
    from patchcore_core.teaching.problem import overview_items, plot_overview

    items, ncols = overview_items(brick)
    fig = plot_overview(items, ncols, title="brick")
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == len(items)
    with_contour = [ax for ax in drawn if ax.collections]  # contour sets are collections
    assert len(with_contour) == sum(t.is_anomalous for t in items)
    plt.close(fig)


def test_layer_pairs_take_the_deepest_stage_at_each_stride():
    strides = {"blocks.0": 2, "blocks.1": 4, "blocks.2": 8, "blocks.3": 16, "blocks.4": 16, "blocks.5": 32,
               "blocks.6": 32}
    assert features.layer_pairs(strides) == {"stride 4 + 8": ("blocks.1", "blocks.2"),
                                             "stride 8 + 16": ("blocks.2", "blocks.4"),
                                             "stride 16 + 32": ("blocks.4", "blocks.6")}
    assert features.layer_pairs({"layer1": 4, "layer2": 8}) == {"stride 4 + 8": ("layer1", "layer2")}
    measured = features.stage_strides("efficientnet_lite0")
    assert measured["blocks.2"] == 8 and measured["blocks.4"] == 16 and measured["blocks.6"] == 32
