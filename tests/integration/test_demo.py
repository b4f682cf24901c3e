"""The demo: its pure functions, its command line, and the running app
through gradio_client (the browser test is in test_demo_browser.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from paths import ROOT
from PIL import Image

import patchcore_core
from demo import explain, logic, models


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Nothing a test does may touch the user's real cache."""
    monkeypatch.setenv("PATCHCORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def samples(brick):
    good = next(t.path for t in brick.test if t.defect == "good")
    bad = next(t.path for t in brick.test if t.defect == "hole")
    return str(good), str(bad)


@pytest.fixture
def bad_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    corrupt = tmp_path / "cut.png"
    buf = tmp_path / "whole.png"
    Image.new("RGB", (64, 64), (120, 60, 30)).save(buf)
    corrupt.write_bytes(buf.read_bytes()[:80])  # truncated PNG
    return {"text": str(text), "corrupt": str(corrupt)}


# ------------------------------------------------------------ pure functions
def test_predict_returns_the_documented_outputs(fitted, samples):
    insp = logic.predict(fitted, samples[0])
    assert insp.display.shape == (224, 224, 3) and insp.display.dtype == np.uint8
    assert insp.anomaly_map.shape == (224, 224)
    assert insp.score > 0 and insp.threshold == fitted.threshold
    assert insp.normalised_score == pytest.approx(insp.score / fitted.threshold)
    assert insp.verdict in ("normal", "anomalous")
    assert logic.overlay(insp).shape == (224, 224, 3)
    region, share = logic.region_image(insp, 1.0)
    assert region.shape == (224, 224, 3) and 0 <= share <= 1
    fig = logic.heatmap_figure(insp, 1.0)
    assert len(fig.axes) == 2  # the map and its colour bar
    assert "threshold" in logic.score_text(insp)


def test_defective_example_scores_above_a_good_one(fitted, samples):
    good, bad = (logic.predict(fitted, p) for p in samples)
    assert bad.score > good.score
    assert bad.verdict == "anomalous" and bad.normalised_score > 1


def test_region_follows_the_slider_without_the_model(fitted, samples):
    insp = logic.predict(fitted, samples[1])
    shares = [logic.region_image(insp, f)[1] for f in (0.5, 1.0, 2.0)]
    assert shares[0] >= shares[1] >= shares[2] and shares[1] > 0
    assert logic.region_mask(insp, 1.0).sum() == (insp.anomaly_map > fitted.threshold).sum()


def test_explain_returns_a_patch_of_a_training_image(fitted, samples):
    r = explain.explain(fitted, samples[1])  # most anomalous patch
    assert Path(fitted.train_names[r.details["train_index"]]).name == r.details["train_name"]
    assert Path(fitted.train_names[r.details["train_index"]]).is_file()
    assert r.details["distance"] > fitted.threshold
    assert r.test_image.shape == r.train_image.shape == (224, 224, 3)
    assert r.zoom.shape[0] == 96 and "training image" in r.text
    # a picked point: the patch under it
    x, y = 10, 200
    r2 = explain.explain(fitted, samples[1], x, y)
    assert (r2.details["row"], r2.details["col"]) == fitted.pixel_to_patch(x, y)
    x0, y0, x1, y1 = r2.details["box"]
    assert x0 <= x < x1 and y0 <= y < y1


@pytest.mark.parametrize("kind", ["text", "corrupt"])
def test_bad_upload_gives_a_clear_message(fitted, bad_files, kind):
    with pytest.raises(logic.UserError) as info:
        logic.predict(fitted, bad_files[kind])
    msg = str(info.value)
    assert Path(bad_files[kind]).name in msg and str(Path(bad_files[kind]).parent) not in msg
    assert "image" in msg


def test_missing_image_and_huge_image(fitted, tmp_path, monkeypatch):
    with pytest.raises(logic.UserError, match="No image"):
        logic.predict(fitted, None)
    import patchcore_core.util.images as data

    monkeypatch.setattr(data, "MAX_PIXELS", 1000)  # a 64 x 64 image is now "huge"
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(path)
    with pytest.raises(logic.UserError, match="limit"):
        logic.predict(fitted, path)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_greyscale_rgba_and_16_bit_images_work(fitted, samples, tmp_path, mode):
    img = Image.open(samples[1])
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), np.uint16) * 257)  # mode I;16
    else:
        img = img.convert(mode)
    path = tmp_path / f"x_{mode.replace(';', '')}.png"
    img.save(path)
    assert logic.predict(fitted, path).verdict == "anomalous"


