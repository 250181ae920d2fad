#!/usr/bin/env bash
# What the sanitizer build's checks cost its compile (docs/reliability.md, "CI time"): heavy units of
# that build, each compiled with the stage's own command under each variant's flags, the variants
# interleaved unit by unit (the order flipped every round) so that a shared machine's drift weighs on
# all of them.
#   bash bench/sanitizer_flags.sh [--scope] BUILD_DIR [ROUNDS]     (default 1 round)
#   default: UBSan's per-access checks (tenth pass): five units under four -fno-sanitize lists
#   --scope: ASan's use-after-scope check (eleventh pass): six units with and without it
# BUILD_DIR: configured here as scripts/test.sh configures the sanitizer stage (nothing is built:
# the commands come from compile_commands.json; the precompiled headers are read as text in every
# variant, so the variants compare like for like). Prints each unit's CPU-s per variant and totals.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=ubsan
[[ ${1:-} == --scope ]] && { mode=scope; shift; }
dir=${1:?usage: bench/sanitizer_flags.sh [--scope] BUILD_DIR [ROUNDS]}
bash bench/sanitizer_configure.sh "$dir"
python3 - "$mode" "$dir/compile_commands.json" "${2:-1}" <<'EOF'
import json, resource, shlex, shutil, subprocess, sys, tempfile
mode, database, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "ubsan":
    units = ["Unity/unity_unit_4_cxx.cxx", "emu/test_kernels_network.cpp", "emu/cases/conv.cpp",
             "train/main.cpp", "instances/make_trainer_small_base_ab_cpu.cpp"]
    variants = {"all of UBSan": [],
                "without null,alignment,object-size,pointer-overflow,vptr":
                    ["-fno-sanitize=null,alignment,object-size,pointer-overflow,vptr"],
                "the same but keeping alignment": ["-fno-sanitize=null,object-size,pointer-overflow,vptr"],
                "without pointer-overflow,object-size only": ["-fno-sanitize=pointer-overflow,object-size"]}
    # CMake's check list and KILN_RUNS_KERNELS' alignment check: each variant sets its own.
    dropped = lambda a: a.startswith("-fno-sanitize=") or a == "-fsanitize=alignment"
else:
    units = ["emu/cases/conv.cpp", "emu/test_conv_igemm.cpp", "emu/test_kernels_network.cpp",
             "instances/make_trainer_small_base_ab_cpu.cpp", "instances/make_colorizer_small_ab_cuda.cpp",
             "train/session.cpp"]
    variants = {"with use-after-scope": [], "without use-after-scope": ["-fno-sanitize-address-use-after-scope"]}
    dropped = lambda a: a in ("-fsanitize-address-use-after-scope", "-fno-sanitize-address-use-after-scope")
work = tempfile.mkdtemp()
by_file = {c["file"]: c for c in json.load(open(database))}
commands = []
for n, unit in enumerate(units):
    c = next((c for f, c in by_file.items() if f.endswith(unit)), None)
    if c is None:
        sys.exit(f"sanitizer_flags.sh: no compile command for {unit}")
    args, skip = [], False
    for a in shlex.split(c["command"]):
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT"):
            skip = True
            if a == "-o":
                args += ["-o", f"{work}/unit.o"]
            continue
        if dropped(a) or a in ("-MD", "-Winvalid-pch"):
            continue
        if a.endswith("cmake_pch.hxx"):  # the header as text: a copy without the .gch beside it
            shutil.copy(a, f"{work}/pch{n}.hxx")
            a = f"{work}/pch{n}.hxx"
        args.append(a)
    commands.append((c["directory"], args, unit))
total = dict.fromkeys(variants, 0.0)
for r in range(rounds):
    for directory, args, unit in commands:
        for label in (list(variants) if r % 2 == 0 else list(reversed(variants))):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(args + variants[label], cwd=directory, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            total[label] += cpu
            print(f"round {r + 1} {unit}, {label}: {cpu:.1f} CPU-s", flush=True)
for label, cpu in total.items():
    print(f"all {len(units)} units, {label}: {cpu:.1f} CPU-s")
shutil.rmtree(work)
