#!/usr/bin/env bash
# Builds and runs examples/consumer against kiln twice: through add_subdirectory,
# and through find_package(kiln) after `cmake --install` into a temporary prefix.
set -euo pipefail
src=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "--- add_subdirectory"
cmake -S "$src/examples/consumer" -B "$work/sub" -DKILN_SOURCE_DIR="$src" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/sub" -j 2 >/dev/null
"$work/sub/consumer"

echo "--- find_package after cmake --install"
cmake -S "$src" -B "$work/kiln" -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_EXAMPLES=OFF -DKILN_BUILD_BENCH=OFF \
      -DKILN_CUDA=OFF -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
cmake --install "$work/kiln" >/dev/null
test -f "$work/prefix/include/kiln/kiln.hpp"
cmake -S "$src/examples/consumer" -B "$work/pkg" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/pkg" -j 2 >/dev/null
"$work/pkg/consumer"
echo "consumer: both ways work"