def test_fit_skips_bad_files_and_names_them(brick, bad_files):
    model, skipped = logic.fit([str(p) for p in brick.train[:3]] + [bad_files["text"]])
    assert len(model.train_names) == 3 and model.threshold is not None
    assert len(skipped) == 1 and "notes.png" in skipped[0]
    with pytest.raises(logic.UserError, match="None of the files"):
        logic.fit([bad_files["text"]])
    with pytest.raises(logic.UserError, match="at least one"):
        logic.fit([])


def test_model_card_and_download(fitted, tmp_path):
    card = models.model_card(fitted)
    for key in ("backbone", "layers", "image_size", "memory_bank_size", "coreset_ratio", "threshold",
                "fit_seconds"):
        assert key in card
    md = models.card_markdown(card, "brick")
    assert "Memory bank size" in md and "Threshold" in md
    path = logic.save_for_download(fitted, tmp_path)
    assert path.endswith(".safetensors")

    assert len(patchcore_core.load(path, device="cpu").bank) == len(fitted.bank)


def test_downloads_get_own_folders_and_are_removed_at_exit():
    code = (
        "from pathlib import Path\n"
        "from demo import logic\n"
        "import torch\n"
        "class Model:\n"
        "    def state_dict(self): return {'w': torch.zeros(1)}, {}\n"
        "print(logic.save_for_download(Model()))\n"
        "print(logic.save_for_download(Model()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    first, second = (Path(line) for line in out.stdout.split())
    assert first != second and first.parent.parent == second.parent.parent  # one folder each ...
    assert first.parent.parent.name.startswith("patchcore-demo-")
    assert not first.parent.parent.exists()  # ... all removed when the demo's process ended


def test_default_model_is_loaded_from_the_cache(fitted, builtin_root, tmp_path):
    path = models.default_model_path("brick", tmp_path)
    patchcore_core.save(fitted, path)
    said = []
    model = models.load_or_build_default("brick", device="cpu", cache_dir=tmp_path, say=said.append)
    assert len(model.bank) == len(fitted.bank) and "loaded" in said[0]
    with pytest.raises(logic.UserError, match="unknown built-in category"):
        models.load_or_build_default("marble", cache_dir=tmp_path)


@pytest.mark.slow
def test_default_model_is_fitted_once_then_cached(tmp_path):
    said = []
    models.load_or_build_default("gravel", device="cpu", cache_dir=tmp_path, say=said.append)
    path = models.default_model_path("gravel", tmp_path)
    assert path.is_file() and any("fitted" in s for s in said)
    path.write_bytes(b"garbage")  # a damaged cache is refitted, not fatal
    said.clear()
    models.load_or_build_default("gravel", device="cpu", cache_dir=tmp_path, say=said.append)
    assert any("refitting" in s for s in said)


def test_builtin_examples_are_good_and_defective(tmp_path):
    ex = models.builtin_examples("brick", cache_dir=tmp_path)
    labels = [lbl for _, lbl in ex]
    assert "good 1" in labels and "hole" in labels and all(Path(p).is_file() for p, _ in ex)


# ----------------------------------------------------------------- the CLI
def test_cli_help_is_instant_and_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "demo", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=30).stdout
    for opt in ("--host", "--port", "--model", "--category"):
        assert opt in out


