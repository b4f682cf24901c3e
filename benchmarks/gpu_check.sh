#!/usr/bin/env bash
# The GPU figure of the deployment benchmark (issue 25, item 6): PyTorch on CUDA, and onnxruntime-gpu
# where it installs (into a folder of its own, so the CPU onnxruntime stays as it is).
#   bash benchmarks/gpu_check.sh [bench_deploy.py options]     # e.g. --data DIR --category bottle
# Without a CUDA GPU it says so and exits 0 (CI skips it cleanly).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "skip: no CUDA GPU visible to PyTorch; the GPU path stays unmeasured"
    exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
ORT_GPU=build/onnxruntime-gpu
# --no-deps: its dependencies are those of the CPU onnxruntime, already installed
if "$PY" -m pip install -q --no-deps --target "$ORT_GPU" onnxruntime-gpu; then
    export PYTHONPATH="$PWD/$ORT_GPU${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "note: onnxruntime-gpu did not install: PyTorch CUDA only"
fi
exec "$PY" benchmarks/bench_deploy.py --device cuda --json build/bench_deploy_gpu.json "$@"
