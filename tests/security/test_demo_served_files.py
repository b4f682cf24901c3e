"""What the demo serves and shows: its uploads, its built-in examples and the
folders the operator names; never a path a model file names, never a file
next to an example.

Threats: a model file is untrusted input (its ``train_names`` may name
``/etc/passwd`` or ``../../secret.png``); ``--examples DIR`` may hold more
than images.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from paths import ROOT
from PIL import Image

import patchcore_core
from demo import explain, models
from demo.training_images import TrainingImages


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A folder the operator never named: an image and a secret next to it."""
    folder = tmp_path_factory.mktemp("private")
    Image.new("RGB", (64, 64), (200, 10, 10)).save(folder / "train.png")
    (folder / "secret.txt").write_text("the server's secret")
    return folder


def hostile(fitted, names):
    """``fitted`` whose model file names ``names`` (cycled) as its training images."""
    model = copy.copy(fitted)
    model.train_names = [names[i % len(names)] for i in range(len(fitted.train_names))]
    return model


def status(url: str, path: str) -> int:
    """The HTTP status of Gradio's file route for a server path."""
    try:
        with urllib.request.urlopen(f"{url}gradio_api/file={urllib.parse.quote(path)}", timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


# ----------------------------------------------------------- the rule itself
def test_a_model_file_names_nothing_outside_the_trusted_folders(private, brick, tmp_path):
    """Threat: a model file's train_names reach files the operator never named."""
    images = TrainingImages([brick.path / "train"])
    inside = brick.train[0]
    assert images.find(str(inside)) == os.path.realpath(inside)  # any depth
    # a downloaded model names files only: found directly inside a named folder
    assert TrainingImages([inside.parent]).find(inside.name) == os.path.realpath(inside)
    out = tmp_path / "out"
    out.mkdir()
    (out / "link.png").symlink_to(private / "train.png")
    for name in [str(private / "train.png"), "/etc/passwd", "../../../../../../../etc/passwd",
                 str(inside.parent / ".." / ".." / ".." / ".." / "x.png"),
                 str(out / "link.png"), "", "a\x00b.png", None, 3]:
        assert images.find(name) is None, name
    # an operator's folder: a link out of it, or a file that is not an image, is not shown either
    (out / "notes.txt").write_text("x")
    mine = TrainingImages([out])
    assert mine.find(str(out / "link.png")) is None and mine.find(str(out / "notes.txt")) is None
    assert TrainingImages().find(str(inside)) is None


def test_a_model_file_does_not_choose_the_examples(fitted, private, brick):
    """Threat: train_names of a model file become examples (served, their folders allowed)."""
    model = hostile(fitted, [str(private / "train.png"), "/etc/passwd", "../../../../../../../etc/passwd"])
    assert models.model_examples(model) == []
    assert models.model_examples(model, training_images=TrainingImages([brick.root])) == []
    found = models.model_examples(fitted, training_images=TrainingImages([brick.root]))
    assert found and all(Path(p).is_relative_to(os.path.realpath(brick.root)) for p, _ in found)


def test_explain_names_an_untrusted_training_image_without_showing_it(fitted, private, brick):
    """Threat: Explain draws any image a model file names."""
    model = hostile(fitted, [str(private / "train.png")])
    bad = next(t.path for t in brick.test if t.defect != "good")
    r = explain.explain(model, bad, find_training_image=TrainingImages([brick.root]).find)
    assert r.train_image is None
    assert "train.png" in r.text and "not available" in r.text
    assert r.details["train_name"] == "train.png"


# ------------------------------------------------------ the running demo (HTTP)
def test_cli_with_a_hostile_model_serves_none_of_its_paths(fitted, private, tmp_path):
    """Threat: `python -m demo --model FILE` serves /etc and any folder the file's train_names name."""
    from servers import free_port, wait_until_answering

    path = tmp_path / "hostile.safetensors"
    patchcore_core.save(hostile(fitted, [str(private / "train.png"), "/etc/passwd",
                                         "../../../../../../../etc/passwd"]), path)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PATCHCORE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "demo", "--model", str(path), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            wait_until_answering(url, proc, timeout_s=240)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}\n{proc.stdout.read() if proc.poll() is not None else ''}")
        for target in ["/etc/passwd", "/etc/hostname", str(private / "secret.txt"),
                       str(private / "train.png")]:
            if os.path.exists(target):
                assert status(url, target) == 403, target
        with urllib.request.urlopen(f"{url}config", timeout=30) as r:
            config = r.read().decode()
        assert "training image" not in config and "passwd" not in config and private.name not in config
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory, brick, private):
    """An operator's --examples folder that holds more than images."""
    folder = tmp_path_factory.mktemp("examples")
    for p in brick.train[5:7]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "notes.txt").write_text("not an example")
    (folder / "sub").mkdir()
    (folder / "sub" / "secret.txt").write_text("the operator's secret")
    (folder / "zz-link.png").symlink_to(private / "train.png")  # an image by name, a file elsewhere
    return folder


def test_examples_folder_serves_its_example_images_only(fitted, brick, examples_dir, private):
    """Threat: --examples DIR lets every file under DIR be downloaded."""
    from servers import serve

    examples = models.model_examples(fitted, examples_dir)  # as `python -m demo --examples DIR`
    with serve(fitted, examples=examples, fit_examples=[str(p) for p in brick.train[:2]]) as url:
        assert status(url, str(examples_dir / brick.train[5].name)) == 200  # the examples still work
        for target in ["sub/secret.txt", "notes.txt", "zz-link.png"]:
            assert status(url, str(examples_dir / target)) == 403, target
        assert status(url, str(private / "train.png")) == 403
        # the fit examples: those files, not their folder's other files
        assert status(url, str(brick.train[0])) == 200
        assert status(url, str(brick.train[3])) == 403
    assert [Path(p).name for p, _ in examples] == [p.name for p in brick.train[5:7]]


def test_app_explain_shows_only_trusted_training_images(fitted, private, brick, tmp_path):
    """Threat: the served Explain endpoint draws the image a model file names."""
    from gradio_client import Client, handle_file
    from servers import serve

    model = hostile(fitted, [str(private / "train.png")])
    bad = next(t.path for t in brick.test if t.defect != "good")
    with serve(model, fit_examples=[str(p) for p in brick.train[:4]]) as url:
        client = Client(url, verbose=False)
        _, train_img, _, text, details = client.predict(handle_file(str(bad)), 112, 112, api_name="/explain")
        assert train_img is None and "train.png" in text and "not available" in text
        # a model fitted in the session on its own uploads still shows its training patches
        client.predict([handle_file(str(p)) for p in brick.train[:2]], api_name="/fit")
        _, train_img, _, text, details = client.predict(handle_file(str(bad)), 112, 112, api_name="/explain")
        assert train_img is not None and Path(train_img).is_file()
        assert details["train_name"] in [p.name for p in brick.train[:2]]
