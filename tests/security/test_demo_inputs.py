"""Numbers a request hands the demo, and text the demo writes into a CSV.

Threats: NaN / infinity / out-of-range numbers reaching the demo's work
("At nan: 16 missed", an ``OverflowError``); a file name that a spreadsheet
runs as a formula when it opens ``scores.csv`` (CSV injection).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import urllib.request

import pytest

from demo import batch, explain, logic
from demo.numbers import check_number


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def hole(brick):
    return str(next(t.path for t in brick.test if t.defect == "hole"))


@pytest.fixture(scope="module")
def client(fitted, brick):
    from gradio_client import Client
    from servers import serve

    with serve(fitted, category="brick", fit_examples=[str(p) for p in brick.train[:2]]) as url:
        yield Client(url, verbose=False)


BAD_NUMBERS = [math.nan, math.inf, -math.inf]


# ------------------------------------------------------------------- numbers
def test_check_number_refuses_what_is_not_a_finite_number_in_range():
    """Threat: NaN and infinity pass Gradio's range checks and reach the demo's arithmetic."""
    assert check_number(1, "x", 0, 2) == 1.0
    for value in [*BAD_NUMBERS, "1", None, True, [1]]:
        with pytest.raises(logic.UserError, match="x must be a number from 0 to 2"):
            check_number(value, "x", 0, 2)
    with pytest.raises(logic.UserError, match="out of range"):
        check_number(3, "x", 0, 2)


def test_explain_coordinates_out_of_range_get_a_message(fitted, hole):
    """Threat: a huge or negative coordinate ends in an OverflowError (or a silently clamped patch)."""
    for x, y in [(1e308, 5), (5, -1), (224, 0), (math.nan, 3), (3, math.inf)]:
        with pytest.raises(logic.UserError, match="must be a number from 0 to 223"):
            explain.explain(fitted, hole, x, y)


def call_raw(url: str, api_name: str, data: list, session_hash: str | None = None) -> tuple[str, str]:
    """POST ``data`` as JSON that may hold NaN and Infinity (gradio_client refuses to send
    them; a browser's or a script's request need not); the final (event, data)."""
    body = json.dumps({"data": data, "session_hash": session_hash}).encode()
    req = urllib.request.Request(f"{url}gradio_api/call/{api_name}", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=300) as r:
        lines = r.read().decode().splitlines()
    events = [ln[len("event: "):] for ln in lines if ln.startswith("event: ")]
    payloads = [ln[len("data: "):] for ln in lines if ln.startswith("data: ")]
    return events[-1], payloads[-1]


def refused(event: str, answer: str, message: str, value: float | None = None) -> bool:
    """The request was refused with ``message``: as Gradio's error (before the handler ran)
    or as the handler's own **Problem:**. (A slider whose range a handler set is a fresh
    Gradio copy: its own range check refuses infinity with "Value inf is greater than ...".)"""
    gradio_range = value is not None and math.isinf(value) and f"Value {value} is" in answer
    return (message in answer or gradio_range) and (event == "error" or "**Problem:**" in answer)


def test_sliders_refuse_nan_and_infinity(client, hole):
    """Threat: NaN in the region slider or the threshold slider is used as a threshold ("At nan")."""
    from gradio_client import handle_file

    url, session = client.src, client.session_hash
    client.predict(handle_file(hole), 1.0, api_name="/predict")  # the session's last image
    client.predict("brick", None, api_name="/evaluate_set")        # the session's scored set
    for value in BAD_NUMBERS:
        for api_name, data, what in [("predict", [None, value], "the region threshold"),
                                     ("update_region", [value], "the region threshold"),
                                     ("set_threshold", [value], "the threshold")]:
            event, answer = call_raw(url, api_name, data, session)
            assert refused(event, answer, f"{what} must be a number", value), (api_name, value, answer)


@pytest.mark.parametrize("x", BAD_NUMBERS)
def test_explain_endpoint_refuses_nan_and_infinity(client, x):
    """Threat: /explain with NaN or infinity fails inside Gradio (ValueError, OverflowError)."""
    event, answer = call_raw(client.src, "explain", [None, x, 100], client.session_hash)
    assert refused(event, answer, "x must be a number") and "OverflowError" not in answer


@pytest.mark.parametrize("x", [1e308, -5, 224])
def test_explain_endpoint_refuses_coordinates_out_of_range(client, hole, x):
    """Threat: a huge coordinate ends in OverflowError; a negative one is clamped silently."""
    from gradio_client import handle_file

    *_, text, details = client.predict(handle_file(hole), x, 100, api_name="/explain")
    assert "x must be a number from 0 to 223" in text and "OverflowError" not in text and details == {}


# ----------------------------------------------------------------------- CSV
def test_csv_text_cells_never_start_a_formula_and_numbers_stay_numbers(tmp_path):
    """Threat: an upload named '=HYPERLINK(...)' runs as a formula when scores.csv is opened."""
    rows = [{"file": "=HYPERLINK(1+1).png", "score": -1.5, "score / threshold": 0.25, "verdict": "normal"},
            {"file": "+cmd.png", "score": None, "score / threshold": None, "verdict": "-error: @x"},
            {"file": "@sum.png", "score": 2.0, "score / threshold": -0.5, "verdict": "\tanomalous"},
            {"file": "plain-name.png", "score": 0.0, "score / threshold": 1e-3, "verdict": "normal"}]
    csv_path, _ = batch.write_outputs(rows, {})
    with open(csv_path, newline="") as f:
        out = list(csv.DictReader(f))
    assert [r["file"] for r in out] == ["'=HYPERLINK(1+1).png", "'+cmd.png", "'@sum.png", "plain-name.png"]
    assert [r["verdict"] for r in out] == ["normal", "'-error: @x", "'\tanomalous", "normal"]
    # numbers are written as numbers, negative ones too
    assert [r["score"] for r in out] == ["-1.5", "", "2.0", "0.0"]
    assert [r["score / threshold"] for r in out] == ["0.25", "", "-0.5", "0.001"]


def test_batch_csv_escapes_an_uploaded_formula_name(client, hole, tmp_path):
    """Threat: the same formula, through the /batch endpoint."""
    from gradio_client import handle_file

    named = tmp_path / "=HYPERLINK(1+1).png"
    shutil.copy(hole, named)
    table, csv_file, _, summary = client.predict([handle_file(str(named))], api_name="/batch")
    with open(csv_file, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["file"] == "'=HYPERLINK(1+1).png" and float(row["score"]) > 0
