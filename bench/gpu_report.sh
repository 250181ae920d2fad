#!/usr/bin/env bash
# One-shot GPU report for kiln: run this ONCE on a machine with an NVIDIA GPU.
#
#   bench/gpu_report.sh            # from the repository root (or anywhere: it finds the root)
#   bench/gpu_report.sh --prebuilt DIR
#                                  # runs binaries built elsewhere by bench/gpu_bundle.sh (no compiling
#                                  # on the GPU machine: its minutes go to running)
#
# Needs: the CUDA toolkit (nvcc), cuDNN 9, CMake >= 3.24, a C++20 g++, Google Benchmark's C++
# library (Debian: libbenchmark-dev), doctest (Debian: doctest-dev, only for the tests), and PyTorch
# with CUDA (for the PyTorch row; skipped if absent). Nothing is downloaded.
#
# What it does, within about 8 minutes (each phase has a `timeout`):
#   1. configure + build kiln (Release, -DKILN_CUDA=ON -DKILN_CUDNN=ON, only this GPU's architecture)
#   2. ctest -L gpu                      our kernels against the CPU reference, on the device
#   3. kiln_bench_gpu                    every layer: our kernels vs cuDNN fp32 vs cuDNN TF32
#   4. kiln_bench_step_gpu               whole U-Net training step / inference on the GPU, in strict fp32,
#                                        TF32 and BF16 (cuda, cuda_tf32, cuda_bf16)
#   5. compare_pytorch.py --device cuda  the same U-Net training step in PyTorch, both sides in strict fp32,
#                                        TF32 and BF16 (PyTorch: autocast, AMP)
#   6. compute-sanitizer                 memcheck, racecheck, synccheck, initcheck over the gpu tests
#   7. kiln-train / kiln-colorize        a short training run on the GPU (--prebuilt with programs,
#                                        and the street photos installed: KILN_REPORT_DATA), then the
#                                        same in BF16 (--precision bf16) if time is left
#   8. bench/gpu_report.py               ONE markdown report: bench/out/gpu-report.md
# Raw outputs (JSON, logs) are kept next to it in bench/out/. A phase that fails or runs out of
# time is recorded in the report and the script goes on with the next one, so a 30-minute loan of
# a GPU always ends with a report. Exit status: 0 if every phase succeeded, 1 otherwise.
#
# Environment knobs: KILN_REPORT_BUDGET_S (default 480: the whole run), KILN_REPORT_MIN_TIME
# (default 0.05: Google Benchmark's --benchmark_min_time per layer row), KILN_REPORT_BUILD_DIR
# (default build-gpu-report), KILN_REPORT_JOBS (default: nproc), CUDNN_PATH (where cuDNN lives,
# when not next to the CUDA toolkit), KILN_REPORT_ARCH (e.g. 90; default: this GPU's).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prebuilt="${KILN_REPORT_PREBUILT:-}"
while (($#)); do
  case $1 in
    --prebuilt) prebuilt=${2:?--prebuilt needs a folder made by bench/gpu_bundle.sh}; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu_report: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -n $prebuilt ]]; then
  prebuilt=$(cd "$prebuilt" 2>/dev/null && pwd) || { echo "gpu_report: --prebuilt: no such folder" >&2; exit 2; }
  [[ -f $prebuilt/bench/kiln_bench_gpu ]] || { echo "gpu_report: $prebuilt has no bench/kiln_bench_gpu (make it with bench/gpu_bundle.sh)" >&2; exit 2; }
fi
cd "$root" || exit 2
out="$root/bench/out"
build="${KILN_REPORT_BUILD_DIR:-$root/build-gpu-report}"
budget="${KILN_REPORT_BUDGET_S:-480}"
min_time="${KILN_REPORT_MIN_TIME:-0.05}"
jobs="${KILN_REPORT_JOBS:-$(nproc)}"
start=$(date +%s)
status_file="$out/phases.tsv"   # phase <TAB> status <TAB> seconds <TAB> note: read by gpu_report.py
failed=0

