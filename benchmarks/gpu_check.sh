#!/usr/bin/env bash
# Check an install on a machine with a GPU, once (not run in CI; this project's machines have none):
#   1. a few steps of each job on --context cudnn, in float and (retraining) half, on synthetic data
#      (benchmarks/bench.py, with the per-function profile);
#   2. the first training step's loss and gradient norm on the GPU against the CPU, on the same
#      weights and batch (benchmarks/first_loss.py);
#   3. the peak GPU memory of each run (nvidia-smi, sampled every 100 ms).
# Usage: benchmarks/gpu_check.sh [device id]      (PYTHON=... to choose the interpreter)
# Every result is one JSON line; the script stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DEVICE=${1:-0}
command -v nvidia-smi > /dev/null || { echo "gpu_check: nvidia-smi not found: no NVIDIA driver here" >&2; exit 1; }
GPU=(--context cudnn --device-id "$DEVICE")
SEARCH=(--num-cells 5 --output-filter 8 --batch-size 16 --steps 4 --profile True)
TRAIN=(--model-arch-name DARTS_V2 --num-cells 8 --output-filter 16 -f 0 --batch-size 32 --steps 6 --profile True)

peak_memory() {  # run "$@" and print the peak memory.used of the GPU while it runs (MiB)
  local log
  log=$(mktemp)
  nvidia-smi --id="$DEVICE" --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$log" &
  local watcher=$!
  "$@"
  kill "$watcher"
  echo "{\"peak_gpu_memory_mib\": $(sort -n "$log" | tail -1), \"run\": \"$*\"}"
  rm -f "$log"
}

echo "== search, first and second order, float"
peak_memory "$PYTHON" benchmarks/bench.py search "${GPU[@]}" "${SEARCH[@]}"
peak_memory "$PYTHON" benchmarks/bench.py search "${GPU[@]}" "${SEARCH[@]}" --second-order True
echo "== retraining, float and half"
for type in float half; do
  peak_memory "$PYTHON" benchmarks/bench.py train "${GPU[@]}" "${TRAIN[@]}" --type-config "$type"
done
echo "== first step on the GPU against the CPU (same weights, same batch)"
for type in float half; do
  tolerance=$([ "$type" = half ] && echo 1e-2 || echo 1e-4)
  result=$("$PYTHON" benchmarks/first_loss.py "${GPU[@]}" --type-config "$type" --model-arch-name DARTS_V2 \
    --num-cells 8 --output-filter 16 -f 0 --batch-size 32)
  echo "$result"
  "$PYTHON" -c 'import json, sys; r, tol = json.loads(sys.argv[1]), float(sys.argv[2])
sys.exit(0 if max(r["loss_rel_diff"], r["grad_norm_rel_diff"]) < tol else "GPU and CPU differ by more than %g" % tol)' \
    "$result" "$tolerance"
done
echo "gpu_check: all passed"