def test_cli_refuses_a_bad_model_file_clearly(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nope")
    res = subprocess.run([sys.executable, "-m", "demo", "--model", str(bad)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "bad.safetensors" in res.stderr and "Traceback" not in res.stderr


def test_cli_stops_cleanly_on_sigterm(fitted, tmp_path):
    import signal

    from servers import free_port, wait_until_answering

    model = tmp_path / "m.safetensors"
    patchcore_core.save(fitted, model)
    port = free_port()
    env = {**os.environ, "PATCHCORE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "demo", "--model", str(model), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            wait_until_answering(f"http://127.0.0.1:{port}/", proc, timeout_s=120)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}\n{proc.stdout.read() if proc.poll() is not None else ''}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # a normal exit: the exit handlers ran
    finally:
        proc.kill()


def test_import_is_light():
    code = ("import sys, demo, demo.app; "
            "print('torch' in sys.modules, 'patchcore_core.pipeline.patchcore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "False"]


# --------------------------------------------------- the app, via gradio_client
@pytest.fixture(scope="module")
def app_url(fitted, brick):
    from servers import serve

    examples = [(str(t.path), t.defect) for t in brick.test[::3]]
    with serve(fitted, examples=examples, fit_examples=[str(p) for p in brick.train[:4]]) as url:
        yield url


@pytest.fixture
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def test_api_names_every_event(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/predict", "/explain", "/explain_most_anomalous", "/explain_click", "/update_region", "/fit",
            "/use_default_model", "/model_card", "/load_sample_images"} <= names


def test_api_predict_outputs_and_ordering(client, samples, fitted):
    from gradio_client import handle_file

    results = [client.predict(handle_file(p), 1.0, api_name="/predict") for p in samples]
    for overlay, region, plot, score, norm, verdict, message in results:
        assert Path(overlay).is_file() and Path(region).is_file() and plot is not None
        assert Image.open(overlay).size == (224, 224)
        assert norm == pytest.approx(score / fitted.threshold, abs=1e-2)
        assert verdict in ("normal", "anomalous") and "threshold" in message
    (_, _, _, good, _, _, _), (_, _, _, bad, _, bad_verdict, _) = results
    assert bad > good and bad_verdict == "anomalous"
    # the slider redraws the region of the last image, in this session
    region, plot, message = client.predict(2.5, api_name="/update_region")
    assert "2.50 x threshold" in message


def test_api_explain_returns_a_training_patch(client, samples, fitted):
    from gradio_client import handle_file

    test_img, train_img, zoom, text, details = client.predict(handle_file(samples[1]), 112, 112,
                                                              api_name="/explain")
    assert details["train_name"] in [Path(n).name for n in fitted.train_names]
    assert (details["row"], details["col"]) == fitted.pixel_to_patch(112, 112)
    assert Path(train_img).is_file() and Image.open(train_img).size == (224, 224)
    assert "training image" in text


def test_api_bad_upload_returns_a_message_not_a_crash(client, bad_files, samples):
    from gradio_client import handle_file

    for path in bad_files.values():
        *images, score, norm, verdict, message = client.predict(handle_file(path), 1.0, api_name="/predict")
        assert score is None and verdict == "error"
        assert Path(path).name in message and "Traceback" not in message
    # ... and the app still works afterwards
    assert client.predict(handle_file(samples[0]), 1.0, api_name="/predict")[3] > 0


def test_api_fit_names_the_files_it_cannot_read(client, brick, tmp_path):
    from gradio_client import handle_file

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    message, download, *_, card = client.predict([handle_file(str(notes))], api_name="/fit")
    assert "notes.txt" in message and download is None and card["n_train"] == len(brick.train)
    files = [handle_file(str(notes)), handle_file(str(brick.train[0]))]
    message, download, *_, card = client.predict(files, api_name="/fit")
    assert "Fitted on 1 image " in message and "notes.txt" in message and card["threshold"] is None


def test_api_session_fit_never_changes_the_shared_model(app_url, client, brick, samples, fitted):
    from gradio_client import Client, handle_file


    files = [handle_file(str(p)) for p in brick.train[:3]]
    message, download, model_line, card_md, card = client.predict(files, api_name="/fit")
    assert "Fitted on 3 images" in message and card["n_train"] == 3
    assert download.endswith(".safetensors")
    assert len(patchcore_core.load(download, device="cpu").train_names) == 3
    # this session now predicts with its own model ...
    _, _, _, score, *_ = client.predict(handle_file(samples[1]), 1.0, api_name="/predict")
    assert score != pytest.approx(logic.predict(fitted, samples[1]).score)
    # ... while another visitor still has the default one
    other = Client(app_url, verbose=False)
    assert other.predict(api_name="/model_card")[2]["n_train"] == len(brick.train)
    assert fitted.summary()["n_train"] == len(brick.train)
    assert client.predict(api_name="/use_default_model")[4]["n_train"] == len(brick.train)


def test_several_visitors_at_once(app_url, samples):
    from gradio_client import Client, handle_file

    clients = [Client(app_url, verbose=False) for _ in range(3)]
    scores, errors = {}, []

    def visit(i):
        try:
            scores[i] = clients[i].predict(handle_file(samples[i % 2]), 1.0, api_name="/predict")[3]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(scores) == 3
    assert scores[0] == pytest.approx(scores[2]) and scores[1] > scores[0]


def test_waiting_for_a_server_that_exits_fails_at_once():
    from servers import free_port, wait_until_answering

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(RuntimeError, match="exited with code 0"):
        wait_until_answering(f"http://127.0.0.1:{free_port()}/", proc, timeout_s=60)
