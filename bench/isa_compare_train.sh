#!/usr/bin/env bash
# kiln-train binaries side by side on a short run of the bundled photos (--preset default), for a
# shared machine: one thread, the process CPU time (user + sys, /usr/bin/time) of the whole run
# (loading, 30 steps, validation, checkpoints), interleaved round by round, minimum over the rounds.
#   KILN_DATA_DIR=... bench/isa_compare_train.sh [--rounds N] [--steps S] LABEL=KILN_TRAIN[@ISA] ...
set -euo pipefail
rounds=3 steps=30 runs=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    *=*) runs+=("$1"); shift ;;
    *) echo "isa_compare_train.sh: unexpected argument $1" >&2; exit 2 ;;
  esac
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(lscpu | sed -n 's/^Model name: *//p'); $(uptime | sed 's/.*load/load/')"
for ((r = 1; r <= rounds; ++r)); do
  for run in "${runs[@]}"; do
    label=${run%%=*} spec=${run#*=} bin=${spec%@*} isa=""
    [[ $spec == *@* ]] && isa=${spec##*@}
    KILN_CPU_ISA=$isa /usr/bin/time -o "$out/$label.$r.time" -f "%U %S %e" "$bin" --preset default --epochs 1 \
      --steps-per-epoch "$steps" --threads 1 --device cpu --seed 1 --out "$out/run-$label" >"$out/$label.$r.log" 2>&1
  done
done
echo "| kiln-train, $steps steps, 1 thread | CPU s (min of $rounds) | img per CPU-s | wall s (min) |"
echo "|---|---:|---:|---:|"
for run in "${runs[@]}"; do
  label=${run%%=*}
  cat "$out/$label".*.time | awk -v l="$label" -v n=$((steps * 16)) '
    { c = $1 + $2; if (NR == 1 || c < best) best = c; if (NR == 1 || $3 < wall) wall = $3 }
    END { printf "| %s | %.2f | %.1f | %.1f |\n", l, best, n / best, wall }'
done
echo "end: $(date -u '+%H:%M UTC'); $(uptime | sed 's/.*load/load/')"
