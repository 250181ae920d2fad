#!/usr/bin/env bash
# fuzz/run_ci.sh [SECONDS] — builds every libFuzzer target (fuzz/build.sh, clang with
# address+undefined sanitizers) and fuzzes each for SECONDS (default 20) from its seed corpus
# and its regression inputs. Exits non-zero on a finding (crash, sanitizer report, broken
# property, a run over 25 s, more than 2 GB of memory) and leaves the input in
# build/fuzz-ci/artifacts/<target>/ — copy it to fuzz/regressions/<target>/ once fixed.
# New inputs go to build/fuzz-ci/work/, never into the checked-in corpus.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
seconds="${1:-20}"
out="$repo/build/fuzz-ci"
if ! command -v clang++ >/dev/null; then
  echo "fuzz/run_ci.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi
# KILN_FUZZ_BUILT=1: scripts/test.sh has just built them (fuzz/build.sh build/fuzz-ci).
[[ ${KILN_FUZZ_BUILT:-0} == 1 ]] || "$here/build.sh" "$out"
failed=()
for t in image safetensors dataset; do
  mkdir -p "$out/work/$t" "$out/artifacts/$t"
  echo "=== fuzz_$t for ${seconds}s"
  if ! "$out/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
       -artifact_prefix="$out/artifacts/$t/" "$out/work/$t" "$here/corpus/$t" "$here/regressions/$t" \
       > "$out/$t.log" 2>&1; then
    tail -n 60 "$out/$t.log"
    failed+=("$t")
  else
    grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units)" "$out/$t.log" || true
  fi
done
if (( ${#failed[@]} )); then
  echo "fuzz/run_ci.sh: findings in: ${failed[*]} (inputs in $out/artifacts/)" >&2
  exit 1
fi
echo "fuzz/run_ci.sh: no finding"