say() { echo "gpu_report: $*" >&2; }
left() { echo $((budget - ($(date +%s) - start))); }
# record PHASE STATUS SECONDS NOTE
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$status_file"; [[ $2 == ok || $2 == skipped ]] || failed=1; }
# phase NAME MAX_SECONDS LOG COMMAND...: runs with a timeout (the smaller of MAX_SECONDS and what is
# left of the budget, minus RESERVE seconds kept for the phases after it), records the outcome.
phase() {
  local name=$1 max=$2 log=$3 reserve=${RESERVE:-0}
  shift 3
  local avail=$(($(left) - reserve))
  ((avail < max)) && max=$avail
  if ((max < 10)); then
    say "$name: skipped, the time budget is spent"
    record "$name" "skipped (no time left)" 0 ""
    return 1
  fi
  say "$name (at most ${max}s): $*"
  local t0 rc
  t0=$(date +%s)
  timeout --signal=TERM --kill-after=10 "$max" "$@" >"$log" 2>&1
  rc=$?
  local dt=$(($(date +%s) - t0))
  if ((rc == 0)); then
    record "$name" ok "$dt" ""
  elif ((rc == 124 || rc == 137)); then
    say "$name: TIMED OUT after ${dt}s (log: $log)"
    record "$name" "timed out" "$dt" "$(tail -n 3 "$log" | tr '\t\n' '  ')"
  else
    say "$name: FAILED (exit $rc, log: $log)"
    record "$name" "failed (exit $rc)" "$dt" "$(tail -n 5 "$log" | tr '\t\n' '  ')"
  fi
  return $rc
}

# ---- 0. preflight: say what is missing, and how to get it ------------------------------------------
if [[ -z $prebuilt ]]; then
missing=()
command -v nvidia-smi >/dev/null || missing+=("nvidia-smi (the NVIDIA driver): no GPU driver on this machine?")
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[[ -x $nvcc ]] || missing+=("nvcc (the CUDA toolkit): put /usr/local/cuda/bin on PATH")
command -v cmake >/dev/null || missing+=("cmake >= 3.24 (apt-get install cmake, or pip install cmake)")
find_config() {  # find_config NAME: is CMake's NAMEConfig.cmake / name-config.cmake installed somewhere usual?
  local lower=${1,,} dirs=(/usr/lib /usr/share /usr/local /opt)
  local extra=${CMAKE_PREFIX_PATH:-}
  [[ -n $extra ]] && IFS=: read -r -a more <<<"$extra" && dirs+=("${more[@]}")
  find "${dirs[@]}" -maxdepth 6 \
    \( -name "${1}Config.cmake" -o -name "${lower}-config.cmake" \) -print -quit 2>/dev/null | grep . >/dev/null
}
find_config benchmark || missing+=("Google Benchmark's C++ library: apt-get install libbenchmark-dev (Debian/Ubuntu). \
pip's google-benchmark is the Python binding, NOT the C++ library; from source: \
https://github.com/google/benchmark (cmake -DBENCHMARK_ENABLE_TESTING=OFF, install, then set CMAKE_PREFIX_PATH)")
cudnn_h=$(find "${CUDNN_PATH:-/nonexistent}" "$(dirname "$(dirname "$nvcc")")" /usr/include /usr/local/include \
  /usr/local/cuda/include -maxdepth 3 -name cudnn.h -print -quit 2>/dev/null)
