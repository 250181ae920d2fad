#!/usr/bin/env python3
"""The streaming loop of each memory-bound kernel, from the SASS (docs/kernels.md, "Memory-bound kernels").

For every kernel matching --kernels: the innermost loop holding global loads or stores (the one with
the most of them), its instruction count, its global loads / stores by width (LDG.E.128 = float4 ...),
and the instructions per float moved, i.e. per 4 bytes loaded or stored in one pass of the loop.
Kernels without such a loop (one element per thread, no loop after the grid covers the tensor) are
listed with their whole body instead. Uses tests/nvcc/sass_check.py's parser; standard library only.

  python3 tests/nvcc/memory_loops.py --tools-dir DIR --kernels 'batchnorm_*' build/ci-nvcc/kiln_nvcc_check
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sass_check  # noqa: E402

WIDTH_RE = re.compile(r"\.(64|128)\b")


def width_bytes(ins) -> int:
    m = WIDTH_RE.search(ins.mods)
    return int(m.group(1)) // 8 if m else 4


def streaming_loop(body: list, loops: list):
    best = None
    for lp in loops:
        n = sum(1 for i in body if i.op in ("LDG", "STG") and lp.holds(i.addr))
        if n and (best is None or n > best[1] or (n == best[1] and lp.size < best[0].size)):
            best = (lp, n)
    return best[0] if best else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--tools-dir", action="append", default=[])
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--kernels", default="*")
    args = ap.parse_args(argv)
    cuobjdump = sass_check.find_tool("cuobjdump", args.tools_dir)
    nvdisasm = sass_check.find_tool("nvdisasm", args.tools_dir)
    if not cuobjdump or not nvdisasm:
        print("memory_loops: cuobjdump / nvdisasm not found (--tools-dir DIR)", file=sys.stderr)
        return 2
    pairs = sass_check.disassemble(args.binary, cuobjdump, nvdisasm, [args.arch]).get(args.arch)
    if not pairs:
        print(f"memory_loops: no {args.arch} code in {args.binary}", file=sys.stderr)
        return 2
    funcs = sass_check.parse_nvdisasm(pairs[0])
    names = sass_check.demangle(list(funcs))
    print(f"| kernel ({args.arch}) | loop instructions | global loads, stores (bytes each) | bytes per lane per pass | instructions per float moved |")
    print("|---|---|---|---|---|")
    found = 0
    for mangled in sorted(funcs, key=lambda m: sass_check.short_name(names[m])):
        short = sass_check.short_name(names[mangled])
        if not fnmatch.fnmatchcase(short, args.kernels):
            continue
        f = funcs[mangled]
        body = sass_check.kernel_body(f)
        lp = streaming_loop(body, sass_check.find_loops(f))
        inside = [i for i in body if lp is None or lp.holds(i.addr)]
        loads = [width_bytes(i) for i in inside if i.op == "LDG"]
        stores = [width_bytes(i) for i in inside if i.op == "STG"]
        moved = sum(loads) + sum(stores)
        where = f"{len(inside)}" if lp is not None else f"{len(inside)} (no loop: whole kernel)"
        widths = f"{len(loads)} ({'+'.join(str(b) for b in loads) or '-'}), {len(stores)} ({'+'.join(str(b) for b in stores) or '-'})"
        per_float = len(inside) / (moved / 4) if moved else float("nan")
        print(f"| `{short}` | {where} | {widths} | {moved} | {per_float:.1f} |")
        found += 1
    if not found:
        print("memory_loops: no kernel matched", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
