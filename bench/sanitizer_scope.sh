#!/usr/bin/env bash
# What ASan's use-after-scope check costs the sanitizer build's compile (docs/reliability.md, "CI
# time", eleventh pass): six of its heavy units, each compiled with the stage's own command with and
# without -fno-sanitize-address-use-after-scope, the two variants interleaved unit by unit (the order
# flipped every round), so that a shared machine's drift weighs on both.
#   bash bench/sanitizer_scope.sh BUILD_DIR [ROUNDS]      (default 2 rounds)
# BUILD_DIR: configured here as scripts/test.sh configures the sanitizer stage; nothing is built
# (the precompiled-header include is dropped in both variants: the headers are read as text).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: bench/sanitizer_scope.sh BUILD_DIR [ROUNDS]}
bash bench/sanitizer_configure.sh "$dir"
python3 - "$dir/compile_commands.json" "${2:-2}" <<'PY'
import json, os, resource, shlex, subprocess, sys, tempfile
db, rounds = json.load(open(sys.argv[1])), int(sys.argv[2])
units = ["emu/cases/conv.cpp", "emu/test_conv_igemm.cpp", "emu/test_kernels_network.cpp",
         "instances/make_trainer_small_base_ab_cpu.cpp", "instances/make_colorizer_small_ab_cuda.cpp",
         "train/session.cpp"]
obj = os.path.join(tempfile.mkdtemp(), "unit.o")
def command(entry, check_scopes):
    args, skip = [], False
    for a in shlex.split(entry["command"]):
        if skip:
            skip = False
            continue
        if a == "-include":
            skip = True
            continue
        if a in ("-Winvalid-pch", "-fsanitize-address-use-after-scope", "-fno-sanitize-address-use-after-scope"):
            continue
        args.append(a)
    args[args.index("-o") + 1] = obj
    return args + ([] if check_scopes else ["-fno-sanitize-address-use-after-scope"])
total = {True: 0.0, False: 0.0}
for r in range(rounds):
    for unit in units:
        entry = next(e for e in db if e["file"].endswith(unit))
        for check_scopes in ((True, False) if r % 2 == 0 else (False, True)):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(command(entry, check_scopes), cwd=entry["directory"], check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            total[check_scopes] += cpu
            print(f"round {r + 1} {unit}: {'with' if check_scopes else 'without'} use-after-scope {cpu:.1f} CPU-s", flush=True)
print(f"all: with {total[True]:.1f} CPU-s, without {total[False]:.1f} CPU-s ({total[False] / total[True]:.2f}x)")
PY