[[ -n $cudnn_h ]] || missing+=("cuDNN 9 (cudnn.h): apt-get install cudnn9-cuda-13 (NVIDIA's repository) or set CUDNN_PATH")
if ((${#missing[@]})); then
  say "cannot run: missing"
  for m in "${missing[@]}"; do echo "  - $m" >&2; done
  exit 2
fi
else
  command -v nvidia-smi >/dev/null || { say "cannot run: nvidia-smi (the NVIDIA driver) is missing"; exit 2; }
  nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  # Libraries the bundle's binaries need and this machine lacks on its default path (cuDNN and the
  # CUDA runtime often live in Python packages, nvidia-*): found once, added to LD_LIBRARY_PATH.
  libpath="$prebuilt/lib"
  for exe in "$prebuilt"/bench/* "$prebuilt"/tests/* "$prebuilt"/examples/*; do
    [[ -f $exe && -x $exe ]] || continue
    for lib in $(LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$exe" 2>/dev/null | awk '/not found/ {print $1}'); do
      hit=$(find "$prebuilt/lib-fallback" /usr/local/cuda*/lib* /usr/lib/x86_64-linux-gnu /opt /usr/local/lib \
        -maxdepth 9 -name "$lib" -print -quit 2>/dev/null)
      if [[ -n $hit ]]; then libpath="$libpath:$(dirname "$hit")"; say "using $hit"
      else say "warning: $(basename "$exe") needs $lib, found nowhere"; fi
    done
  done
  export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  cudnn_h="(prebuilt: $(cat "$prebuilt/BUILD_INFO" 2>/dev/null | tr '\n' ' '))"
  have_doctest=ON
fi
mkdir -p "$out"
: >"$status_file"
if [[ -z $prebuilt ]]; then have_doctest=ON; fi
if [[ -z $prebuilt ]] && ! find_config doctest; then
  have_doctest=OFF
  say "doctest not found (apt-get install doctest-dev): the gpu tests are skipped, the benchmarks still run"
fi

# Only this GPU's architecture: compiles in half the time of the default "80;90".
arch="${KILN_REPORT_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')}"
[[ -n $arch ]] || arch=native
[[ $arch == 90 ]] && arch=90a  # H100/H200: sm_90a, where kiln::gpu::wgmma is not a trap (tests/gpu/test_gpu_wgmma.cpp)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "host: $(hostname)"
  echo "git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') $(git -C "$root" status --porcelain 2>/dev/null | grep . >/dev/null && echo '(with uncommitted changes)')"
  echo "cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1), $(nproc) CPUs"
  echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null | head -n1)"
  echo "nvcc: $("$nvcc" --version 2>/dev/null | tail -n 2 | head -n 1)"
  echo "cudnn: $cudnn_h"
  echo "cmake: $(cmake --version 2>/dev/null | head -n1)"
  echo "arch: $arch"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

if [[ -z $prebuilt ]]; then
# ---- 1. configure + build -------------------------------------------------------------------------
RESERVE=300 phase configure 120 "$out/configure.log" \
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON -DKILN_CUDNN=ON \
  -DCMAKE_CUDA_COMPILER="$nvcc" -DKILN_CUDA_ARCHITECTURES="$arch" -DKILN_BUILD_TESTS=$have_doctest \
  -DKILN_BUILD_EXAMPLES=OFF -DKILN_BUILD_BENCH=ON \
  || { say "configure failed: see $out/configure.log"; }

targets=(kiln_bench_gpu kiln_bench_step_gpu)
if [[ $have_doctest == ON ]] && cmake --build "$build" --target help 2>/dev/null | grep kiln_gpu_tests >/dev/null; then
  targets+=(kiln_gpu_tests)
fi
RESERVE=240 phase build 300 "$out/build.log" cmake --build "$build" -j "$jobs" --target "${targets[@]}"

bin="$build/bench"
tests_bin="$build/tests/kiln_gpu_tests"
else
  record build skipped 0 "prebuilt: $(cat "$prebuilt/BUILD_INFO" 2>/dev/null | head -n 1)"
  bin="$prebuilt/bench"
  tests_bin="$prebuilt/tests/kiln_gpu_tests"
fi
# ---- 2. the gpu tests -----------------------------------------------------------------------------
if [[ -n $prebuilt ]]; then
  RESERVE=200 phase "gpu tests (kiln_gpu_tests)" 60 "$out/ctest-gpu.log" "$tests_bin"
elif [[ $have_doctest != ON ]]; then
  record "ctest -L gpu" skipped 0 "doctest not installed (apt-get install doctest-dev)"
elif [[ ! -f $build/CTestTestfile.cmake ]]; then
  record "ctest -L gpu" "failed (not configured)" 0 "see configure.log"
else
  RESERVE=200 phase "ctest -L gpu" 90 "$out/ctest-gpu.log" ctest --test-dir "$build" -L gpu --output-on-failure
fi

# ---- 3. per-layer benchmarks: ours vs cuDNN fp32 vs cuDNN TF32 ---------------------------------------
if [[ -x $bin/kiln_bench_gpu ]]; then
  RESERVE=90 phase "kiln_bench_gpu" 180 "$out/bench_gpu.log" "$bin/kiln_bench_gpu" \
    --benchmark_min_time="$min_time" --benchmark_out="$out/bench_gpu.json" --benchmark_out_format=json
else
  record kiln_bench_gpu "failed (not built)" 0 "see build.log"
fi

# ---- 4. the whole step on the GPU -----------------------------------------------------------------
if [[ -x $bin/kiln_bench_step_gpu ]]; then
  # Three math modes x two models x train/inference, and three TF32 training variants (the weight
  # gradients' reductions apart, mma.sync only, the forward packing the weights): 36 benchmarks at
  # the two configs PyTorch also runs.
  KILN_BENCH_STEPS=20 KILN_BENCH_WARMUP=3 KILN_BENCH_STEP_CONFIGS=N16_H64,N8_H128 RESERVE=50 \
    phase "kiln_bench_step_gpu" 90 "$out/bench_step_gpu.log" \
    "$bin/kiln_bench_step_gpu" --benchmark_out="$out/bench_step_gpu.json" --benchmark_out_format=json
else
  record kiln_bench_step_gpu "failed (not built)" 0 "see build.log"
fi

# ---- 5. the same U-Net in PyTorch on the GPU (kiln's numbers again, interleaved) -----------------------
py=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    py=$(command -v "$cand")
    break
  fi
done
if [[ -n $py ]]; then
  RESERVE=10 phase "PyTorch (compare_pytorch.py --device cuda)" 120 "$out/pytorch_gpu.log" \
    "$py" "$root/bench/compare_pytorch.py" --device cuda --tf32 --bf16 --no-build --build-dir "$build" \
    --modes train --configs N16_H64,N8_H128 --steps 20 --warmup 3 --json-out "$out/pytorch_gpu.json"
else
  record "PyTorch (compare_pytorch.py --device cuda)" skipped 0 "no python3 with a CUDA-enabled torch"
fi

# ---- 6. compute-sanitizer over the gpu tests (after the timings: it slows the GPU) -----------------
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
if [[ -z $sanitizer ]]; then
  record "compute-sanitizer" skipped 0 "not installed"
elif [[ ! -x $tests_bin ]]; then
  record "compute-sanitizer" skipped 0 "no gpu test binary"
else
  # memcheck over every gpu test; the slower checkers over the kernel-case table (small shapes).
  # The four run side by side: timing is over, and each is bound by its own instrumentation.
  table='--test-case=gpu: every kernel case*'
  RESERVE=0 phase "compute-sanitizer memcheck" 75 "$out/sanitizer-memcheck.log" \
    "$sanitizer" --tool memcheck --leak-check full --error-exitcode 1 "$tests_bin" &
  for tool in racecheck synccheck initcheck; do
    RESERVE=0 phase "compute-sanitizer $tool" 75 "$out/sanitizer-$tool.log" \
      "$sanitizer" --tool "$tool" --error-exitcode 1 "$tests_bin" "$table" &
  done
  wait
  grep -qv $'\t''ok'$'\t' <(grep '^compute-sanitizer' "$status_file") && failed=1
fi

# ---- 7. a short training run and colorization on the GPU (prebuilt programs, photos installed) -----
data="${KILN_REPORT_DATA:-$root/data/photos/street}"
if [[ -n $prebuilt && -x $prebuilt/examples/kiln-train && -d $data/train && -d $data/val ]]; then
  rm -rf "$out/gpu-train"
  RESERVE=0 phase "kiln-train --device cuda" 60 "$out/train_gpu.log" "$prebuilt/examples/kiln-train" \
    --data "$data/train" --val "$data/val" --model base --device cuda --crop 64 --batch 16 \
    --lr 1e-3 --lr-end-fraction 0.05 --schedule exp --loader-max-side 384 --scales 0.5 0.35 0.25 --val-crops 2 \
    --epochs 4 --steps-per-epoch 250 --time-budget 40s --samples 4 --out "$out/gpu-train"
  [[ -f $out/gpu-train/latest.safetensors ]] &&
    RESERVE=0 phase "kiln-colorize --device cuda" 30 "$out/colorize_gpu.log" "$prebuilt/examples/kiln-colorize" \
      --checkpoint "$out/gpu-train/latest.safetensors" --device cuda --max-side 192 --compare \
      --out "$out/gpu-train/colorized" "$data/val"
  # The same run in BF16 (issue 20 item 4 end to end on the device), if time is left.
  rm -rf "$out/gpu-train-bf16"
  RESERVE=0 phase "kiln-train --device cuda --precision bf16" 45 "$out/train_gpu_bf16.log" \
    "$prebuilt/examples/kiln-train" \
    --data "$data/train" --val "$data/val" --model base --device cuda --precision bf16 --crop 64 --batch 16 \
    --lr 1e-3 --lr-end-fraction 0.05 --schedule exp --loader-max-side 384 --scales 0.5 0.35 0.25 --val-crops 2 \
    --epochs 4 --steps-per-epoch 250 --time-budget 30s --samples 4 --out "$out/gpu-train-bf16"
else
  record "kiln-train --device cuda" skipped 0 "needs --prebuilt with examples/ and photos in $data/{train,val}"
fi

# ---- 8. the report --------------------------------------------------------------------------------
report_py=python3
command -v python3 >/dev/null || report_py=/usr/bin/python3
if "$report_py" "$root/bench/gpu_report.py" "$out" >"$out/gpu-report.md" 2>"$out/report.log"; then
  say "report: $out/gpu-report.md ($(($(date +%s) - start))s in all)"
else
  say "gpu_report.py failed (see $out/report.log); raw results are in $out"
  failed=1
fi
exit $failed
