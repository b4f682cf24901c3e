"""An ensemble goes wherever a single model goes: the commands that take a model
(``benchmark``, ``export``), every endpoint of the demo served with one, and the
notebooks' teaching helpers. (``fit``, ``predict`` and ``evaluate`` with an ensemble
are in test_cli.py.) The helpers that show one backbone's insides say so, by name,
instead of failing on a missing attribute."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import patchcore_core
from patchcore_core.cli.main import main

BACKBONES = "efficientnet_lite0+efficientnet_lite1"
# Tiny images and a small bank: the point is the paths, not the figures.
SETTINGS = {"backbone": BACKBONES, "image_size": 96, "coreset_ratio": 0.05}
CLI_SETTINGS = ["--backbone", BACKBONES, "--image-size", "96", "--coreset-ratio", "0.05", "--device", "cpu",
                "--quiet"]


@pytest.fixture(scope="module")
def ensemble(brick):
    model = patchcore_core.PatchCoreEnsemble(device="cpu", **SETTINGS)
    return model.fit(brick.train[:6], progress=False)


@pytest.fixture(scope="module")
def ensemble_file(ensemble, tmp_path_factory):
    path = tmp_path_factory.mktemp("ensemble") / "ensemble.safetensors"
    patchcore_core.save(ensemble, path)
    return path


@pytest.fixture(scope="module")
def hole(brick):
    return str(next(t.path for t in brick.test if t.defect == "hole"))


# ------------------------------------------------------------------ commands
def test_benchmark_with_an_ensemble(builtin_root, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--data", str(builtin_root), "--category", "brick", "--out", str(out),
                 "--dataset", "other", "--shots", "6", "--seeds", "1", *CLI_SETTINGS]) == 0
    [row] = list(csv.DictReader(open(out / "results.csv")))
    assert row["backbone"] == BACKBONES and row["category"] == "brick" and int(row["n_train"]) == 6
    assert float(row["image_auroc"]) > 0.7
    assert f"Backbone {BACKBONES}" in (out / "results.md").read_text()


def test_export_refuses_an_ensemble_and_says_what_works(ensemble_file, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", "--model", str(ensemble_file), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert str(ensemble_file) in err and "ensemble of 2 backbones" in err and "single --backbone" in err
    assert not out.exists()


# ------------------------------------------------------------------ the demo
@pytest.fixture(scope="module")
def client(ensemble, brick, tmp_path_factory):
    from gradio_client import Client
    from servers import serve

    mp = pytest.MonkeyPatch()
    mp.setenv("PATCHCORE_CACHE", str(tmp_path_factory.mktemp("demo_cache")))
    try:
        with serve(ensemble, examples=[(str(brick.test[0].path), "good")],
                   fit_examples=[str(p) for p in brick.train[:4]], category="brick",
                   image_folders=[str(brick.train[0].parent)]) as url:
            yield Client(url, verbose=False)
    finally:
        mp.undo()


def test_demo_inspect_tab_with_an_ensemble(client, ensemble, hole):
    from gradio_client import handle_file

    overlay, region, plot, score, norm, verdict, message = client.predict(handle_file(hole), 1.0,
                                                                          api_name="/predict")
    assert Path(overlay).is_file() and Path(region).is_file() and plot is not None
    assert score == pytest.approx(ensemble.predict([hole])[0].score, rel=1e-3)
    assert verdict == "anomalous" and norm == pytest.approx(score / ensemble.threshold, rel=1e-2)
    region, plot, message = client.predict(2.0, api_name="/update_region")
    assert "2.00 x threshold" in message
    x, y, test_img, train_img, zoom, text, details = client.predict(api_name="/explain_most_anomalous")
    assert [m["backbone"] for m in details["members"]] == BACKBONES.split("+")
    assert Path(train_img).is_file() and "training image" in text
    test_img, train_img, zoom, text, details = client.predict(handle_file(hole), 48, 48, api_name="/explain")
    assert (details["row"], details["col"]) == ensemble.pixel_to_patch(48, 48)
    assert details["train_name"] in [Path(n).name for n in ensemble.train_names]


def test_demo_model_card_batch_threshold_and_compare_tabs_with_an_ensemble(client, ensemble, brick, hole):
    from gradio_client import handle_file

    line, card_md, card = client.predict(api_name="/model_card")
    assert card["backbone"] == BACKBONES and card["n_train"] == 6 and "members" in card_md.lower()
    table, csv_file, zip_file, summary = client.predict([handle_file(hole), handle_file(str(brick.train[0]))],
                                                        api_name="/batch")
    assert [r[3] for r in table["data"]] == ["anomalous", "normal"] and "2 files" in summary
    *_, summary, numbers = client.predict("brick", None, api_name="/evaluate_set")
    assert numbers["calibrated_threshold"] == pytest.approx(ensemble.threshold)
    assert numbers["image_auroc"] > 0.7 and "AUROC" in summary
    *_, summary, low = client.predict(0.0, api_name="/set_threshold")
    assert low["recall"] == 1.0
    *_, msg = client.predict(handle_file(hole), "coreset 10% (greedy)", "coreset 1% (greedy)", None,
                             api_name="/compare")
    assert "Both fitted on the same" in msg


def test_demo_saves_an_ensemble_for_download(ensemble, tmp_path):
    from demo import logic

    path = logic.save_for_download(ensemble, folder=tmp_path)
    again = patchcore_core.load(path, device="cpu")
    assert isinstance(again, patchcore_core.PatchCoreEnsemble)
    assert again.train_names == [Path(n).name for n in ensemble.train_names]


# ------------------------------------------------------- the notebooks' helpers
def test_teaching_explanation_plot_with_an_ensemble(ensemble, hole):
    import matplotlib

    matplotlib.use("Agg")
    from patchcore_core.teaching import evaluation_plots, scoring_plots

    fig = scoring_plots.plot_explanation(ensemble, hole)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("nearest normal" in t for t in titles)
    assert evaluation_plots.plot_predictions(ensemble, [hole], ensemble.predict([hole])) is not None


@pytest.mark.parametrize("helper", ["feature_maps", "layer_view", "receptive_field", "eq7_breakdown"])
def test_one_backbone_helpers_name_the_members_to_choose_from(ensemble, hole, helper):
    from patchcore_core.teaching import patch_features, scoring_plots

    fn = getattr(patch_features, helper, None) or getattr(scoring_plots, helper)
    args = {"layer_view": (ensemble, hole, "blocks.2"), "receptive_field": (ensemble, hole, "blocks.2")}
    with pytest.raises(TypeError, match=r"ensemble of efficientnet_lite0 \+ efficientnet_lite1.*"
                                        r"model\.members\[0\]"):
        fn(*args.get(helper, (ensemble, hole)))
    # ... and a member works
    member_args = (ensemble.members[0], *args.get(helper, (ensemble, hole))[1:])
    assert fn(*member_args) is not None


def test_the_ensemble_card_survives_json(ensemble):
    from demo.models import model_card

    assert json.loads(json.dumps(model_card(ensemble)))["backbone"] == BACKBONES
