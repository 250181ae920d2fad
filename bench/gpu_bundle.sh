#!/usr/bin/env bash
# Builds kiln's GPU binaries on a machine WITHOUT a GPU (nvcc is enough) and gathers them into one
# folder that bench/gpu_report.sh --prebuilt runs on a GPU machine, so that a short loan of a GPU
# goes to running, not compiling:
#
#   bench/gpu_bundle.sh [DIR]        # default DIR: gpu-bundle (in the repository root, git-ignored)
#
# DIR/bench     kiln_bench_gpu, kiln_bench_step_gpu      (per-layer vs cuDNN, whole step)
# DIR/tests     kiln_gpu_tests                           (the kernel table on the device, vs cuDNN)
# DIR/examples  kiln-train, kiln-colorize compiled by nvcc (with KILN_BUNDLE_PROGRAMS=1, the default)
# DIR/lib       shared libraries a CUDA machine may lack (Google Benchmark's)
# DIR/lib-fallback  the CUDA runtime, used only where the GPU machine has none
# DIR/street    every 4th training and 10th validation frame of data/photos/street (installed here
#               first: scripts/install-data.sh --preset street), for the report's short GPU training
#               run, since the GPU machine reaches nothing outside it
# DIR.tar.gz    all of DIR in one archive (about 40 MB: the binaries are mostly device code that
#               compresses about 3x), the one path to carry to a GPU machine: the device tool moves
#               at most 64 MiB, which the unpacked binaries alone pass. On the GPU machine:
#                 tar -xzf gpu-bundle.tar.gz && KILN_REPORT_DATA=gpu-bundle/street \
#                   bash bench/gpu_report.sh --prebuilt gpu-bundle
# cuDNN is not bundled (hundreds of MB): gpu_report.sh finds the GPU machine's own (system or the
# nvidia-cudnn Python package). Host code is built for x86-64-v3 (AVX2), which any recent x86 runs.
#
# Environment: KILN_BUNDLE_ARCH (default 90a: H100/H200, with the sm_90a-only wgmma code that
# tests/gpu/test_gpu_wgmma.cpp checks), KILN_BUNDLE_BUILD_DIR (default build/gpu-bundle),
# KILN_BUNDLE_PROGRAMS (1/0), KILN_BUNDLE_PROGRAMS_BUILD_DIR (default: the build folder +
# -programs), KILN_BUNDLE_JOBS (default nproc).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dest=${1:-gpu-bundle}
arch=${KILN_BUNDLE_ARCH:-90a}
build=${KILN_BUNDLE_BUILD_DIR:-build/gpu-bundle}
programs=${KILN_BUNDLE_PROGRAMS:-1}
programs_build=${KILN_BUNDLE_PROGRAMS_BUILD_DIR:-$build-programs}
jobs=${KILN_BUNDLE_JOBS:-$(nproc)}
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[[ -x $nvcc ]] || { echo "gpu_bundle: nvcc not found (put the CUDA toolkit's bin/ on PATH)" >&2; exit 2; }

mkdir -p "$(dirname "$build")"
common=(-DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc"
  -DKILN_CUDA_ARCHITECTURES="$arch" -DKILN_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3)
cmake -S . -B "$build" "${common[@]}" -DKILN_CUDNN=ON -DKILN_BUILD_TESTS=ON -DKILN_BUILD_EXAMPLES=OFF \
  -DKILN_BUILD_BENCH=ON >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$jobs" --target kiln_gpu_tests kiln_bench_gpu kiln_bench_step_gpu
if [[ $programs == 1 ]]; then
  # The programs in their own tree: KILN_PROGRAMS_CUDA compiles them with nvcc.
  cmake -S . -B "$programs_build" "${common[@]}" -DKILN_PROGRAMS_CUDA=ON -DKILN_BUILD_TESTS=OFF \
    -DKILN_BUILD_BENCH=OFF >"$programs_build.configure.log" 2>&1 || { cat "$programs_build.configure.log"; exit 1; }
  cmake --build "$programs_build" -j "$jobs" --target kiln-train kiln-colorize
fi

rm -rf "$dest"
mkdir -p "$dest/bench" "$dest/tests" "$dest/lib" "$dest/lib-fallback"
cp "$build/bench/kiln_bench_gpu" "$build/bench/kiln_bench_step_gpu" "$dest/bench/"
cp "$build/tests/kiln_gpu_tests" "$dest/tests/"
if [[ $programs == 1 ]]; then
  mkdir -p "$dest/examples"
  cp "$programs_build/examples/kiln-train" "$programs_build/examples/kiln-colorize" "$dest/examples/"
fi
copy_lib() {  # copy_lib NAME-PATTERN DEST: the library the bundle's binaries resolve for NAME-PATTERN
  local path
  path=$(ldd "$dest"/bench/* "$dest"/tests/* | awk -v pat="$1" '$1 ~ pat && $3 ~ /^\// {print $3; exit}')
  [[ -n $path ]] && cp -L "$path" "$2/"
}
copy_lib '^libbenchmark' "$dest/lib"
copy_lib '^libcudart' "$dest/lib-fallback"
{
  echo "commit $(git rev-parse --short HEAD)$(git status --porcelain -uno | grep . >/dev/null && echo ' (with uncommitted changes)'), sm_$arch, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "built on: $(lscpu | sed -n 's/^Model name: *//p' | head -n1), $("$nvcc" --version | tail -n 2 | head -n 1)"
} >"$dest/BUILD_INFO"
street=data/photos/street
[[ -d $street/train && -d $street/val ]] || bash scripts/install-data.sh --preset street ||
  echo "gpu_bundle: no street photos ($street); the report's GPU training run will be skipped" >&2
if [[ -d $street/train && -d $street/val ]]; then
  mkdir -p "$dest/street/train" "$dest/street/val"
  find "$street/train" -maxdepth 1 -name '*.jpg' | sort | awk 'NR % 4 == 1' | xargs -r cp -t "$dest/street/train"
  find "$street/val" -maxdepth 1 -name '*.jpg' | sort | awk 'NR % 10 == 1' | xargs -r cp -t "$dest/street/val"
fi
du -sh "$dest"
tar -czf "$dest.tar.gz" -C "$(dirname "$dest")" "$(basename "$dest")"
bytes=$(stat -c %s "$dest.tar.gz")
echo "gpu_bundle: $dest.tar.gz, $((bytes / 1048576)) MiB"
((bytes < 64 * 1048576)) || { echo "gpu_bundle: $dest.tar.gz is over the device tool's 64 MiB" >&2; exit 1; }
echo "gpu_bundle: $dest is ready; on the GPU machine: tar -xzf $dest.tar.gz && KILN_REPORT_DATA=$dest/street bash bench/gpu_report.sh --prebuilt $dest"
