#!/usr/bin/env bash
# The step time of kiln-train on 1 and 2 ranks on this machine (docs/distributed.md):
#   bash scripts/dist_step_time.sh BUILD_DIR [STEPS] [extra kiln-train options...]
# Runs the small U-Net on the default preset photos, crop 64, global batch 16:
#   one process, batch 16, all threads  |  mpirun -np 2, batch 8 each, 1 thread each
#   one process, batch 8, 1 thread (one rank's share of the work, without communication)
# and prints kiln-train's own "ms a step took" for each (training steps only: no start-up,
# validation or saving).
set -euo pipefail
build=${1:?usage: dist_step_time.sh BUILD_DIR [STEPS] [options]}; shift
steps=${1:-20}; shift || true
train=$build/examples/kiln-train
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
common=(--preset default --model small --crop 64 --epochs 1 --steps-per-epoch "$steps" --samples 0 --val-crops 1 "$@")
step_ms() { grep -o 'of the [0-9.]* ms a step took' "$1" | grep -o '[0-9.]*'; }
lscpu | grep -m1 'Model name' || true
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$train" "${common[@]}" --batch 16 --threads 0 --out "$out/one16" >"$out/one16.log" 2>&1
echo "1 process,  batch 16, $(nproc) threads:   $(step_ms "$out/one16.log") ms per step"
mpirun -np 2 --oversubscribe --bind-to none "$train" "${common[@]}" --batch 8 --threads 1 --out "$out/two8" \
  >"$out/two8.log" 2>&1
echo "2 ranks,    batch 8 each, 1 thread each: $(step_ms "$out/two8.log") ms per step"
"$train" "${common[@]}" --batch 8 --threads 1 --out "$out/one8" >"$out/one8.log" 2>&1
echo "1 process,  batch 8, 1 thread:           $(step_ms "$out/one8.log") ms per step"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -h "data parallel" "$out/two8.log" || true
