"""The demo opens only files Gradio stored for a request, or its own examples.
(What a zip may hold once uploaded: tests/integration/test_demo_classroom.py.)

A hand-written payload ``{"path": ...}`` (no Gradio ``meta``) is posted to
every endpoint that takes a file; whatever the path, the answer is the same
refusal, so it reveals neither the file's pixels nor whether it exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

import patchcore_core
from demo import explain, logic
from demo.uploads import REFUSAL, UploadPolicy, UploadRefused


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def outside_image(tmp_path_factory):
    """A real image the server can read but no visitor uploaded."""
    path = tmp_path_factory.mktemp("private") / "secret.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(path)
    return path


@pytest.fixture
def in_cache(tmp_path):
    """Make files inside Gradio's real upload folder (removed afterwards)."""
    from gradio.utils import get_upload_folder

    made = []

    def make(name: str) -> Path:
        folder = Path(get_upload_folder()) / f"test-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        made.append(folder)
        return folder / name

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def hostile_paths(outside: Path, make_in_cache) -> dict[str, str]:
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder())
    link = make_in_cache("link.png")
    link.symlink_to(outside)  # a link inside the cache that leads out of it
    up = os.path.relpath(outside, cache)
    return {
        "existing image": str(outside),
        "missing file": str(outside.parent / "nothing-here.png"),
        "folder": str(outside.parent),
        "system file": "/etc/passwd",
        "dot-dot out of the cache": f"{cache}/x/../{up}",
        "symlink out of the cache": str(link),
        "file url": f"file://{outside}",
        "relative": "secret.png",
        "cache lookalike": f"{cache}-evil/secret.png",
    }


# --------------------------------------------------------------- the policy
def test_policy_allows_cache_files_and_examples_only(tmp_path, outside_image):
    cache = tmp_path / "cache"
    (cache / "abc").mkdir(parents=True)
    upload = cache / "abc" / "img.png"
    upload.write_bytes(b"x")
    example = tmp_path / "examples" / "good.png"
    example.parent.mkdir()
    example.write_bytes(b"x")
    policy = UploadPolicy([str(example)], cache_dir=cache)
    assert policy.check(str(upload)) == str(upload.resolve())
    assert policy.check(example) == str(example.resolve())
    (cache / "link.png").symlink_to(outside_image)
    (tmp_path / "cache-evil").mkdir()
    (tmp_path / "cache-evil" / "x.png").write_bytes(b"x")
    for bad in [str(outside_image), str(cache / "abc" / ".." / ".." / "examples" / "other.png"),
                str(cache / "link.png"), str(cache / "abc"), str(cache / "abc" / "gone.png"),
                str(tmp_path / "cache-evil" / "x.png"), f"file://{upload}", "", None, 42, "a\x00b",
                str(example.parent)]:
        with pytest.raises(UploadRefused) as info:
            policy.check(bad)
        assert str(info.value) == REFUSAL, bad
    with pytest.raises(UploadRefused):
        policy.check_all([str(upload), str(outside_image)])
    assert isinstance(UploadRefused(REFUSAL), logic.UserError)  # the demo's usual "yours to fix"


# ------------------------------------------------------------ the live app
@pytest.fixture(scope="module")
def app(fitted, brick):
    from servers import serve

    examples = [(str(t.path), t.defect) for t in brick.test[:2]]
    fit_examples = [str(p) for p in brick.train[:2]]
    with serve(fitted, examples=examples, fit_examples=fit_examples) as url:
        yield url, examples, fit_examples


def call_raw(url: str, api_name: str, data: list) -> tuple[str, str]:
    """POST ``data`` as it is (no gradio_client, no ``meta``); the final (event, data)."""
    req = urllib.request.Request(f"{url}gradio_api/call/{api_name}", json.dumps({"data": data}).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=120) as r:
        lines = r.read().decode().splitlines()
    events = [ln[len("event: "):] for ln in lines if ln.startswith("event: ")]
    payloads = [ln[len("data: "):] for ln in lines if ln.startswith("data: ")]
    return events[-1], payloads[-1]


