#!/usr/bin/env bash
# kiln's whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. install missing Debian packages
#   2. the README's main command, scripts/demo.sh --smoke, first, as a fresh clone meets it: every
#      stage of the demo (install, photos, build, train a few steps, colorize, the picture); its
#      build folder is the release build's, so the programs are compiled once
#   3. Release build with g++: every test label but emu (gpu tests skip without a GPU); the emulated
#      kernels run in the builds of stages 4 and 5, each of which checks more than this one would
#      (with --quick, which stops here, this stage runs them too)
#   4. the suite again under AddressSanitizer + UndefinedBehaviorSanitizer (not the build-only tests, label build)
#   5. the emulated CUDA kernels (emulator in OS-thread mode) and the data loader under ThreadSanitizer (clang),
#      then the emulator's checking build (clang): race/init/bounds checks on the kernel table, random schedules
#   6. every CUDA kernel compiled by nvcc for sm_80 and sm_90 (when nvcc exists)
#   7. a short libFuzzer run of each fuzz target (clang; docs/reliability.md)
# Build trees go to build/ci-*; pass --quick to run stages 1-3 only. The builds of stages 5-7 run in
# the background at nice 19 from the start, on the cycles stages 2-4 leave idle.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1
jobs=${KILN_JOBS:-$(nproc)}
start=$(date +%s)
# Each stage's header: the wall time so far and the CPU seconds (user + system) of every command
# that has finished, so a log shows where the 2 cores were busy and where one sat idle.
times_file=$(mktemp)
stage() {
  times >"$times_file"  # in this shell: $(times) would report a fresh subshell's zeros
  local cpu
  cpu=$(awk 'NR == 2 { n = split($0, f, /[ms ]+/); printf "%.0f", f[1] * 60 + f[2] + f[3] * 60 + f[4] }' "$times_file")
  echo; echo "=== kiln tests: $* ($(( $(date +%s) - start ))s elapsed, ${cpu} CPU-s)"
}

stage "dependencies"
bash scripts/install-deps.sh clang libclang-rt-14-dev libomp-14-dev clang-format-14

configure() {  # configure DIR [cmake args...]
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=OFF "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; echo "kiln: configuring $dir failed" >&2; exit 1; }
}
# The later stages' builds (ThreadSanitizer, emucheck, nvcc, the fuzz targets) run in the background
# from the start, at the lowest priority (nice 19): they take the cycles the foreground
# leaves idle (configure and link steps, a last long unit, a test tail) and are waited for where
# their stage begins, which prints their output (build/NAME.log).
declare -A side_pid=()
side_start() {  # side_start NAME FUNCTION: FUNCTION in the background, in its own process group
  set -m
  (renice -n 19 -p "$BASHPID" >/dev/null && "$2") </dev/null >"build/$1.log" 2>&1 &
  side_pid[$1]=$!
  set +m
}
side_wait() {  # side_wait NAME: its output, and the suite stops if it failed
  local rc=0
  wait "${side_pid[$1]}" || rc=$?
  unset "side_pid[$1]"
  cat "build/$1.log"
  [ "$rc" = 0 ] || { echo "kiln: $1 failed (exit $rc; build/$1.log)" >&2; exit 1; }
}
side_stop() {  # on exit (a failed stage): no build left running behind
  local pid
  for pid in "${side_pid[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
}
trap 'side_stop; rm -f "$times_file"' EXIT
have_nvcc=0
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then have_nvcc=1; fi
# ThreadSanitizer with clang: the stage's tests ran 3-4x cheaper than with g++ 12 (36-76 CPU-s against
# 126-226 on a shared 2-core Xeon; the same test cases and checks pass, a missing __syncthreads is
# reported by both) and the build took about 15 % less (docs/reliability.md, "CI time", seventh pass).
build_tsan() {
  configure build/ci-tsan -DCMAKE_CXX_COMPILER=clang++ -DKILN_TSAN=ON -DKILN_BUILD_BENCH=OFF -DKILN_BUILD_EXAMPLES=OFF \
    -DCMAKE_CXX_FLAGS_RELEASE=-O1
  cmake --build build/ci-tsan -j "$jobs" --target kiln_emu_tests kiln_tsan_loader_tests
}
build_emucheck() {
  configure build/ci-emucheck -DCMAKE_CXX_COMPILER=clang++ -DKILN_EMU_CHECK=ON -DKILN_BUILD_BENCH=OFF -DKILN_BUILD_EXAMPLES=OFF
  cmake --build build/ci-emucheck -j "$jobs" --target kiln_emucheck_tests
}
build_nvcc() {
  export PATH=$PATH:/usr/local/cuda/bin  # (in this background job only: CUDA in PATH turns KILN_CUDA on)
  configure build/ci-nvcc -DKILN_CUDA=ON -DKILN_CUDNN=ON -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_EXAMPLES=OFF -DKILN_BUILD_BENCH=OFF -DKILN_NVCC_CHECK=ON
  cmake --build build/ci-nvcc -j "$jobs" --target kiln_nvcc_check kiln_sass_fixture kiln_wgmma_check
  # cuobjdump + nvdisasm for the SASS checks: the toolkit's, else NVIDIA's PyPI packages, installed once
  # under build/ (pip --target: no venv, no system site-packages, so Debian 12's externally-managed Python is fine).
  if ! { [ -x /usr/local/cuda/bin/cuobjdump ] && [ -x /usr/local/cuda/bin/nvdisasm ]; } && [ ! -x "$sass_tools/nvdisasm" ]; then
    python3 -m pip install --disable-pip-version-check --quiet --target build/sass-tools \
      nvidia-cuda-cuobjdump==13.5.37 nvidia-cuda-nvdisasm==13.5.37 ||
      python3 -m pip install --disable-pip-version-check --quiet --break-system-packages --target build/sass-tools \
        nvidia-cuda-cuobjdump==13.5.37 nvidia-cuda-nvdisasm==13.5.37
  fi
}
sass_tools=build/sass-tools/nvidia/cu13/bin
build_fuzz() { bash fuzz/build.sh build/fuzz-ci; }

