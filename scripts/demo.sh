#!/usr/bin/env bash
# kiln's demo, the README's main command:
#   bash scripts/demo.sh            # about 6 minutes on 2 idle CPU cores from a fresh clone
#   bash scripts/demo.sh --smoke    # every stage, with a few training steps (CI runs this)
# 1. installs missing Debian packages (scripts/install-deps.sh) and the street photos
#    (scripts/install-data.sh --preset street: the 795 frames of a fixed street camera, opencv-doc's
#    vtest.avi, frames 1-596 for training, 597-795 for validation),
# 2. builds kiln-train and kiln-colorize (Release, build/demo/),
# 3. trains the small U-Net on the training frames (600 steps of 16 crops; on the GPU when there
#    is one, else on all CPU cores; at most KILN_DEMO_MINUTES=10 minutes),
# 4. colorizes every 10th validation frame (whole 768x576 frames, never seen in training) with
#    --compare, prints MSE(ab) against the grey baseline, and writes a grey | kiln | original
#    picture of four of them.
# Everything goes to out/demo/ (a previous out/demo/ is first renamed out/demo.<its date>/).
# Environment: KILN_DEMO_SEED (default 1), KILN_DEMO_MINUTES, KILN_DEMO_BUILD_DIR (default build/demo),
# KILN_DEMO_CMAKE_ARGS (extra CMake arguments, e.g. -DKILN_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3
# for the AVX2 code path on an AVX-512 machine), KILN_DEMO_OUT (default out/demo), KILN_DEMO_THREADS
# (CPU threads, default 0: all cores). scripts/demo_matrix.sh runs it for several seeds and code paths.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

smoke=0
case ${1:-} in
  "") ;;
  --smoke) smoke=1 ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "demo: unknown argument '$1' (use --smoke or nothing)" >&2; exit 2 ;;
