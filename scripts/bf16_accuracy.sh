#!/usr/bin/env bash
# BF16 against fp32 on the street preset (issue 20 item 4), measured on the CPU:
#   bash scripts/bf16_accuracy.sh [SEED...]      # default seed 1
# trains the demo's model (scripts/demo.sh: the small U-Net, 600 steps of 16 crops of 64 pixels,
# Adam 2e-3 -> 1e-4) once per precision and seed, same seed same data order and initial weights,
# with --precision fp32 and --precision bf16 on --device cpu, where bf16 simulates the CUDA
# kernels' numerics (kiln/cpu/conv_rounding.hpp: the 1x1 and 3x3 convolutions' operands rounded
# to bfloat16 as Backend<Cuda> rounds them, fp32 accumulation in the CPU's order). Then colorizes
# every 10th validation frame whole, as the demo does, and prints a table of validation MSE(ab):
# on kiln-train's fixed validation crops (last epoch) and on the whole frames (kiln-colorize
# --compare), each beside the grey baseline (a = b = 0).
# Environment: KILN_BF16_BUILD_DIR (default build/bf16-accuracy; kiln-train and kiln-colorize are
# built there unless present), KILN_BF16_OUT (default out/bf16-accuracy; one folder per run,
# SEED-PRECISION), KILN_BF16_THREADS (CPU threads per run, default 1), KILN_BF16_PARALLEL (1: the
# two precisions of a seed train at once, default 1), KILN_DATA_DIR (the photos, default
# data/photos; scripts/install-data.sh --preset street installs them), KILN_BF16_FRESH (1: train
# again runs whose folder already holds a finished colorize.log; by default those are reused, so
# that a later call with more seeds trains only the new ones).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case ${1:-} in
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
esac
seeds=("$@")
((${#seeds[@]})) || seeds=(1)
for s in "${seeds[@]}"; do
  [[ $s =~ ^[0-9]+$ ]] || { echo "bf16_accuracy: a seed must be a whole number, got '$s'" >&2; exit 2; }
done
build=${KILN_BF16_BUILD_DIR:-build/bf16-accuracy}
out=${KILN_BF16_OUT:-out/bf16-accuracy}
threads=${KILN_BF16_THREADS:-1}
parallel=${KILN_BF16_PARALLEL:-1}
[[ $threads =~ ^[0-9]+$ ]] || { echo "bf16_accuracy: KILN_BF16_THREADS must be a whole number, got '$threads'" >&2; exit 2; }
data=${KILN_DATA_DIR:-data/photos}
[[ -d $data/street/val ]] ||
  { echo "bf16_accuracy: no street photos in $data/street (run scripts/install-data.sh --preset street)" >&2; exit 1; }

if [[ ! -x $build/examples/kiln-train || ! -x $build/examples/kiln-colorize ]]; then
  mkdir -p "$(dirname "$build")"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=OFF -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=OFF \
    >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target kiln-train kiln-colorize
fi

frames=()
i=0
for f in "$data"/street/val/*.jpg; do
  if ((i % 10 == 0)); then frames+=("$f"); fi
  i=$((i + 1))
done

run() {  # run SEED PRECISION: trains, then colorizes the frames; everything in $out/SEED-PRECISION
  local dir=$out/$1-$2
  if [[ ${KILN_BF16_FRESH:-0} != 1 ]] && grep '^mean over' "$dir/colorize.log" >/dev/null 2>&1; then
    echo "bf16_accuracy: reusing the finished run in $dir (KILN_BF16_FRESH=1 trains it again)"
    return 0
  fi
  mkdir -p "$dir"
  KILN_DATA_DIR=$data "$build/examples/kiln-train" --preset street --model small --device cpu --threads "$threads" \
    --seed "$1" --precision "$2" --crop 64 --batch 16 --optimizer adam --lr 2e-3 --lr-end-fraction 0.05 \
    --schedule exp --loader-max-side 384 --scales 0.5 0.35 0.25 --val-crops 2 --epochs 6 --steps-per-epoch 100 \
    --samples 6 --overwrite --out "$dir" >"$dir/train.log" 2>&1 ||
    { echo "bf16_accuracy: kiln-train failed for seed $1, $2 ($dir/train.log)" >&2; return 1; }
  "$build/examples/kiln-colorize" --checkpoint "$dir/latest.safetensors" --device cpu --threads "$threads" \
    --max-side 192 --compare --out "$dir/colorized" "${frames[@]}" >"$dir/colorize.log" 2>&1 ||
    { echo "bf16_accuracy: kiln-colorize failed for seed $1, $2 ($dir/colorize.log)" >&2; return 1; }
}

for s in "${seeds[@]}"; do
  echo "bf16_accuracy: seed $s, fp32 and bf16 ($out/$s-fp32, $out/$s-bf16)"
  if [[ $parallel == 1 ]]; then
    run "$s" fp32 &
    a=$!
    run "$s" bf16 &
    b=$!
    wait "$a" && wait "$b" || exit 1
  else
    run "$s" fp32
    run "$s" bf16
  fi
done

# The table: the last epoch's validation MSE(ab) on kiln-train's crops, then the whole frames'.
echo
echo "| seed | precision | val MSE(ab), crops (grey) | whole frames MSE(ab) (grey) | train minutes |"
echo "|---|---|---|---|---|"
for s in "${seeds[@]}"; do
  for p in fp32 bf16; do
    dir=$out/$s-$p
    python3 - "$dir/metrics.jsonl" "$dir/colorize.log" "$s" "$p" <<'EOF'
import json, re, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
m = re.search(r"MSE\(ab\) ([0-9.]+) \(grey baseline ([0-9.]+)\)", open(sys.argv[2]).read())
whole = f"{float(m.group(1)):.2f} ({float(m.group(2)):.2f})" if m else "?"
print(f"| {sys.argv[3]} | {sys.argv[4]} | {last['val_mse_ab']:.2f} ({last['baseline_mse_ab']:.2f}) | {whole} | "
      f"{last['seconds'] / 60:.1f} |")
EOF
  done
done
