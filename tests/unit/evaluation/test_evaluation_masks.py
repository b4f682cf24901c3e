"""Defective test images without a mask are left out of the pixel metrics, and said so."""

from __future__ import annotations

import json
import shutil

import pytest

from patchcore_core.cli.main import main
from patchcore_core.evaluation.category import evaluate_category
from patchcore_core.evaluation.metrics import aupro, pixel_auroc


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def gravel_copy(builtin_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("masks") / "data"
    shutil.copytree(builtin_root / "gravel", root / "gravel")
    return root


@pytest.fixture(scope="module")
def full(gravel_copy):
    return evaluate_category(gravel_copy, "gravel", shots=4, device="cpu", progress=False)


def _drop_masks(root, n=None):
    masks = sorted((root / "gravel" / "ground_truth").rglob("*.png"))
    dropped = masks[:n] if n else masks
    for m in dropped:
        m.unlink()
    return dropped


def test_defects_without_masks_are_left_out_of_pixel_metrics(full, gravel_copy, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(gravel_copy, root)
    dropped = _drop_masks(root, 3)
    res = evaluate_category(root, "gravel", shots=4, device="cpu", progress=False)
    m = res.metrics
    assert m["n_missing_masks"] == 3 and len(res.missing_masks) == 3
    assert full.metrics["n_missing_masks"] == 0
    # same model and maps: the image metrics count every image ...
    assert m["image_auroc"] == full.metrics["image_auroc"] and m["n_test"] == full.metrics["n_test"]
    # ... the pixel metrics are those of the images that have their mask
    keep = [all(not (p.name == d.name.replace("_mask", "") and p.parent.name == d.parent.name)
                for d in dropped) for p in full.paths]
    assert sum(keep) == len(full.paths) - 3
    assert m["pixel_auroc"] == pytest.approx(pixel_auroc(full.masks[keep], full.maps[keep]))
    assert m["aupro"] == pytest.approx(aupro(full.masks[keep], full.maps[keep]))
    # the old way (unmasked defects as all-normal pixels) reads lower
    assert pixel_auroc(res.masks, res.maps) < m["pixel_auroc"]


def test_cli_counts_missing_masks_and_writes_strict_json(gravel_copy, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(gravel_copy, root)
    _drop_masks(root, 2)
    out = tmp_path / "some.json"
    assert main(["evaluate", "--data", str(root), "--category", "gravel", "--shots", "4",
                 "--json", str(out), "--quiet", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "n_missing_masks" in captured.out and "2 defective test image(s) have no mask" in captured.err
    res = _strict_json(out.read_text())["gravel"]
    assert res["n_missing_masks"] == 2 and 0 < res["pixel_auroc"] <= 1

    _drop_masks(root)  # none left: no pixel metrics at all
    out = tmp_path / "none.json"
    assert main(["evaluate", "--data", str(root), "--category", "gravel", "--shots", "4",
                 "--json", str(out), "--quiet", "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    res = _strict_json(out.read_text())["gravel"]  # no bare NaN in the file
    assert res["pixel_auroc"] is None and res["aupro"] is None
    assert res["image_auroc"] > 0.5 and res["n_missing_masks"] == res["n_test"] - _n_good(root)
    assert "n/a" in table


def _n_good(root) -> int:
    return len(list((root / "gravel" / "test" / "good").glob("*.png")))
