"""The deployment benchmark behind the README's latency table runs end to end (on the built-in
data, one repeat), and its GPU script skips cleanly where there is no GPU (issue 25)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from paths import ROOT

pytest.importorskip("onnxruntime")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_deploy_benchmark_times_every_stage_and_keeps_pytorchs_verdicts(tmp_path):
    from patchcore_core.data.builtin import builtin_root

    out = tmp_path / "rows.json"
    cmd = [sys.executable, "benchmarks/bench_deploy.py", "--data", str(builtin_root()), "--category", "brick",
           "--batch", "8", "--repeat", "1", "--coreset", "0.05", "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {(r["path"], r["batch"]): r for r in report["rows"]}
    assert set(rows) >= {("PyTorch predict today (no prefetch)", 8), ("PyTorch eager (cpu)", 8),
                         ("onnxruntime fp32 (cpu)", 8), ("onnxruntime int8 (cpu)", 8)}
    fp32 = rows["onnxruntime fp32 (cpu)", 8]
    assert fp32["verdicts_differ"] == 0  # the fp32 export decides as PyTorch does
    for stage in ("decode", "preprocess", "backbone", "search", "map"):
        assert fp32[stage] > 0
    assert fp32["sequential"] == pytest.approx(sum(fp32[s] for s in ("decode", "preprocess", "backbone",
                                                                      "search", "map")))
    assert fp32["speedup"] == pytest.approx(rows["PyTorch predict today (no prefetch)", 8]["end_to_end"]
                                            / fp32["end_to_end"])
    (search,) = report["search"]
    assert search["batch"] == 8 and search["queries"] == 8 * 28 * 28
    assert search["faiss IndexFlatL2"] > 0 and search["search.onnx (onnxruntime)"] > 0
    assert "exact search alone" in done.stdout and "fastest:" in done.stdout


def test_gpu_script_skips_cleanly_without_a_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script would run the benchmark (benchmarks/gpu_check.sh by hand)")
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("skip: no CUDA GPU") and "unmeasured" in done.stdout
