"""Two models side by side (``/compare``), examples that fit the loaded
model, the colour-scale switch, and a session's models freed when it ends."""

from __future__ import annotations

import dataclasses
import gc
import time
from pathlib import Path

import numpy as np
import pytest
from paths import ROOT

import patchcore_core
from demo import compare, logic, models


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def hole(brick):
    return str(next(t.path for t in brick.test if t.defect == "hole"))


def test_two_settings_on_one_scale(brick, hole):
    paths = [str(p) for p in brick.train[:6]]
    a, b = compare.fit_pair(paths, "coreset 10% (greedy)", "coreset 1% (greedy)")
    assert a.train_names == b.train_names == paths
    assert len(b.bank) < len(a.bank) and a.config.coreset_ratio == 0.1 and b.config.coreset_ratio == 0.01
    ia, ib, scale = compare.compare(a, b, hole)
    lo, hi = scale
    assert lo == pytest.approx(0.5 * min(a.threshold, b.threshold))
    assert hi >= 2 * max(a.threshold, b.threshold) and hi >= max(ia.anomaly_map.max(), ib.anomaly_map.max())
    # one scale: the same score gets the same colour in both overlays
    oa, ob = compare.overlay_on(ia, scale), compare.overlay_on(ib, scale)
    assert oa.shape == ob.shape == (224, 224, 3)
    fig = compare.compare_figure(ia, ib, scale, ("A", "B"))
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == 2 and {im.get_clim() for ax in maps for im in ax.images} == {scale}
    rows = compare.cards_side_by_side(models.model_card(a), models.model_card(b), ("A", "B"))
    assert rows[0]["A"] != rows[0]["B"]  # what differs comes first
    assert any(r["setting"] == "coreset_ratio" and (r["A"], r["B"]) == (0.1, 0.01) for r in rows)
    with pytest.raises(logic.UserError, match="unknown setting"):
        compare.fit_pair(paths, "coreset 10% (greedy)", "nonsense")
    with pytest.raises(logic.UserError, match="good images"):
        compare.fit_pair([], "coreset 10% (greedy)", "coreset 1% (greedy)")


def test_colour_scale_fixed_or_per_image(fitted, brick):
    good = logic.predict(fitted, str(next(t.path for t in brick.test if t.defect == "good")))
    assert good.scale[0] == pytest.approx(0.5 * fitted.threshold)
    per = dataclasses.replace(good, per_image=True)
    assert per.scale == (pytest.approx(good.anomaly_map.min()), pytest.approx(good.anomaly_map.max()))
    # a normal image stays dark on the fixed scale and is stretched to full brightness per image
    assert logic.overlay(per).max() > logic.overlay(good).max()


def test_examples_fit_the_loaded_model(fitted, brick, tmp_path):
    assert models.known_object(fitted) == "brick"  # .../brick/train/good/000.png
    assert models.known_object(fitted, "grass") == "grass"
    from demo.training_images import TrainingImages

    assert models.model_examples(fitted) == []  # a model's own paths are untrusted: only named folders
    own = models.model_examples(fitted, training_images=TrainingImages([brick.root]))
    assert own and all(Path(p).is_file() and "training image" in lbl for p, lbl in own)
    folder = tmp_path / "mine"
    folder.mkdir()
    for p in brick.train[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    assert [lbl for _, lbl in models.model_examples(fitted, folder)] == [p.stem for p in brick.train[:2]]
    with pytest.raises(logic.UserError):
        models.model_examples(fitted, tmp_path / "missing")
    elsewhere = logic.save_for_download(fitted, tmp_path / "dl")  # names files only: nothing reachable

    loaded = patchcore_core.load(elsewhere, device="cpu")
    assert models.known_object(loaded) is None and models.model_examples(loaded) == []


def test_cli_examples_folder_must_exist(fitted, tmp_path):
    import subprocess
    import sys

    model = tmp_path / "m.safetensors"
    patchcore_core.save(fitted, model)
    cmd = [sys.executable, "-m", "demo", "--model", str(model), "--examples", str(tmp_path / "no")]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 2 and "--examples" in res.stderr and "Traceback" not in res.stderr


# --------------------------------------------------------------- the app
@pytest.fixture(scope="module")
def served(fitted, brick):
    from servers import serving

    mp = pytest.MonkeyPatch()
    mp.setattr("demo.ui.SESSION_TTL_S", 3.0)  # sessions expire fast here
    try:
        with serving(fitted, examples=[(str(brick.test[0].path), "good")], category="brick",
                     fit_examples=[str(p) for p in brick.train[:4]]) as (url, demo):
            yield url, demo
    finally:
        mp.undo()


def test_compare_endpoint(served, hole):
    from gradio_client import Client, handle_file

    c = Client(served[0], verbose=False)
    a, b = "coreset 10% (greedy)", "coreset 10% (random)"
    over_a, over_b, plot, cards_md, cards, msg = c.predict(handle_file(hole), a, b, None, api_name="/compare")
    assert Path(over_a).is_file() and Path(over_b).is_file() and plot is not None
    assert cards[a]["coreset"] == "greedy" and cards[b]["coreset"] == "random"
    assert cards[a]["n_train"] == cards[b]["n_train"] == 4  # the same (built-in) good images
    assert "One colour scale" in msg and "| setting |" in cards_md
    *_, msg = c.predict(handle_file(hole), a, a, None, api_name="/compare")
    assert "two different settings" in msg


def test_page_says_what_the_model_knows_and_the_scale_switch(served, hole):
    from gradio_client import Client, handle_file

    c = Client(served[0], verbose=False)
    line = c.predict(api_name="/model_card")[0]
    assert "It knows **brick** images" in line
    fixed = c.predict(handle_file(hole), 1.0, api_name="/predict")
    per_image, plot = c.predict("per image", 1.0, api_name="/set_colour_scale")
    assert Path(per_image).is_file() and per_image != fixed[0]
    again = c.predict(handle_file(hole), 1.0, api_name="/predict")  # the session keeps the choice
    assert Path(again[0]).read_bytes() == Path(per_image).read_bytes()


def test_a_sessions_models_are_freed(served, brick):
    """A closed page's models are dropped at once (demo.unload); an API
    session, which never closes, loses them after the state's time to live."""
    from gradio_client import Client, handle_file

    from demo.ui import Held, SessionRegistry

    class Request:
        session_hash = "abc"

    reg = SessionRegistry()
    held = reg.hold(Request(), model=np.zeros(3))
    assert isinstance(held, Held) and reg.live() == 1
    assert reg.release(Request()) == 1 and held == {} and reg.live() == 0

    url, demo = served
    sessions = demo.patchcore_context.sessions
    c = Client(url, verbose=False)
    message = c.predict([handle_file(str(p)) for p in brick.train[:2]], api_name="/fit")[0]
    assert "Fitted on 2 images" in message
    assert sessions.live() >= 1
    deadline = time.monotonic() + 30
    while sessions.live() and time.monotonic() < deadline:  # Gradio drops expired state every second
        time.sleep(0.5)
        gc.collect()
    assert sessions.live() == 0