ENDPOINTS = {
    "predict": lambda f: [f, 1.0],
    "explain": lambda f: [f, 112, 112],
    "fit": lambda f: [[f]],
    "evaluate_set": lambda f: ["brick", f],  # a zip in the MVTec layout
    "batch": lambda f: [[f]],                # images or zips
    "compare": lambda f: [f, "coreset 10% (greedy)", "coreset 1% (greedy)", [f]],
}


def without_echo(answer: str, path: str) -> str:
    """The answer less the caller's own path, which Gradio's refusals quote back."""
    for form in (os.path.abspath(path), path):
        answer = answer.replace(form, "<path>")
    return re.sub(r"input_value=.*?, input_type", "input_value=<path>, input_type", answer)


@pytest.mark.parametrize("meta", [False, True], ids=["path only", "with Gradio meta"])
@pytest.mark.parametrize("api_name", sorted(ENDPOINTS))
def test_raw_paths_are_refused_alike_by_every_file_endpoint(app, api_name, meta, outside_image, in_cache):
    url, _, _ = app
    answers = {}
    for what, path in hostile_paths(outside_image, in_cache).items():
        payload = {"path": path, "meta": {"_type": "gradio.FileData"}} if meta else {"path": path}
        event, data = call_raw(url, api_name, ENDPOINTS[api_name](payload))
        assert event == "error", f"{what}: {path} was opened ({data[:200]})"
        answers[what] = without_echo(data, path)
        assert "secret" not in answers[what] and str(outside_image.parent) not in answers[what], what
    # one answer for all: nothing tells whether the path exists, is a folder or an image
    assert len(set(answers.values())) == 1, answers


def test_a_file_in_the_upload_cache_and_the_examples_still_work(app, in_cache, brick):
    url, examples, _ = app
    cached = in_cache("good.png")
    shutil.copy(brick.train[0], cached)
    event, data = call_raw(url, "predict", [{"path": str(cached)}, 1.0])
    assert event == "complete"
    score, verdict = json.loads(data)[3], json.loads(data)[5]
    assert score > 0 and verdict in ("normal", "anomalous")
    event, data = call_raw(url, "predict", [{"path": examples[1][0]}, 1.0])
    assert event == "complete" and json.loads(data)[3] > 0
    second = in_cache("good2.png")
    shutil.copy(brick.train[1], second)
    meta = {"_type": "gradio.FileData"}  # gr.File insists on it (and then checks the cache itself)
    event, data = call_raw(url, "fit", [[{"path": str(p), "meta": meta} for p in (cached, second)]])
    assert event == "complete" and "Fitted on 2 images" in data


# ------------------------------------------------- no server paths in outputs
def test_explain_details_name_the_training_file_not_its_folder(fitted, brick):
    bad = next(t.path for t in brick.test if t.defect != "good")
    details = explain.explain(fitted, bad).details
    assert details["train_name"] == Path(fitted.train_names[details["train_index"]]).name
    assert os.sep not in details["train_name"]
    assert str(brick.root) not in json.dumps(details)


def test_downloaded_model_names_its_images_without_server_folders(brick, tmp_path):

    model, _ = logic.fit([str(p) for p in brick.train[:2]])
    path = logic.save_for_download(model, tmp_path)
    assert patchcore_core.load(path, device="cpu").train_names == [p.name for p in brick.train[:2]]
    assert model.train_names == [str(p) for p in brick.train[:2]]  # the session's model keeps its paths
    assert str(brick.root) not in Path(path).read_bytes().decode("latin-1")


def test_unexpected_errors_do_not_show_their_details():
    from demo import app as app_module

    class Boom(RuntimeError):
        pass

    with pytest.warns(UserWarning):  # gr.Warning, outside a request
        msg = app_module._failure(Boom("/root/.cache/patchcore/secret/path.png exploded"))
    assert "Boom" in msg and "/root" not in msg
