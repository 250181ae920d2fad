#!/usr/bin/env bash
# Compile time of every translation unit of a Release build, in CPU seconds (user + system, which
# other processes on a shared machine change much less than the wall time), largest first.
#   bench/compile_times.sh [BUILD_DIR] [cmake args...]     (default build/compile-times, CPU build)
# The build dir is configured with this script as the compiler launcher and rebuilt from scratch;
# the table goes to stdout and BUILD_DIR/compile_times.txt.
set -euo pipefail

if [[ ${1:-} == --record ]]; then  # launcher mode: --record LOG compiler args...
  log=$2; shift 2
  src=""
  for a in "$@"; do case $a in *.cpp | *.cu | *.cxx) src=$a ;; esac; done  # .cxx: unity and PCH units
  exec /usr/bin/time -a -o "$log" -f "%U %S %e $src" "$@"
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$root/build/compile-times}
[[ $# -gt 0 ]] && shift
command -v /usr/bin/time >/dev/null || { echo "compile_times.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
log=$(realpath -m "$dir")/compile_times.raw
self=$(realpath "${BASH_SOURCE[0]}")

cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=OFF \
      "-DCMAKE_CXX_COMPILER_LAUNCHER=$self;--record;$log" "$@" >/dev/null
cmake --build "$dir" --target clean >/dev/null
rm -f "$log"
start=$(date +%s)
# The whole build's CPU seconds too: compilers, linkers, make and cmake (children of the build).
/usr/bin/time -o "$dir/compile_times.build" -f "%U %S" cmake --build "$dir" -j "${KILN_JOBS:-$(nproc)}" >/dev/null
wall=$(($(date +%s) - start))
build_cpu=$(awk '{ printf "%.0f", $1 + $2 }' "$dir/compile_times.build")

{
  echo "| translation unit | CPU s | wall s |"
  echo "|---|---:|---:|"
  awk -v root="$root/" -v build="$(realpath -m "$dir")/" '{ f = $4; sub(root, "", f); sub(build, "", f); printf "| `%s` | %.1f | %.1f |\n", f, $1 + $2, $3 }' "$log" |
    sort -t'|' -k3 -rn
  awk '{ s += $1 + $2 } END { printf "| **all %d files** | **%.0f** | |\n", NR, s }' "$log"
  echo
  echo "whole build: ${build_cpu} CPU s (compiling and linking), ${wall} s wall with -j ${KILN_JOBS:-$(nproc)};" \
       "$(uptime | sed 's/.*load/load/')"
} | tee "$dir/compile_times.txt"
