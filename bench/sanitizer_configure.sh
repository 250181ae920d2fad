#!/usr/bin/env bash
# Configures BUILD_DIR as scripts/test.sh configures its sanitizer stage, with compile_commands.json:
# the build that bench/sanitizer_cpu_kernels.sh and bench/sanitizer_flags.sh measure.
#   bash bench/sanitizer_configure.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B "${1:?usage: bench/sanitizer_configure.sh BUILD_DIR}" -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=OFF \
  -DKILN_SANITIZE=ON -DKILN_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS_RELEASE=-Og -DKILN_PROGRAMS_CUDA_DEVICE=ON \
  -DKILN_PROGRAMS_CUDA_PAIRS=colorizer_small_ab -DKILN_BUILD_TESTS=ON -DKILN_BUILD_EXAMPLES=ON \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
