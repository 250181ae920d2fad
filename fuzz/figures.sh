#!/usr/bin/env bash
# fuzz/figures.sh [OUT] — totals over every campaign log under OUT/logs (default build-fuzz):
# per target, the runs, seconds fuzzed (from each run's last status line), executed inputs
# (stat::number_of_executed_units, or the last "#N" status line for a run that was stopped),
# and the size of the working corpus.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$(dirname "$here")/build-fuzz}"
for t in image safetensors dataset; do
  runs=0; units=0; secs=0
  while IFS= read -r -d '' log; do
    runs=$((runs + 1))
    u=$(grep -h "stat::number_of_executed_units" "$log" | tail -1 | awk '{print $2}')
    [[ -n "$u" ]] || u=$(grep -ho "^#[0-9]*" "$log" | tail -1 | tr -d '#')
    units=$((units + ${u:-0}))
    # libFuzzer prints no elapsed time per run: use the log's lifetime (first to last write).
    first=$(stat -c %W "$log"); last=$(stat -c %Y "$log")
    (( first > 0 )) || first=$last
    secs=$((secs + last - first))
  done < <(find "$out/logs" -name "*$t*.log" -print0)
  corpus=$(ls "$out/work/$t" 2>/dev/null | wc -l)
  printf "%-12s runs %3d  fuzzed %6.2f h  executed %12d  working corpus %6d files\n" "$t" "$runs" \
    "$(echo "$secs / 3600" | bc -l)" "$units" "$corpus"
done
