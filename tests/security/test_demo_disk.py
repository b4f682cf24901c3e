"""The demo's own files stay bounded: what a request unpacks goes when it
ends, whatever fails, and old batch and fit outputs are pruned.

Threat: a visitor fills the server's disk (a large zip then a refused one,
left unpacked until the process exits; thousands of batch or fit downloads).
"""

from __future__ import annotations

import os
import zipfile

import pytest

from demo import archives, batch, logic


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCORE_CACHE", str(tmp_path / "cache"))


def leftovers() -> list:
    """Unpacked images in the downloads folder (outputs hold CSVs, zips and models only)."""
    return sorted(logic.downloads_folder().rglob("*.png"))


@pytest.fixture(scope="module")
def zips(tmp_path_factory, brick):
    folder = tmp_path_factory.mktemp("zips")
    good = folder / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        for p in brick.test[:4]:
            zf.write(p.path, f"imgs/{p.defect}-{p.path.name}")
    other = folder / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        for p in brick.test[4:8]:
            zf.write(p.path, f"more/{p.defect}-{p.path.name}")
    evil = folder / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.png", b"x")
    return good, other, evil


@pytest.fixture(scope="module")
def client(fitted, brick):
    from gradio_client import Client
    from servers import serve

    with serve(fitted, fit_examples=[str(p) for p in brick.train[:2]]) as url:
        yield Client(url, verbose=False)


def test_batch_removes_what_it_unpacked_when_a_later_zip_is_refused(client, zips):
    """Threat: /batch with a large zip then a refused one leaves the first unpacked until exit."""
    from gradio_client import handle_file

    good, _, evil = zips
    table, csv_file, overlays, summary = client.predict([handle_file(str(good)), handle_file(str(evil))],
                                                        api_name="/batch")
    assert "evil.zip" in summary and "refused" in summary and csv_file is None
    assert leftovers() == []
    # and after a request that succeeds
    table, csv_file, overlays, summary = client.predict([handle_file(str(good))], api_name="/batch")
    assert len(table["data"]) == 4 and leftovers() == []


def test_the_zips_of_one_request_share_one_size_limit(client, zips, monkeypatch):
    """Threat: many zips in one request, each under the limit, unpack to many times the limit."""
    from gradio_client import handle_file

    good, other, _ = zips
    one = sum(i.file_size for i in zipfile.ZipFile(good).infolist())
    monkeypatch.setattr(archives, "MAX_UNPACKED_BYTES", int(1.5 * one))  # one zip fits, two do not
    *_, summary = client.predict([handle_file(str(good))], api_name="/batch")
    assert "4 files" in summary
    table, csv_file, _, summary = client.predict([handle_file(str(good)), handle_file(str(other))],
                                                 api_name="/batch")
    assert "other.zip" in summary and "limit" in summary and csv_file is None
    assert leftovers() == []


def test_batch_outputs_are_pruned():
    """Threat: every /batch leaves a CSV and a zip of overlays until the process exits."""
    rows = [{"file": "a.png", "score": 1.0, "score / threshold": 0.5, "verdict": "normal"}]
    paths = [batch.write_outputs(rows, {})[0] for _ in range(logic.KEEP_OUTPUTS + 3)]
    kept = list(logic.downloads_folder().glob("batch-*/scores.csv"))
    assert len(kept) <= logic.KEEP_OUTPUTS
    assert all(os.path.exists(p) for p in paths[-logic.KEEP_OUTPUTS:])  # the newest stay


def test_fitted_model_downloads_are_pruned(fitted):
    """Threat: every /fit leaves a model file until the process exits."""
    for _ in range(logic.KEEP_OUTPUTS + 2):
        newest = logic.save_for_download(fitted)
    kept = list(logic.downloads_folder().rglob("*.safetensors"))
    assert len(kept) <= logic.KEEP_OUTPUTS and newest in map(str, kept)
