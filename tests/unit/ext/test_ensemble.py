"""The backbone ensemble: members' scores standardised by their own held-out
statistics, averaged; saved, loaded and served by the CLI like one model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import patchcore_core
from patchcore_core import PatchCore
from patchcore_core.cli.main import main
from patchcore_core.ext.ensemble import PatchCoreEnsemble, make_model
from patchcore_core.io.model_file import ModelFileError

PAIR = "efficientnet_lite0+efficientnet_lite1"
SMALL = {"image_size": 96, "coreset_ratio": 0.05, "device": "cpu"}


@pytest.fixture(scope="module")
def ensemble(brick):
    return make_model(backbone=PAIR, **SMALL).fit(brick.train[:12], progress=False)


def test_make_model_and_refusals():
    assert isinstance(make_model(backbone="efficientnet_lite0", device="cpu"), PatchCore)
    with pytest.raises(ValueError, match="ensemble"):
        PatchCore(backbone=PAIR)
    with pytest.raises(ValueError, match="two or more different"):
        PatchCoreEnsemble(backbone="efficientnet_lite0+efficientnet_lite0")
    with pytest.raises(ValueError, match="layers"):
        make_model(backbone=PAIR, layers=("blocks.2",))


def test_scores_are_the_mean_of_standardised_member_scores(ensemble, brick):
    images = [t.path for t in brick.test[:4]]
    z = []
    for m, (mu, sd) in zip(ensemble.members, ensemble.image_stats):
        assert mu == pytest.approx(np.mean(m.calibration_scores))
        assert sd == pytest.approx(np.std(m.calibration_scores, ddof=1))
        z.append((np.array([p.score for p in m.predict(images)]) - mu) / sd)
    got = [p.score for p in ensemble.predict(images)]
    assert got == pytest.approx(np.exp(np.mean(z, axis=0)).tolist(), rel=1e-4)
    # the combined held-out scores set the threshold, as for one model
    assert ensemble.threshold >= max(ensemble.calibration_scores)
    assert all(s > 0 for s in ensemble.pixel_stats[0])


def test_defects_score_above_good_images(ensemble, brick):
    preds = ensemble.predict([t.path for t in brick.test])
    good = [p.score for p, t in zip(preds, brick.test) if not t.is_anomalous]
    bad = [p.score for p, t in zip(preds, brick.test) if t.is_anomalous]
    assert np.mean(bad) > np.mean(good)
    assert preds[0].anomaly_map.shape == (96, 96)


def test_save_load_explain_and_card(ensemble, brick, tmp_path):
    path = patchcore_core.save(ensemble, tmp_path / "ens.safetensors")
    again = patchcore_core.load(path, device="cpu")
    assert isinstance(again, PatchCoreEnsemble) and again.threshold == ensemble.threshold
    img = brick.test[-1].path
    assert again.predict(img)[0].score == pytest.approx(ensemble.predict(img)[0].score, rel=1e-5)
    per_member = [m.explain(img) for m in again.members]  # one nearest normal patch per member
    assert len(per_member) == 2 and all(e.distance > 0 for e in per_member)
    assert again.explain(img) in per_member  # the member for which the patch is most unusual
    card = again.summary()
    assert card["backbone"] == PAIR and card["members"] == 2 and len(card["member_cards"]) == 2
    assert card["member_cards"][1]["backbone"] == "efficientnet_lite1"
    # a crafted statistic is refused, naming the field
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["patchcore"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["ensemble"]["image_stats"][0] = [1.0, 0.0]
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"patchcore": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="ensemble.image_stats"):
        patchcore_core.load(bad)


@pytest.mark.slow
def test_cli_fit_and_predict_an_ensemble(brick, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    assert main(["fit", "--images", str(brick.path / "train" / "good"), "--out", str(out), "--quiet",
                 "--backbone", PAIR, "--image-size", "96", "--coreset-ratio", "0.05", "--device", "cpu"]) == 0
    assert main(["predict", "--model", str(out), str(brick.test[0].path), "--quiet"]) == 0
    assert "normal" in capsys.readouterr().out or "anomalous" in capsys.readouterr().out


def test_demo_card_and_explain_per_member(ensemble, brick):
    from demo import explain, models

    card = models.model_card(ensemble)
    md = models.card_markdown(card)
    assert "Ensemble members" in md and "efficientnet_lite1 (" in md
    r = explain.explain(ensemble, brick.test[-1].path)
    assert [m["backbone"] for m in r.details["members"]] == ["efficientnet_lite0", "efficientnet_lite1"]
    assert "per backbone" in r.text and r.zoom.shape[0] == 96
