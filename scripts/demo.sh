#!/usr/bin/env bash
# kiln's demo, the README's main command:
#   bash scripts/demo.sh
# 1. installs missing Debian packages (scripts/install-deps.sh) and the bundled photos
#    (scripts/install-data.sh --preset default),
# 2. builds kiln-train and kiln-colorize (Release, build/demo/),
# 3. trains the small U-Net on the photos for 400 steps (at most 10 minutes; KILN_DEMO_MINUTES=N
#    changes the limit), on the GPU when there is one, else on all CPU cores,
# 4. colorizes the validation photos with --compare,
# and leaves everything in out/demo/: metrics.jsonl, loss.png, samples.png, the checkpoints,
# colorized/ (one picture per photo and grey | colorized | original comparisons), and the logs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes=${KILN_DEMO_MINUTES:-10}
[[ $minutes =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "demo: KILN_DEMO_MINUTES must be a number of minutes, got '$minutes'" >&2; exit 2; }
out=out/demo
build=build/demo
jobs=$(nproc 2>/dev/null || echo 2)
start=$(date +%s)
step() { printf '\n=== demo: %s (%ds)\n' "$*" $(($(date +%s) - start)); }

step "dependencies"
bash scripts/install-deps.sh

step "photos (Debian packages -> data/photos/default)"
bash scripts/install-data.sh --preset default

# With a GPU (and nvcc), the programs are compiled by nvcc so that --device auto trains on it;
# should that build fail, the demo goes on with a CPU build.
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; fi
nvcc_bin=$(command -v nvcc 2>/dev/null || true)
[[ -z $nvcc_bin && -x /usr/local/cuda/bin/nvcc ]] && nvcc_bin=/usr/local/cuda/bin/nvcc
configure_and_build() {  # configure_and_build DIR CMAKE-ARGS...
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=OFF "$@" \
    >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" --target kiln-train kiln-colorize
}
built=0
if [[ $gpu == 1 && -n $nvcc_bin ]]; then
  step "build for the GPU (Release, nvcc, $build)"
  if configure_and_build "$build" -DKILN_CUDA=ON -DKILN_PROGRAMS_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin"; then
    built=1
  else
    echo "demo: building the programs with nvcc failed; building them for the CPU instead" >&2
    build=build/demo-cpu
  fi
elif [[ $gpu == 1 ]]; then
  echo "demo: a GPU is present but nvcc was not found: training on the CPU" >&2
fi
if [[ $built == 0 ]]; then
  step "build (Release, $build)"
  configure_and_build "$build" -DKILN_CUDA=OFF || { echo "demo: the build failed (messages above)" >&2; exit 1; }
fi

rm -rf "$out"
mkdir -p "$out"
step "training the small U-Net: 400 steps, at most $minutes minutes (out/demo/train.log)"
# Crops of 64 pixels, 16 per step, AdamW (weight decay 0.1), the learning rate decaying
# exponentially from 2e-3 to 1e-4 over 8 epochs of 50 steps. Photos are cached at most 384
# pixels long and a crop covers half of, or the whole of, the short side, so every crop shows
# enough of the scene (sky, water, foliage) for the colours to be learnt quickly; validation
# crops see the photos at the same scales. The run is a fixed number of steps (the time limit
# only guards a slow machine), so it gives the same model on any CPU: docs/results.md has the
# measurements behind these settings (66 training photos overfit within a few hundred steps).
"$build/examples/kiln-train" --preset default --model small --device auto \
  --crop 64 --batch 16 --optimizer adamw --weight-decay 0.1 \
  --lr 2e-3 --lr-end-fraction 0.05 --schedule exp \
  --loader-max-side 384 --scales 0.5 0.35 0.25 --val-crops 6 \
  --epochs 8 --steps-per-epoch 50 --time-budget "${minutes}m" \
  --samples 8 --out "$out" 2>&1 | tee "$out/train.log"
status=${PIPESTATUS[0]}
[[ $status == 0 ]] || { echo "demo: kiln-train failed (exit $status)" >&2; exit "$status"; }

step "colorizing the validation photos (out/demo/colorized/)"
# The last model (best.safetensors is chosen on these same photos). Inference at 128 pixels
# matches the training views' scale (a 384-pixel photo's 128..240-pixel windows seen at 64);
# the original L is kept at full resolution, only ab is upsampled.
"$build/examples/kiln-colorize" --checkpoint "$out/latest.safetensors" --device auto --max-side 128 --compare \
  --out "$out/colorized" data/photos/default/val 2>&1 | tee "$out/colorize.log"
status=${PIPESTATUS[0]}
[[ $status == 0 ]] || { echo "demo: kiln-colorize failed (exit $status)" >&2; exit "$status"; }

step "done"
echo "Headline numbers (MSE of a and b in CIE Lab units; the grey baseline predicts a = b = 0):"
grep -A1 '^summary:' "$out/train.log" | sed 's/^/  /'
grep '^mean over' "$out/colorize.log" | sed 's/^/  full-size validation photos: /'
cat <<EOT

Look at:
  $out/samples.png          grey input | kiln's colours | original, for validation photos
  $out/colorized/*_compare.png   the same at full size, for every validation photo
  $out/loss.png             training loss and validation MSE per epoch (vs the grey baseline)
  $out/metrics.jsonl        one line of numbers per epoch
  $out/latest.safetensors   the model (colorize your own photos:
                            $build/examples/kiln-colorize --checkpoint $out/latest.safetensors --max-side 128 --out DIR PHOTO...)
EOT
