#!/usr/bin/env bash
# What UBSan's checks in the CPU kernels cost the sanitizer stage (docs/reliability.md, "CI time",
# ninth pass): cmake/cpu_once.cpp recompiled with the sanitizer build's own command under each
# variant, the tests relinked, then the kernel-heavy tests of that stage timed.
#   bash bench/sanitizer_cpu_kernels.sh BUILD_DIR
# BUILD_DIR: configured here as scripts/test.sh configures the sanitizer stage (built once, kept).
# Prints per variant: the unit's compile CPU-s and the tests' CPU-s and wall.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: bench/sanitizer_cpu_kernels.sh BUILD_DIR}
bash bench/sanitizer_configure.sh "$dir"
cmake --build "$dir" -j "${KILN_JOBS:-$(nproc)}" >/dev/null
# The unit's command without CMake's -fno-sanitize list (each variant sets its own).
base=$(python3 - "$dir/compile_commands.json" <<'EOF'
import json, sys
for c in json.load(open(sys.argv[1])):
    if c["file"].endswith("cmake/cpu_once.cpp"):
        print(" ".join(a for a in c["command"].split() if not a.startswith("-fno-sanitize=")))
        break
EOF
)
[ -n "$base" ] || { echo "no compile command for cmake/cpu_once.cpp in $dir" >&2; exit 1; }
obj=$(sed -n 's/.* -o \([^ ]*cpu_once.cpp.o\) .*/\1/p' <<<"$base")
tests='^(programs[.](train|resume|outputs|nan_guard)|dist[.]train_parity|unit[.]test_infer)$'
variant() {  # variant LABEL [extra flags]
  local label=$1; shift
  (cd "$dir" && /usr/bin/time -f "$label: compile %U+%S CPU-s" $base "$@")
  touch "$dir/$obj"
  cmake --build "$dir" -j "${KILN_JOBS:-$(nproc)}" >/dev/null
  OMP_WAIT_POLICY=passive KILN_EMU_WORKERS=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    /usr/bin/time -f "$label: tests %U+%S CPU-s, %e s wall" ctest --test-dir "$dir" -j 2 --timeout 1200 -R "$tests" |
    grep -E 'tests passed|Failed'
  echo "$label: load $(cut -d' ' -f1-3 /proc/loadavg)"
}
variant "all of UBSan"
variant "without UBSan's per-access checks" -fno-sanitize=null,alignment,object-size,pointer-overflow,vptr
variant "ASan only" -fno-sanitize=undefined
# Leave the build as CMake configured it.
(cd "$dir" && $base -fno-sanitize=null,alignment,object-size,pointer-overflow,vptr)
touch "$dir/$obj"
cmake --build "$dir" -j "${KILN_JOBS:-$(nproc)}" >/dev/null
