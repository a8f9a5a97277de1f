#!/usr/bin/env bash
# The CUDA checks, in one go on one GPU (about 5 minutes on an H100; each step has a time limit):
#   1. the CUDA tests: bf16 + fused SDPA, torch.compile, DDP and FSDP2 over NCCL (one process)
#   2. the training-step benchmark on the GPU (bf16 and fp32; demo, ViT-S/16 at 96/48 and 224/96 px)
# Results: $OUT (default benchmarks/results)/gpu_check.log, train_step_cuda.json, pytest_cuda.xml.
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH="src:.${PYTHONPATH:+:$PYTHONPATH}" DO_NOT_TRACK=true KEDRO_DISABLE_TELEMETRY=1 DVC_NO_ANALYTICS=1
status=0
step() {  # name, time limit (s), command...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || status=1
}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"
  step "CUDA tests" 240 "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests/train/test_cuda.py --junitxml "$OUT/pytest_cuda.xml"
  step "train-step benchmark" 180 "$PYTHON" benchmarks/train_step.py --device cuda --steps 20 --out "$OUT/train_step_cuda.json"
  echo "gpu_check: $([ $status -eq 0 ] && echo all passed || echo FAILURES above)"
  exit $status
} 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
