#!/usr/bin/env bash
# fuzz/campaign.sh TARGET SECONDS [OUT] — a long local campaign for one target, at the lowest CPU
# priority, one process (shared machines). Restarts after a finding until SECONDS are used, so a
# crash does not end the campaign; artifacts (crash-*, timeout-*, oom-*, leak-*) go to
# OUT/artifacts/TARGET/, the growing corpus to OUT/work/TARGET/, logs to OUT/logs/TARGET.N.log.
# Extra libFuzzer flags: FUZZ_ARGS="-max_len=65536". Totals: fuzz/figures.sh OUT
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="$1"; total="$2"; out="${3:-$(dirname "$here")/build-fuzz}"
mkdir -p "$out/artifacts/$target" "$out/work/$target" "$out/logs"
start=$(date +%s); n=0
while :; do
  left=$(( total - ($(date +%s) - start) ))
  (( left > 5 )) || break
  n=$((n + 1))
  nice -n 19 "$out/fuzz_$target" -workers=1 -max_total_time="$left" -rss_limit_mb=2048 -timeout=25 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/$target/" ${FUZZ_ARGS:-} \
    "$out/work/$target" "$here/corpus/$target" "$here/regressions/$target" > "$out/logs/$target.$n.log" 2>&1
  echo "$(date +%T) $target run $n exited $?" >> "$out/logs/$target.summary"
done
