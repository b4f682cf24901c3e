"""The classroom load benchmark runs end to end (two visitors, not thirty)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from paths import ROOT


@pytest.mark.slow
def test_load_benchmark_reports_latency_and_memory_with_large_uploads(tmp_path):
    # One run for both figures (each run starts a server and fits a model: ~35 s).
    cmd = [sys.executable, "benchmarks/bench_demo_load.py", "--visitors", "4", "--large-mp", "4",
           "--session-ttl", "2", "--max-seconds", "300"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PATCHCORE_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr
    for endpoint in ("/predict", "/explain", "/evaluate_set", "/set_threshold", "/fit"):
        assert endpoint in out.stdout
    assert "p50 s" in out.stdout and "p95 s" in out.stdout and "errors: 0" in out.stdout
    assert "server memory (RSS)" in out.stdout and "peak" in out.stdout
    assert "4-megapixel PNGs" in out.stdout


def test_load_benchmark_is_bounded():
    out = subprocess.run([sys.executable, "benchmarks/bench_demo_load.py", "--visitors", "500"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "between 1 and 60" in out.stderr


def test_large_images_are_bounded():
    out = subprocess.run([sys.executable, "benchmarks/bench_demo_load.py", "--large-mp", "500"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "between 1 and 80" in out.stderr
