"""patchcore benchmark: every category, resumable, the paper's tables, the
comparison with the published figures."""

from __future__ import annotations

import csv
import json
import math

import pytest

import patchcore_core.evaluation.benchmark as benchmark
from patchcore_core.cli.main import main
from patchcore_core.evaluation.benchmark import markdown_report, mean_rows, read_results, run_benchmark
from patchcore_core.evaluation.published import figure_title, load_published, published_value

SMALL = {"image_size": 96, "coreset_ratio": 0.05}


class FakeResult:
    def __init__(self, metrics):
        self.metrics = metrics


@pytest.fixture
def fake_evaluate(monkeypatch):
    """evaluate_category replaced by a recorder: the resume logic without minutes of fitting."""
    calls = []

    def fake(root, category, shots=None, seed=0, **kw):
        calls.append((category, shots, seed))
        if category == "zboom":
            raise KeyboardInterrupt
        score = {"brick": 0.9, "grass": 0.8, "gravel": 0.7}.get(category, 0.5) + 0.01 * seed
        return FakeResult({"category": category, "image_auroc": score, "pixel_auroc": 0.95,
                           "aupro": float("nan"), "false_alarm_rate": 0.0, "miss_rate": 0.25,
                           "n_train": shots or 20, "backbone": "efficientnet_lite0"})

    monkeypatch.setattr(benchmark, "evaluate_category", fake)
    return calls


def test_runs_every_category_once_and_resumes(fake_evaluate, builtin_root, tmp_path):
    out = tmp_path / "run"
    run_benchmark(builtin_root, out, categories=["grass", "brick"], progress=False, log=lambda m: None)
    assert fake_evaluate == [("brick", None, 0), ("grass", None, 0)]  # the paper's order, then sorted
    rows = read_results(out)
    assert [r["category"] for r in rows] == ["brick", "grass"]
    assert rows[0]["image_auroc"] == 0.9 and rows[0]["aupro"] is None and rows[0]["shots"] is None
    # a second call runs nothing; a new category runs only that one
    run_benchmark(builtin_root, out, categories=["grass", "brick", "gravel"], progress=False,
                  log=lambda m: None)
    assert fake_evaluate[2:] == [("gravel", None, 0)]
    data = json.loads((out / "results.json").read_text())
    assert data["mean"][0]["image_auroc"] == pytest.approx(0.8)
    assert data["mean"][0]["aupro"] is None  # nothing measurable: not a 0
    md = (out / "results.md").read_text()
    assert "| brick | 90.0 | 95.0 | n/a | 0.0 | 25.0 |" in md and "| **Mean** | **80.0**" in md
    # --force runs all again
    run_benchmark(builtin_root, out, categories=["brick"], force=True, progress=False, log=lambda m: None)
    assert fake_evaluate[3:] == [("brick", None, 0)] and len(read_results(out)) == 1


def test_other_settings_are_refused_not_mixed(fake_evaluate, builtin_root, tmp_path):
    out = tmp_path / "run"
    run_benchmark(builtin_root, out, categories=["brick"], progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="config.coreset_ratio"):
        run_benchmark(builtin_root, out, categories=["brick"], progress=False, log=lambda m: None,
                      coreset_ratio=0.5)


def test_an_interrupted_benchmark_keeps_finished_runs(fake_evaluate, builtin_root, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(builtin_root, out, categories=["brick", "zboom"], progress=False, log=lambda m: None)
    assert [r["category"] for r in read_results(out)] == ["brick"]
    assert not list(out.glob(".*.tmp"))  # no half-written file left behind


def test_few_shot_table(fake_evaluate, builtin_root, tmp_path):
    out = tmp_path / "few"
    rows = run_benchmark(builtin_root, out, categories=["brick", "grass"], shots=[1, 5], seeds=[0, 1, 2],
                         progress=False, log=lambda m: None)
    assert len(rows) == 12
    means = mean_rows(rows)
    assert [m["shots"] for m in means] == [1, 5] and means[0]["seeds"] == 3
    # per seed: mean of brick and grass = 0.85 + 0.01 seed -> mean 0.86, std 0.01
    assert means[0]["image_auroc"] == pytest.approx(0.86)
    assert means[0]["image_auroc_std"] == pytest.approx(0.01)
    md = markdown_report(rows, {"config": {}})
    assert "| 1 | 3 | 86.0 ± 1.0 | 95.0 ± 0.0 | n/a |" in md
    with open(out / "results.csv", newline="") as f:
        assert {r["shots"] for r in csv.DictReader(f)} == {"1", "5"}


def test_published_figures_have_sources_and_agree_with_their_means():
    entries = load_published()
    assert {"paper PatchCore-1%", "reference code WR50 10%"} <= {e["name"] for e in entries}
    for e in entries:
        assert e["source"] and e["mean"]["image_auroc"] > 0.98
        per = e.get("per_category")
        if per and all(v["aupro"] is not None for v in per.values()):
            assert len(per) == 15
            for metric in ("image_auroc", "pixel_auroc", "aupro"):
                mean = sum(v[metric] for v in per.values()) / 15
                assert mean == pytest.approx(e["mean"][metric], abs=6e-4)
    ref = next(e for e in entries if e["name"] == "reference code WR50 10%")
    assert published_value(ref, "bottle", "image_auroc") == 1.0
    assert published_value(ref, "hazelnut_toy", "image_auroc") is None
    assert "differs" in figure_title("efficientnet_lite0")
    assert "differs" not in figure_title("wide_resnet50_2")


@pytest.mark.slow
def test_cli_benchmark_end_to_end(builtin_root, tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(builtin_root), "--category", "brick", "--out", str(out), "--quiet",
            "--image-size", str(SMALL["image_size"]), "--coreset-ratio", str(SMALL["coreset_ratio"])]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| brick |" in printed and "**Mean**" in printed
    row = json.loads((out / "results.json").read_text())["rows"][0]
    evaluate_keys = {"image_auroc", "pixel_auroc", "aupro", "f1_max", "false_alarm_rate", "miss_rate",
                     "n_train", "n_test", "memory_bank_size", "fit_seconds", "threshold"}
    assert evaluate_keys <= set(row) and row["image_auroc"] > 0.5
    png = (out / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # resumed: nothing to do, same numbers
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["rows"][0]["image_auroc"] == row["image_auroc"]
    assert not math.isnan(row["image_auroc"])
