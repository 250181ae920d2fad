#!/usr/bin/env bash
# The demo's headline across seeds and CPU code paths: runs scripts/demo.sh once per (code path,
# seed) and prints one Markdown row per run (docs/results.md has the table).
#
#   bash scripts/demo_matrix.sh [--seeds "1 2 3"] [--paths "native avx2"] [--threads N]
#
# native: the demo's own build (-march=native: AVX-512 where the CPU has it);
# avx2:   -DKILN_NATIVE=OFF -march=x86-64-v3, the AVX2 + FMA kernels, also on an AVX-512 machine
#         (KILN_CPU_ISA=avx2: such a build would otherwise dispatch to AVX-512 at run time).
# The time limit is raised to 60 minutes so that a busy machine trains exactly the demo's steps
# (the demo's 10-minute limit only ends a very slow run early); each run's wall time is printed.
# Outputs: out/demo-matrix/<path>-s<seed>/ (the demo's files for each run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seeds="1 2 3" paths="native avx2" threads=0
while (($#)); do
  case $1 in
    --seeds) seeds=${2:?--seeds needs a list}; shift ;;
    --paths) paths=${2:?--paths needs a list}; shift ;;
    --threads) threads=${2:?--threads needs a number}; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "demo_matrix: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
isa=AVX2
grep -qw avx512f /proc/cpuinfo && isa=AVX-512
echo "CPU: $cpu ($(nproc) CPUs, $isa), threads ${threads/#0/all}, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
echo
echo "| code path | seed | training | val crops, last epoch, MSE(ab) (grey) | whole frames MSE(ab) (grey) | kiln / grey |"
echo "|---|---|---|---|---|---|"
for path in $paths; do
  case $path in
    native) build=build/demo cmake_args="" force_isa="" ;;
    avx2) build=build/demo-avx2 cmake_args="-DKILN_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3" force_isa=avx2 ;;
    *) echo "demo_matrix: unknown code path '$path' (native, avx2)" >&2; exit 2 ;;
  esac
  for seed in $seeds; do
    out=out/demo-matrix/$path-s$seed
    log=out/demo-matrix/$path-s$seed.log
    mkdir -p out/demo-matrix
    KILN_CPU_ISA=$force_isa KILN_DEMO_SEED=$seed KILN_DEMO_OUT=$out KILN_DEMO_BUILD_DIR=$build KILN_DEMO_CMAKE_ARGS=$cmake_args \
      KILN_DEMO_THREADS=$threads KILN_DEMO_MINUTES=60 bash scripts/demo.sh >"$log" 2>&1 ||
      { echo "demo_matrix: the demo failed for $path seed $seed (log: $log)" >&2; exit 1; }
    took=$(sed -n 's/^ *[0-9]* steps, [0-9]* crops in //p' "$out/train.log" | tail -n 1)
    crops=$(sed -n 's/^epoch [0-9]*\/[0-9]* .* val MSE(ab) \([0-9.]*\) (grey \([0-9.]*\)).*/\1 (\2)/p' "$out/train.log" | tail -n 1)
    whole=$(sed -n 's/^mean over [0-9]* images: MSE(ab) \([0-9.]*\) (grey baseline \([0-9.]*\)).*/\1 \2/p' "$out/colorize.log")
    read -r m g <<<"$whole"
    ratio=$(awk -v m="$m" -v g="$g" 'BEGIN { printf "%.3f", m / g }')
    echo "| $path | $seed | $took | $crops | $m ($g) | $ratio |"
  done
done
