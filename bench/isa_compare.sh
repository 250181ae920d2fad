#!/usr/bin/env bash
# Whole-step time of kiln_bench_step binaries (and CPU code paths) side by side, for a shared,
# noisy machine: one thread (OMP_NUM_THREADS=1), Google Benchmark's CPU time of the step (thread CPU
# time, which other processes change much less than the wall time), the runs interleaved round by
# round, the minimum over the rounds reported.
#
#   bench/isa_compare.sh [--rounds N] [--filter REGEX] LABEL=BINARY[@ISA] ...
#
# @ISA sets KILN_CPU_ISA for that binary (avx512 | avx2 | portable). Example, a -march=native build
# against a build without -m flags (docs/cpu-path.md, "Run-time dispatch"):
#   bench/isa_compare.sh --rounds 5 native=build-native/bench/kiln_bench_step \
#     plain=build-plain/bench/kiln_bench_step plain-avx2=build-plain/bench/kiln_bench_step@avx2
set -euo pipefail
rounds=5
filter='(train_step|inference)/cpu/UNetSmall/N16_H64'
runs=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    *=*) runs+=("$1"); shift ;;
    *) echo "isa_compare.sh: unexpected argument $1" >&2; exit 2 ;;
  esac
done
[[ ${#runs[@]} -gt 0 ]] || { sed -n 2,13p "$0"; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(lscpu | sed -n 's/^Model name: *//p'); $(uptime | sed 's/.*load/load/')"
for ((r = 1; r <= rounds; ++r)); do
  for run in "${runs[@]}"; do
    label=${run%%=*} spec=${run#*=} bin=${spec%@*} isa=""
    [[ $spec == *@* ]] && isa=${spec##*@}
    KILN_CPU_ISA=$isa OMP_NUM_THREADS=1 KILN_BENCH_STEPS=${KILN_BENCH_STEPS:-3} "$bin" \
      --benchmark_filter="$filter" --benchmark_format=json >"$out/$label.$r.json" 2>/dev/null
  done
done
python3 - "$out" "$rounds" "${runs[@]}" <<'EOF'
import json, sys, collections
out, rounds, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
best = collections.defaultdict(dict)
names = []
for run in runs:
    label = run.split("=", 1)[0]
    for r in range(1, rounds + 1):
        for b in json.load(open(f"{out}/{label}.{r}.json"))["benchmarks"]:
            name = b["name"].split("/iterations")[0]
            if name not in names: names.append(name)
            ms = b["cpu_time"] * scale[b["time_unit"]]
            best[name][label] = min(best[name].get(label, 1e30), ms)
labels = [run.split("=", 1)[0] for run in runs]
print(f"CPU ms per step, 1 thread, min of {rounds} interleaved rounds (ratio to {labels[0]})")
print("| benchmark | " + " | ".join(labels) + " |")
print("|---|" + "---:|" * len(labels))
for n in names:
    base = best[n][labels[0]]
    print(f"| {n} | " + " | ".join(f"{best[n][l]:.1f} ({best[n][l] / base:.2f})" for l in labels) + " |")
EOF
echo "end: $(date -u '+%H:%M UTC'); $(uptime | sed 's/.*load/load/')"
