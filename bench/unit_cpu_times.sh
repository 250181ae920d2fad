#!/usr/bin/env bash
# CPU-s (user + system) of single translation units before and after a change, each compiled with
# its build's own command (BUILD/compile_commands.json: configure with
# -DCMAKE_EXPORT_COMPILE_COMMANDS=ON; no build needed). "before" compiles REV's copy of the unit
# (git archive into a temporary folder, so its relative includes are REV's too; -I paths stay the
# working tree's: for changes outside include/), "after" the working tree's. Each round alternates
# before and after unit by unit, so that a shared machine's load weighs on both; each round prints
# `uptime`. A unit that REV lacks is timed after only.
#   bench/unit_cpu_times.sh [--rounds N] REV BUILD... -- UNIT...     (UNIT: e.g. examples/train/main.cpp)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=3
if [[ ${1:-} == --rounds ]]; then rounds=$2; shift 2; fi
rev=$1; shift
builds=()
while [[ $# -gt 0 && $1 != -- ]]; do builds+=("$(realpath "$1")"); shift; done
[[ ${1:-} == -- ]] || { echo "usage: $0 [--rounds N] REV BUILD... -- UNIT..." >&2; exit 2; }
shift
units=("$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/before"
git -C "$root" archive "$rev" | tar -x -C "$tmp/before"
for r in $(seq 1 "$rounds"); do
  for b in "${builds[@]}"; do
    echo "# round $r, $b: $(uptime)"
    python3 - "$b/compile_commands.json" "$root" "$tmp/before" "$tmp/o.o" "${units[@]}" >"$tmp/cmds" <<'PY'
import json, os, shlex, sys
db, root, before, obj, units = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
entries = {e["file"]: e for e in json.load(open(db))}
for unit in units:
    src = os.path.join(root, unit)
    if src not in entries:
        sys.exit(f"{unit}: not in {db}")
    e = entries[src]
    args = shlex.split(e["command"])
    args[args.index("-o") + 1] = obj
    variants = [("after", src)]
    if os.path.exists(os.path.join(before, unit)):
        variants.insert(0, ("before", os.path.join(before, unit)))
    for tag, path in variants:
        print(tag, unit, e["directory"], shlex.join([path if a == src else a for a in args]))
PY
    while read -r tag unit dir cmd; do
      if ! (cd "$dir" && /usr/bin/time -o "$tmp/time" -f "%U %S %e" bash -c "$cmd" >"$tmp/log" 2>&1); then
        cat "$tmp/log" >&2; echo "$unit ($tag): the compile failed" >&2; exit 1
      fi
      read -r u s e <"$tmp/time"
      printf '%s %s %-6s %-40s cpu=%6.2f wall=%s\n' "$(basename "$b")" "$r" "$tag" "$unit" "$(echo "$u + $s" | bc)" "$e"
    done <"$tmp/cmds"
  done
done
