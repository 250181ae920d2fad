#!/usr/bin/env bash
# Builds and runs examples/consumer against kiln twice: through add_subdirectory,
# and through find_package(kiln) after `cmake --install` into a temporary prefix.
set -euo pipefail
src=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Both builds without a build type (no -O, no -g): they prove the two ways in, not the optimiser
# (kiln's own Release build compiles the same headers at -O3); at Release the first one cost the
# suite 10 CPU-s of 25.
echo "--- add_subdirectory"
cmake -S "$src/examples/consumer" -B "$work/sub" -DKILN_SOURCE_DIR="$src" -DCMAKE_BUILD_TYPE= >/dev/null
cmake --build "$work/sub" -j 2 >/dev/null
"$work/sub/consumer"

echo "--- find_package after cmake --install (every option at its default, nothing built)"
cmake -S "$src" -B "$work/kiln" -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
cmake --install "$work/kiln" >/dev/null
test -f "$work/prefix/include/kiln/kiln.hpp"
test -f "$work/prefix/include/kiln/kernels/kiln/gpu/gpu.hpp"
# Headers under include/kiln/ only: nothing else at the top of include/.
stray=$(ls -A "$work/prefix/include" | grep -vx kiln || true)
[ -z "$stray" ] || { echo "consumer: the install put files at the top of include/: $stray" >&2; exit 1; }
[ ! -e "$work/prefix/bin" ] || { echo "consumer: a plain install installed programs ($(ls "$work/prefix/bin"))" >&2; exit 1; }
cmake -S "$src/examples/consumer" -B "$work/pkg" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE= >/dev/null
cmake --build "$work/pkg" -j 2 >/dev/null
"$work/pkg/consumer"
echo "consumer: both ways work"