seed_costs() {  # seed_costs BUILD_DIR COLUMN: .ci/test-seconds as ctest's cost data (longest first)
  local data=$1/Testing/Temporary/CTestCostData.txt
  mkdir -p "$(dirname "$data")"
  [ -f "$data" ] || awk -v c="$2" '!/^#/ && NF >= 3 && $c > 0 { print $1, 1, $c }' .ci/test-seconds >"$data"
}

mkdir -p build
if [ "$quick" = 0 ]; then
  [ -d tests/emu ] && ls tests/emu/*.cpp >/dev/null 2>&1 && side_start ci-tsan.build build_tsan
  [ -d tests/emucheck ] && side_start ci-emucheck.build build_emucheck
  [ "$have_nvcc" = 1 ] && side_start ci-nvcc.build build_nvcc
  side_start fuzz-ci.build build_fuzz
fi
stage "the README's main command: bash scripts/demo.sh --smoke"
KILN_DEMO_BUILD_DIR=build/ci-release KILN_DEMO_OUT=out/demo-smoke bash scripts/demo.sh --smoke

# The test stages run two tests at a time, each with OpenMP's two threads: libgomp's default
# spin-wait (it sees 2 threads on 2 CPUs) then burns the core the other test needs. Passive
# waiting sleeps instead; the same threads run the same code (docs/reliability.md, "CI time").
export OMP_WAIT_POLICY=passive
stage "release build"
# The emu suite is left out here: the sanitizer stage runs it (the same fiber emulator, ASan and
# UBSan watching), the ThreadSanitizer and emulator-checking stages again; compiling it a fourth
# time at -O3 cost about 150 CPU-s of the suite's 2300 (docs/reliability.md, "CI time").
# (--quick, which runs no later stage, keeps it.)
emu_here=OFF
[ "$quick" = 1 ] && emu_here=ON
configure build/ci-release -DKILN_BUILD_TESTS=ON -DKILN_BUILD_BENCH=ON -DKILN_BUILD_EXAMPLES=ON -DKILN_BUILD_EMU_TESTS=$emu_here
cmake --build build/ci-release -j "$jobs"
stage "release tests"
seed_costs build/ci-release 2
ctest --test-dir build/ci-release -j "$jobs" --output-on-failure --timeout 900

if [ "$quick" = 1 ]; then exit 0; fi

stage "AddressSanitizer + UndefinedBehaviorSanitizer build"
# -Og without -g: a lighter sanitizer build. Against -O1 its units compile in 54-69% of the CPU
# time and the tests run 17-24% longer, a net gain; -O0 halves the compile time but doubles the
# tests' run time (docs/reliability.md, "CI time"; docs/benchmarks.md). The programs' --device cuda
# (the emulator) is built here only, and only the pair that programs.colorize runs (the release
# build leaves it out; each of the other seven pairs is about 40 CPU-s here).
configure build/ci-asan -DKILN_SANITIZE=ON -DKILN_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS_RELEASE=-Og \
  -DKILN_PROGRAMS_CUDA_DEVICE=ON -DKILN_PROGRAMS_CUDA_PAIRS=colorizer_small_ab
cmake --build build/ci-asan -j "$jobs"
stage "AddressSanitizer + UndefinedBehaviorSanitizer tests"
seed_costs build/ci-asan 3
# One emulator worker per test (KILN_EMU_WORKERS=1: a grid's blocks one after another): ctest already
# runs two tests at a time, and a second worker per test cost 10-75 % more CPU under ASan
# (test_step_graph 46 -> 81 CPU-s) for what the other core was doing anyway. The pool's parallel
# blocks still run in the checking stage below (its default, one worker per core).
KILN_EMU_WORKERS=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/ci-asan -j "$jobs" --output-on-failure --timeout 1200 -LE 'slow|tsan-only|build' \
  -E '^unit[.]format$'  # (the style check reads the sources, not a binary: the release stage ran it)

if [ -d tests/emu ] && ls tests/emu/*.cpp >/dev/null 2>&1; then
  stage "ThreadSanitizer build (emulator in OS-thread mode; the data loader's threads; in the background since the start)"
  side_wait ci-tsan.build
  stage "ThreadSanitizer tests (labels emu, tsan)"
  seed_costs build/ci-tsan 4  # (without it test_conv_mma, 48 s here, started 24th of 24 and ended the stage)
  # Twice as many tests as cores: in OS-thread mode a test waits on its threads' hand-offs more than it
  # computes (a kernel-table shard alone: 15 CPU-s in 27 s of wall), so two per core keep both busy.
  TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build/ci-tsan -j "$((jobs * 2))" --output-on-failure --timeout 1200 \
    -L 'emu|tsan' -LE 'tsan-skip'
fi

if [ -d tests/emucheck ]; then
  # Kernel loads/stores instrumented by clang (docs/emulator.md, "Checking builds"): the checker's
  # deliberate-bug tests, then the kernel table under the default schedule and a random one (its
  # seed from the commit, in the test's name: tests/emucheck.cmake).
  stage "emulator checking build (clang -DKILN_EMU_CHECK=ON; in the background since the start)"
  side_wait ci-emucheck.build
  stage "emulator race, init and bounds checks; kernel table under random schedules (label emucheck)"
  ctest --test-dir build/ci-emucheck -j "$jobs" --output-on-failure --timeout 600 -L emucheck
fi

if [ "$have_nvcc" = 1 ]; then
  stage "nvcc: every kernel compiled for sm_80 and sm_90 (in the background since the start)"
  side_wait ci-nvcc.build
  export PATH=$PATH:/usr/local/cuda/bin
  stage "SASS checks: per-kernel table, thresholds of tests/nvcc/sass_thresholds.json"
  sass_dir=$(dirname "$(find build/sass-tools -path '*/bin/nvdisasm' 2>/dev/null | head -1)" 2>/dev/null || true)
  # The deliberate regressions first: the check must catch each one (and nothing else) ...
  python3 tests/nvcc/sass_check.py --tools-dir "$sass_dir" --tools-dir "$sass_tools" --kernels 'sass_fixture_*' \
    --expect sass_fixture_local_array:local_ops --expect sass_fixture_local_array:local_bytes \
    --expect sass_fixture_generic_load:generic_loads_in_loops --expect sass_fixture_div64:div64_in_loops \
    --expect sass_fixture_hmma:inst_per_hmma --expect sass_fixture_hmma:generic_loads_in_loops \
    build/ci-nvcc/kiln_sass_fixture >build/ci-nvcc/sass_fixture.log ||
    { cat build/ci-nvcc/sass_fixture.log; echo "kiln: the SASS check missed a deliberate regression" >&2; exit 1; }
  tail -1 build/ci-nvcc/sass_fixture.log
  # ... then every kernel: the table, the targets not met yet, and a failure on a breached limit.
  python3 tests/nvcc/sass_check.py --tools-dir "$sass_dir" --tools-dir "$sass_tools" --json build/ci-nvcc/sass.json \
    build/ci-nvcc/kiln_nvcc_check
  # wgmma (sm_90a only): the test kernel's and the wgmma forward's SASS (HGMMAs, registers, per HGMMA).
  python3 tests/nvcc/sass_check.py --tools-dir "$sass_dir" --tools-dir "$sass_tools" --arch sm_90a \
    --kernels '*wgmma*' build/ci-nvcc/kiln_wgmma_check | tail -1
else
  echo "kiln: nvcc not found: skipping the GPU compile check" >&2
fi

# 5 s each after replaying the seed corpus and the regressions (which the fuzz.* ctest entries also
# run in the release build, with g++ and Debian's stb; this replay is the sanitizer one: the
# sanitizer build leaves them out); longer runs are fuzz/campaign.sh's job.
stage "fuzzing: each target for ${KILN_FUZZ_SECONDS:-5}s (built in the background since the start)"
side_wait fuzz-ci.build
KILN_FUZZ_BUILT=1 bash fuzz/run_ci.sh "${KILN_FUZZ_SECONDS:-5}"

stage "all stages passed"
# The two main stages' results, repeated as the closing lines for CI.
count() { ctest --test-dir "$1" -N "${@:2}" | sed -n 's/Total Tests: //p'; }
echo "release stage: $(count build/ci-release) tests; sanitizer stage: $(count build/ci-asan -LE 'slow|tsan-only|build' -E '^unit[.]format$') tests (the emu suite among them)"
echo "$(( $(count build/ci-release) + $(count build/ci-asan -L emu) )) passed, 0 failed"