esac
minutes=${KILN_DEMO_MINUTES:-10}
[[ $minutes =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "demo: KILN_DEMO_MINUTES must be a number of minutes, got '$minutes'" >&2; exit 2; }
seed=${KILN_DEMO_SEED:-1}
threads=${KILN_DEMO_THREADS:-0}
[[ $threads =~ ^[0-9]+$ ]] || { echo "demo: KILN_DEMO_THREADS must be a whole number, got '$threads'" >&2; exit 2; }
[[ $seed =~ ^[0-9]+$ ]] || { echo "demo: KILN_DEMO_SEED must be a whole number, got '$seed'" >&2; exit 2; }
out=${KILN_DEMO_OUT:-out/demo}
build=${KILN_DEMO_BUILD_DIR:-build/demo}
read -r -a extra_cmake <<<"${KILN_DEMO_CMAKE_ARGS:-}"
jobs=$(nproc 2>/dev/null || echo 2)
start=$(date +%s)
step() { printf '\n=== demo: %s (%ds)\n' "$*" $(($(date +%s) - start)); }

step "dependencies"
bash scripts/install-deps.sh

step "photos: the street camera (Debian's opencv-doc -> data/photos/street)"
bash scripts/install-data.sh --preset street

# With a GPU (and nvcc), the programs are compiled by nvcc so that --device auto trains on it;
# should that build fail, the demo goes on with a CPU build.
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; fi
nvcc_bin=$(command -v nvcc 2>/dev/null || true)
[[ -z $nvcc_bin && -x /usr/local/cuda/bin/nvcc ]] && nvcc_bin=/usr/local/cuda/bin/nvcc
configure_and_build() {  # configure_and_build DIR CMAKE-ARGS...
  local dir=$1; shift
  mkdir -p "$(dirname "$dir")"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=OFF "$@" \
    "${extra_cmake[@]}" >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" --target kiln-train kiln-colorize
}
built=0
if [[ $gpu == 1 && -n $nvcc_bin ]]; then
  step "build for the GPU (Release, nvcc, $build)"
  if configure_and_build "$build" -DKILN_CUDA=ON -DKILN_PROGRAMS_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin"; then
    built=1
  else
    echo "demo: building the programs with nvcc failed; building them for the CPU instead" >&2
    build=$build-cpu
  fi
elif [[ $gpu == 1 ]]; then
  echo "demo: a GPU is present but nvcc was not found: training on the CPU" >&2
fi
if [[ $built == 0 ]]; then
  step "build (Release, $build)"
  configure_and_build "$build" -DKILN_CUDA=OFF || { echo "demo: the build failed (messages above)" >&2; exit 1; }
fi

# An earlier run's folder is kept, renamed after the time it was last written: nothing is deleted.
if [[ -e $out ]]; then
  kept=$out.$(date -r "$out" '+%Y%m%d-%H%M%S')
  while [[ -e $kept ]]; do kept=$kept.1; done
  mv "$out" "$kept"
  echo "demo: the previous $out is kept as $kept (remove it when you no longer need it)"
fi
mkdir -p "$out"

epochs=6 steps=100 val_crops=2
((smoke)) && epochs=1 steps=5 val_crops=1
step "training the small U-Net: $((epochs * steps)) steps, at most $minutes minutes ($out/train.log)"
# Random 64-pixel crops, 16 per step, of frames cached 384 pixels long, each crop covering half,
# a third or a quarter of the frame's short side; Adam, the learning rate decaying exponentially
# from 2e-3 to 1e-4. A fixed number of steps, so any machine trains the same model for a seed;
# the time limit only guards a very slow one. docs/results.md has the measurements behind this.
"$build/examples/kiln-train" --preset street --model small --device auto --threads "$threads" --seed "$seed" \
  --crop 64 --batch 16 --optimizer adam --lr 2e-3 --lr-end-fraction 0.05 --schedule exp \
  --loader-max-side 384 --scales 0.5 0.35 0.25 --val-crops "$val_crops" \
  --epochs "$epochs" --steps-per-epoch "$steps" --time-budget "${minutes}m" \
  --samples 6 --out "$out" 2>&1 | tee "$out/train.log"
status=${PIPESTATUS[0]}
[[ $status == 0 ]] || { echo "demo: kiln-train failed (exit $status)" >&2; exit "$status"; }

# Whole validation frames: every 10th of the 199 (every 66th in the smoke run).
frames=()
every=10
((smoke)) && every=66
i=0
for f in data/photos/street/val/*.jpg; do
  if ((i % every == 0)); then frames+=("$f"); fi
  i=$((i + 1))
done
step "colorizing ${#frames[@]} whole validation frames ($out/colorized/)"
# 192 pixels is the largest view the model was trained on (384 x 0.5); the original L is kept at
# full resolution, only ab is upsampled.
"$build/examples/kiln-colorize" --checkpoint "$out/latest.safetensors" --device auto --threads "$threads" \
  --max-side 192 --compare \
  --out "$out/colorized" "${frames[@]}" 2>&1 | tee "$out/colorize.log"
status=${PIPESTATUS[0]}
[[ $status == 0 ]] || { echo "demo: kiln-colorize failed (exit $status)" >&2; exit "$status"; }

step "the picture: grey | kiln | original ($out/demo.jpg)"
picks=()
for f in "$out"/colorized/*_compare.png; do picks+=("$f"); done
n=${#picks[@]}
((n > 4)) && picks=("${picks[0]}" "${picks[n / 3]}" "${picks[2 * n / 3]}" "${picks[n - 1]}")
inputs=()
for f in "${picks[@]}"; do inputs+=(-i "$f"); done
if ((${#picks[@]} == 1)); then filter="[0:v]scale=1152:-2"; else filter="vstack=inputs=${#picks[@]},scale=1152:-2"; fi
ffmpeg -nostdin -hide_banner -loglevel error -y "${inputs[@]}" -filter_complex "$filter" -q:v 4 "$out/demo.jpg" ||
  { echo "demo: ffmpeg could not put the comparison picture together" >&2; exit 1; }

step "done"
mean=$(grep '^mean over' "$out/colorize.log" || true)
echo "Whole validation frames, MSE of a and b in CIE Lab units (grey predicts a = b = 0):"
echo "  $mean"
if [[ $mean =~ MSE\(ab\)\ ([0-9.]+)\ \(grey\ baseline\ ([0-9.]+)\) ]]; then
  awk -v m="${BASH_REMATCH[1]}" -v g="${BASH_REMATCH[2]}" \
    'BEGIN { printf "  kiln %.2f vs grey %.2f: %.1f%% of grey'"'"'s error\n", m, g, 100 * m / g }'
fi
((smoke)) && echo "  (smoke run: $((epochs * steps)) training steps only; the numbers mean nothing)"
cat <<EOT

Look at:
  $out/demo.jpg                  four validation frames: grey input | kiln's colours | original
  $out/colorized/*_compare.png   the same for every colorized frame, full size
  $out/samples.png               validation crops: grey | kiln | original
  $out/loss.png                  training loss and validation MSE per epoch (vs the grey baseline)
  $out/metrics.jsonl             one line of numbers per epoch
  $out/latest.safetensors        the model; colorize other frames of this camera with
    $build/examples/kiln-colorize --checkpoint $out/latest.safetensors --max-side 192 --out DIR PHOTO...
This model knows one street camera's scene; it does not colour arbitrary photos well.
EOT
