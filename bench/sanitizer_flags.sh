#!/usr/bin/env bash
# What each of UBSan's per-access checks costs the sanitizer build's compile (docs/reliability.md,
# "CI time", tenth pass): five of its heaviest units compiled with the stage's own command under each
# variant of -fno-sanitize, one after another.
#   bash bench/sanitizer_flags.sh BUILD_DIR
# BUILD_DIR: configured here as scripts/test.sh configures the sanitizer stage (nothing is built:
# the commands come from compile_commands.json; the precompiled headers are read as text in every
# variant, so the variants compare like for like). Prints each unit's CPU-s per variant.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: bench/sanitizer_flags.sh BUILD_DIR}
bash bench/sanitizer_configure.sh "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Each unit's command ("directory<TAB>command"), without CMake's sanitizer check list and the
# alignment check of KILN_RUNS_KERNELS (each variant sets its own), writing to $work.
python3 - "$dir/compile_commands.json" "$work" >"$work/commands" <<'EOF'
import json, os, shutil, sys
units = ["Unity/unity_unit_4_cxx.cxx", "emu/test_kernels_network.cpp", "emu/cases/conv.cpp",
         "train/main.cpp", "instances/make_trainer_small_base_ab_cpu.cpp"]
work = sys.argv[2]
by_file = {c["file"]: c for c in json.load(open(sys.argv[1]))}
for n, unit in enumerate(units):
    c = next((c for f, c in by_file.items() if f.endswith(unit)), None)
    if c is None:
        sys.exit(f"sanitizer_flags.sh: no compile command for {unit}")
    args, out, skip = [], [], False
    for a in c["command"].split():
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT"):
            skip = True
            if a == "-o":
                out += ["-o", f"{work}/unit{n}.o"]
            continue
        if a.startswith("-fno-sanitize=") or a == "-fsanitize=alignment" or a in ("-MD", "-Winvalid-pch"):
            continue
        if a.endswith("cmake_pch.hxx"):  # the header as text: a copy without the .gch beside it
            copy = f"{work}/pch{n}.hxx"
            shutil.copy(a, copy)
            a = copy
        args.append(a)
    print(c["directory"] + "\t" + " ".join(args + out) + "\t" + unit)
EOF
variants=("all of UBSan|"
          "without null,alignment,object-size,pointer-overflow,vptr|-fno-sanitize=null,alignment,object-size,pointer-overflow,vptr"
          "the same but keeping alignment|-fno-sanitize=null,object-size,pointer-overflow,vptr"
          "without pointer-overflow,object-size only|-fno-sanitize=pointer-overflow,object-size")
for v in "${variants[@]}"; do
  label=${v%%|*} flags=${v#*|} total=0
  echo "== $label"
  while IFS=$'\t' read -r directory command unit; do
    t=$(cd "$directory" && { /usr/bin/time -f "%U %S" bash -c "$command $flags" 2>&1 >/dev/null; } | tail -1)
    cpu=$(awk '{ printf "%.1f", $1 + $2 }' <<<"$t")
    total=$(awk -v a="$total" -v b="$cpu" 'BEGIN { printf "%.1f", a + b }')
    echo "  $unit: $cpu CPU-s"
  done <"$work/commands"
  echo "  all five: $total CPU-s"
done
