#!/usr/bin/env python3
"""SASS checks of kiln's CUDA kernels (issue 19 item 5): Python 3 standard library only.

Disassembles the sm_80 / sm_90 machine code of an nvcc-built binary (kiln_nvcc_check) and reports
per kernel: registers, local-memory operations (STL/LDL: spills or local arrays), static shared
memory, theoretical occupancy, total instructions, the main loop's instructions per HMMA (or per
FFMA), generic loads (LD, not LDG/LDS/LDSM) inside loops and 64-bit integer divisions inside
loops. Thresholds come from one file (tests/nvcc/sass_thresholds.json); a breach of an enforced
limit exits 1, a missed `target` (enforce: false) is reported only.

  python3 tests/nvcc/sass_check.py build/ci-nvcc/kiln_nvcc_check            # table + thresholds
  python3 tests/nvcc/sass_check.py --markdown build/ci-nvcc/kiln_nvcc_check  # docs/kernels.md table

How the figures are obtained
  * `cuobjdump -xelf all BINARY` extracts one cubin per architecture; `nvdisasm -c CUBIN` gives the
    SASS with branch labels and named subroutines; `cuobjdump -res-usage CUBIN` gives REG, SHARED
    (static), LOCAL and STACK per kernel.
  * Loops: every backward branch (`BRA` to a label at a lower address, not to itself) closes a loop
    [label, branch]. The main loop is the innermost loop holding HMMAs (no smaller HMMA loop inside
    it); kernels without HMMA use the innermost loop holding the most FFMAs. "inst/op" is the
    loop's instructions divided by its HMMAs (FFMAs).
  * Generic loads: opcode LD (LD.E, LD.E.64, ...), as opposed to LDG (global), LDS (shared),
    LDSM (ldmatrix), LDL (local), LDC (constant), LDGSTS (cp.async).
  * 64-bit divisions: `CALL` to nvcc's `__cuda_sm20_{div,rem}_{s,u}64` subroutines (the slow path
    of a 64-bit `/` or `%` by a run-time value; nvcc puts a 32-bit fast path, I2F.U32.RP + MUFU.RCP,
    in front of each call). Divisions by compile-time constants become IMAD.HI sequences and are
    not counted.
  * Occupancy: blocks per SM from registers (allocated per warp in units of 256, four sub-partitions
    of 16384), shared memory (static + dynamic, 128-byte granules, plus 1 KiB reserved per block),
    warps (64 per SM) and blocks (32 per SM). Block size and dynamic shared memory are not in the
    binary: they come from the "launch" table of the thresholds file (the values the launchers in
    include/kiln/cuda/backend.hpp use), or __launch_bounds__ (.maxntid) when a kernel has it.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

# SM limits used for occupancy (CUDA C++ Programming Guide, compute capability table).
SM_LIMITS = {
    "sm_80": {"smem_per_sm": 164 * 1024, "max_warps": 64, "max_blocks": 32, "regs": 65536},
    "sm_90": {"smem_per_sm": 228 * 1024, "max_warps": 64, "max_blocks": 32, "regs": 65536},
}
SMEM_RESERVED_PER_BLOCK = 1024
SMEM_GRANULE = 128

INSN_RE = re.compile(r"^\s*/\*([0-9a-fA-F]+)\*/\s+(?:(@!?U?P[T0-9]+)\s+)?([A-Z][A-Z0-9_]*)((?:\.[A-Z0-9_]+)*)\s*(.*?)\s*;")
LABEL_RE = re.compile(r"^(\.L_x_\d+|\$?[A-Za-z_$][\w$.]*):\s*$")
TEXT_RE = re.compile(r"^\s*\.section\s+\.text\.([^,\s]+)")
TARGET_RE = re.compile(r"`\(([^)]+)\)")
DIV64_RE = re.compile(r"__cuda_sm\d+_(div|rem)_(s|u)64")
RES_FUNC_RE = re.compile(r"^\s*Function\s+([^\s:]+):")
RES_VAL_RE = re.compile(r"([A-Z]+(?:\[\d+\])?):(\d+)")
GENERIC_LOADS = {"LD"}
METRICS_MAX = ("registers", "local_ops", "local_bytes", "static_shared", "instructions", "inst_per_hmma",
               "inst_per_ffma", "generic_loads_in_loops", "div64_in_loops")
METRICS_MIN = ("blocks_per_sm", "ldsm")


@dataclass
class Insn:
    addr: int
    pred: str
    op: str
    mods: str
    operands: str


@dataclass
class Function:
    name: str
    insns: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)  # label -> address of the next instruction
    subroutines: list = field(default_factory=list)  # (name, start address)
    maxntid: int | None = None


@dataclass
class Loop:
    start: int
    end: int  # address of the backward branch

    def holds(self, addr: int) -> bool:
        return self.start <= addr <= self.end

    @property
    def size(self) -> int:
        return self.end - self.start


def parse_nvdisasm(text: str) -> dict:
    """nvdisasm -c output -> {mangled name: Function}. Subroutines ($__internal_...) stay inside
    the kernel whose section holds them."""
    funcs: dict = {}
    cur = None
    pending: list = []
    for line in text.splitlines():
        m = TEXT_RE.match(line)
        if m:
            cur = funcs.setdefault(m.group(1), Function(m.group(1)))
            pending = []
            continue
        if cur is None:
            continue
        if ".maxntid" in line:
            nums = [int(x) for x in re.findall(r"\d+", line.split(".maxntid", 1)[1])]
            if nums:
                cur.maxntid = math.prod(nums)
            continue
        m = LABEL_RE.match(line)
        if m:
            pending.append(m.group(1))
            continue
        m = INSN_RE.match(line)
        if m:
            addr = int(m.group(1), 16)
            for lab in pending:
                cur.labels[lab] = addr
                if lab.startswith("$__internal") or lab.startswith("$"):
                    cur.subroutines.append((lab, addr))
            pending = []
            cur.insns.append(Insn(addr, m.group(2) or "", m.group(3), m.group(4), m.group(5)))
    return funcs


def parse_res_usage(text: str) -> dict:
    """cuobjdump -res-usage of one cubin -> {mangled name: {"REG": .., "SHARED": .., ...}}."""
    out: dict = {}
    name = None
    for line in text.splitlines():
        m = RES_FUNC_RE.match(line)
        if m:
            name = m.group(1)
            continue
        if name and "REG:" in line:
            out[name] = {k: int(v) for k, v in RES_VAL_RE.findall(line)}
            name = None
    return out


def find_loops(f: Function) -> list:
    loops = []
    for ins in f.insns:
        if ins.op != "BRA":
            continue
        t = TARGET_RE.search(ins.operands)
        if not t or t.group(1) not in f.labels:
            continue
        target = f.labels[t.group(1)]
        if target < ins.addr:  # backward, and not the self-branch that ends every function
            loops.append(Loop(target, ins.addr))
    return loops


def kernel_body(f: Function) -> list:
    """The kernel's own instructions: subroutine bodies (placed after the kernel) and NOPs excluded."""
    end = min((a for _, a in f.subroutines), default=None)
    return [i for i in f.insns if i.op != "NOP" and (end is None or i.addr < end)]


def is_div64_call(f: Function, ins: Insn) -> bool:
    if ins.op != "CALL":
        return False
    t = TARGET_RE.search(ins.operands)
    return bool(t and DIV64_RE.search(t.group(1)))


def main_loop(body: list, loops: list, op: str):
    """Innermost loop holding `op` instructions; among several, the one holding the most."""
    with_op = []
    for lp in loops:
        n = sum(1 for i in body if i.op == op and lp.holds(i.addr))
        if n:
            with_op.append((lp, n))
    inner = [(lp, n) for lp, n in with_op
             if not any(o is not lp and o.size < lp.size and lp.holds(o.start) and lp.holds(o.end) for o, _ in with_op)]
    if not inner:
        return None, 0, 0
    lp, n = max(inner, key=lambda p: (p[1], -p[0].size))
    size = sum(1 for i in body if lp.holds(i.addr))
    return lp, n, size


def demangle(names: list) -> dict:
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    res = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, check=False)
    lines = res.stdout.splitlines()
    return dict(zip(names, lines)) if len(lines) == len(names) else {n: n for n in names}


def short_name(demangled: str) -> str:
    """'void kiln::cuda::kernels::conv2d_igemm_forward_kernel<3>(kiln::ConvShape, ...)'
    -> 'conv2d_igemm_forward_kernel<3>': no return type, namespaces or parameters."""
    s = demangled
    if s.startswith("void "):
        s = s[5:]
    depth, cut = 0, len(s)
    for i, ch in enumerate(s):  # the parameter list is the first '(' outside template brackets
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            cut = i
            break
    s = s[:cut]
    depth, start = 0, 0
    for i, ch in enumerate(s):  # drop namespaces: the last '::' outside template brackets
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == ":" and depth == 0 and i + 1 < len(s) and s[i + 1] == ":":
            start = i + 2
    s = s[start:]
    s = re.sub(r"\b(?:\w+::)+", "", s)  # namespaces inside template arguments
    s = re.sub(r"\(([A-Za-z_]\w*)\)(\d+)", r"\1:\2", s)  # (Pass)0 -> Pass:0
    return s.replace(" >", ">")


def occupancy(arch: str, regs: int, smem_static: int, threads: int | None, dyn: int):
    lim = SM_LIMITS.get(arch.removesuffix("a"))  # sm_90a: sm_90's limits
    if lim is None or not threads:
        return None
    warps = math.ceil(threads / 32)
    by_warps = lim["max_warps"] // warps
    if regs > 0:
        per_warp = math.ceil(regs * 32 / 256) * 256
        warps_by_regs = 4 * ((lim["regs"] // 4) // per_warp)
        by_regs = warps_by_regs // warps
    else:
        by_regs = lim["max_blocks"]
    smem = math.ceil((smem_static + dyn) / SMEM_GRANULE) * SMEM_GRANULE + SMEM_RESERVED_PER_BLOCK
    by_smem = lim["smem_per_sm"] // smem
    blocks = min(by_warps, by_regs, by_smem, lim["max_blocks"])
    limiter = min((("warps", by_warps), ("regs", by_regs), ("smem", by_smem), ("blocks", lim["max_blocks"])),
                  key=lambda p: p[1])[0]
    return {"blocks": blocks, "warps": blocks * warps, "occupancy": blocks * warps / lim["max_warps"], "limiter": limiter}


def analyse(arch: str, funcs: dict, res: dict, config: dict) -> list:
    names = sorted(funcs)
    dem = demangle(names)
    rows = []
    for mangled in names:
        f = funcs[mangled]
        body = kernel_body(f)
        loops = find_loops(f)
        in_loop = lambda a: any(lp.holds(a) for lp in loops)  # noqa: E731
        r = res.get(mangled, {})
        short = short_name(dem[mangled])
        launch = launch_of(config, short)
        threads = f.maxntid or launch.get("threads")
        dyn = launch.get("dynamic_shared", 0)
        occ = occupancy(arch, r.get("REG", 0), r.get("SHARED", 0), threads, dyn)
        hmma = sum(1 for i in body if i.op == "HMMA")
        # wgmma's warpgroup MMAs, less the empty ones ptxas injects to wait (HGMMA.64x8x16.F16 RZ, ...;
        # INSN_RE's modifiers stop at the shape's lower-case x, the rest lands in the operands)
        hgmma = sum(1 for i in body if i.op == "HGMMA" and i.operands.split(",")[0].split()[-1:] != ["RZ"])
        ffma = sum(1 for i in body if i.op == "FFMA")
        lp, n_h, size_h = main_loop(body, loops, "HMMA")
        row = {
            "arch": arch, "kernel": short, "mangled": mangled,
            "registers": r.get("REG", 0), "static_shared": r.get("SHARED", 0),
            "local_bytes": r.get("LOCAL", 0) + r.get("STACK", 0),
            "local_ops": sum(1 for i in body if i.op in ("STL", "LDL")),
            "threads": threads, "threads_from": "__launch_bounds__" if f.maxntid else ("launch table" if threads else None),
            "dynamic_shared": dyn,
            "blocks_per_sm": occ["blocks"] if occ else None,
            "warps_per_sm": occ["warps"] if occ else None,
            "occupancy": occ["occupancy"] if occ else None,
            "occ_limiter": occ["limiter"] if occ else None,
            "instructions": len(body), "hmma": hmma, "hgmma": hgmma, "ffma": ffma,
            "ldsm": sum(1 for i in body if i.op == "LDSM"),
            "generic_loads": sum(1 for i in body if i.op in GENERIC_LOADS),
            "generic_loads_in_loops": sum(1 for i in body if i.op in GENERIC_LOADS and in_loop(i.addr)),
            "div64_calls": sum(1 for i in body if is_div64_call(f, i)),
            "div64_in_loops": sum(1 for i in body if is_div64_call(f, i) and in_loop(i.addr)),
            "loops": len(loops),
            "main_loop_op": None, "main_loop_size": None, "main_loop_ops": None,
            "inst_per_hmma": None, "inst_per_hgmma": None, "inst_per_ffma": None,
        }
        lpg, n_g, size_g = main_loop(body, loops, "HGMMA") if lp is None else (None, 0, 0)
        if lp is not None:
            row.update(main_loop_op="HMMA", main_loop_size=size_h, main_loop_ops=n_h,
                       inst_per_hmma=round(size_h / n_h, 1))
        elif lpg is not None:  # wgmma kernels: per warpgroup MMA (m64nNk8, N/8 x 4 HMMA's work)
            row.update(main_loop_op="HGMMA", main_loop_size=size_g, main_loop_ops=n_g,
                       inst_per_hgmma=round(size_g / n_g, 1))
        else:
            lpf, n_f, size_f = main_loop(body, loops, "FFMA")
            if lpf is not None:
                row.update(main_loop_op="FFMA", main_loop_size=size_f, main_loop_ops=n_f,
                           inst_per_ffma=round(size_f / n_f, 1))
        rows.append(row)
    return rows


def launch_of(config: dict, short: str) -> dict:
    for entry in config.get("launch", []):
        if fnmatch.fnmatchcase(short, entry["kernel"]):
            return entry
    return {}


def check(rows: list, config: dict):
    """-> (violations of enforced limits, missed targets); each item (row, rule, metric, value, limit)."""
    bad, missed = [], []
    for row in rows:
        for rule in config.get("limits", []):
            if not fnmatch.fnmatchcase(row["kernel"], rule["kernel"]):
                continue
            if not fnmatch.fnmatchcase(row["arch"], rule.get("arch", "*")):
                continue
            sink = bad if rule.get("enforce", True) else missed
            for metric, limit in rule.get("max", {}).items():
                v = row.get(metric)
                if v is not None and v > limit:
                    sink.append((row, rule, metric, v, f"<= {limit}"))
            for metric, limit in rule.get("min", {}).items():
                v = row.get(metric)
                if v is not None and v < limit:
                    sink.append((row, rule, metric, v, f">= {limit}"))
    return bad, missed


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


COLUMNS = [("kernel", "kernel"), ("registers", "regs"), ("local_ops", "STL/LDL"), ("static_shared", "smem"),
           ("dynamic_shared", "dyn smem"), ("threads", "threads"), ("blocks_per_sm", "blocks/SM"),
           ("warps_per_sm", "warps/SM"), ("instructions", "insts"), ("hmma", "HMMA"), ("hgmma", "HGMMA"), ("main", "main loop"),
           ("generic_loads_in_loops", "LD in loops"), ("div64_in_loops", "div64 in loops")]


def cell(row, key):
    if key == "main":
        if row["main_loop_op"] is None:
            return "-"
        per = {"HMMA": row["inst_per_hmma"], "HGMMA": row["inst_per_hgmma"]}.get(row["main_loop_op"], row["inst_per_ffma"])
        return f"{row['main_loop_size']} / {row['main_loop_ops']} {row['main_loop_op']} = {per:.1f}"
    if key == "blocks_per_sm" and row["blocks_per_sm"] is not None:
        return f"{row['blocks_per_sm']} ({row['occ_limiter']})"
    return fmt(row.get(key))


def print_table(rows: list, markdown: bool, out=None):
    out = out or sys.stdout
    for arch in sorted({r["arch"] for r in rows}, reverse=True):
        sub = sorted((r for r in rows if r["arch"] == arch), key=lambda r: r["kernel"])
        table = [[h for _, h in COLUMNS]] + [[cell(r, k) for k, _ in COLUMNS] for r in sub]
        if markdown:
            print(f"\n{arch}:\n", file=out)
            print("| " + " | ".join(table[0]) + " |", file=out)
            print("|" + "---|" * len(COLUMNS), file=out)
            for t in table[1:]:
                print("| " + " | ".join(f"`{t[0]}`" if i == 0 else c for i, c in enumerate(t)) + " |", file=out)
        else:
            widths = [max(len(t[i]) for t in table) for i in range(len(COLUMNS))]
            print(f"\n== {arch} ==", file=out)
            for t in table:
                print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(t, widths))), file=out)


def print_baseline(rows: list):
    """Per kernel, limits met by today's figures on every arch: registers rounded up to the allocation
    unit (8 per thread), blocks/SM, instructions per HMMA (rounded up), generic loads and 64-bit
    divisions in loops as today, instructions + 10 %."""
    by = {}
    for r in rows:
        by.setdefault(r["kernel"], []).append(r)
    lines = []
    for k in sorted(by):
        rs = by[k]
        mx = {"registers": int(math.ceil(max(r["registers"] for r in rs) / 8) * 8)}
        if any(r["inst_per_hmma"] is not None for r in rs):
            mx["inst_per_hmma"] = math.ceil(max(r["inst_per_hmma"] or 0 for r in rs))
        mx["generic_loads_in_loops"] = max(r["generic_loads_in_loops"] for r in rs)
        mx["div64_in_loops"] = max(r["div64_in_loops"] for r in rs)
        mx["instructions"] = int(math.ceil(max(r["instructions"] for r in rs) * 1.1 / 10) * 10)
        entry = {"kernel": k, "max": mx}
        blocks = [r["blocks_per_sm"] for r in rs if r["blocks_per_sm"] is not None]
        if blocks:
            entry["min"] = {"blocks_per_sm": min(blocks)}
        lines.append("    " + json.dumps(entry))
    print(",\n".join(lines))


def print_breaches(items: list, tag: str):
    """One line per (arch, kernel, note): 'metric = value (limit)' for each figure off its limit."""
    groups: dict = {}
    for row, rule, metric, v, lim in items:
        groups.setdefault((row["arch"], row["kernel"], rule.get("note", "")), []).append(f"{metric} {fmt(v)} ({lim})")
    for (arch, kernel, note), figs in groups.items():
        print(f"  {tag:6} {arch} {kernel}: {', '.join(figs)}" + (f"  [{note}]" if note else ""))


def find_tool(name: str, extra: list) -> str | None:
    env = os.environ.get("KILN_" + name.upper())
    if env:
        return os.path.abspath(env) if os.sep in env else env
    for d in extra:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return os.path.abspath(p)
    p = shutil.which(name)
    if p:
        return p
    p = os.path.join("/usr/local/cuda/bin", name)
    return p if os.access(p, os.X_OK) else None


def run(cmd, **kw) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise SystemExit(f"sass_check: {' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}")
    return res.stdout


def disassemble(binary: str, cuobjdump: str, nvdisasm: str, archs: list) -> dict:
    """-> {arch: (nvdisasm text, res-usage text)} for each cubin in the binary."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        run([cuobjdump, "-xelf", "all", os.path.abspath(binary)], cwd=tmp)
        for cubin in sorted(os.listdir(tmp)):
            m = re.search(r"\.(sm_\d+a?)\.cubin$", cubin)
            if not m or (archs and m.group(1) not in archs):
                continue
            path = os.path.join(tmp, cubin)
            sass = run([nvdisasm, "-c", path])
            res = run([cuobjdump, "-res-usage", path])
            if m.group(1) in out:  # several cubins of one arch (several objects): concatenate
                sass, res = out[m.group(1)][0] + sass, out[m.group(1)][1] + res
            out[m.group(1)] = (sass, res)
    if not out:
        raise SystemExit(f"sass_check: no cubin for {archs or 'any arch'} in {binary}")
    return out


def main(argv=None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary", nargs="*", help="nvcc-built executables or objects (fat binaries)")
    ap.add_argument("--thresholds", default=os.path.join(here, "sass_thresholds.json"))
    ap.add_argument("--arch", default="sm_80,sm_90", help="comma-separated (default sm_80,sm_90)")
    ap.add_argument("--tools-dir", action="append", default=[], help="where cuobjdump / nvdisasm are")
    ap.add_argument("--sass", nargs=3, action="append", metavar=("ARCH", "NVDISASM_TXT", "RES_USAGE_TXT"),
                    help="saved nvdisasm -c and cuobjdump -res-usage output instead of a binary")
    ap.add_argument("--markdown", action="store_true", help="markdown tables (docs/kernels.md)")
    ap.add_argument("--json", help="write every figure per kernel to this file")
    ap.add_argument("--kernels", default="*", help="glob on the short kernel name")
    ap.add_argument("--baseline", action="store_true",
                    help="print one limits entry per kernel that today's figures meet (both archs), for the thresholds file")
    ap.add_argument("--expect", action="append", default=[], metavar="KERNEL_GLOB:METRIC",
                    help="deliberate-regression mode: succeed only if each of these is violated")
    args = ap.parse_args(argv)

    with open(args.thresholds, encoding="utf-8") as fh:
        config = json.load(fh)
    archs = [a for a in args.arch.split(",") if a]
    inputs = {}
    for arch, sass_file, res_file in args.sass or []:
        with open(sass_file, encoding="utf-8") as a, open(res_file, encoding="utf-8") as b:
            inputs.setdefault(arch, []).append((a.read(), b.read()))
    if args.binary:
        cuobjdump = find_tool("cuobjdump", args.tools_dir)
        nvdisasm = find_tool("nvdisasm", args.tools_dir)
        if not cuobjdump or not nvdisasm:
            print("sass_check: cuobjdump / nvdisasm not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm;"
                  " --tools-dir DIR)", file=sys.stderr)
            return 2
        for b in args.binary:
            for arch, pair in disassemble(b, cuobjdump, nvdisasm, archs).items():
                inputs.setdefault(arch, []).append(pair)
    if not inputs:
        ap.error("give a binary or --sass")

    rows = []
    for arch, pairs in sorted(inputs.items()):
        funcs, res = {}, {}
        for sass, ru in pairs:
            funcs.update(parse_nvdisasm(sass))
            res.update(parse_res_usage(ru))
        rows += analyse(arch, funcs, res, config)
    rows = [r for r in rows if fnmatch.fnmatchcase(r["kernel"], args.kernels)]
    if not rows:
        print("sass_check: no kernel found", file=sys.stderr)
        return 2
    if args.baseline:
        print_baseline(rows)
        return 0
    print_table(rows, args.markdown)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)

    bad, missed = check(rows, config)
    if missed:
        print(f"\nsass_check: targets not met yet (reported, not enforced), {len(missed)} figure(s):")
        print_breaches(missed, "target")
    if bad:
        print(f"\nsass_check: {len(bad)} threshold(s) breached ({args.thresholds}):")
        print_breaches(bad, "FAIL")
    if args.expect:  # every expected breach caught, and no other
        ok = True
        pairs = [e.rsplit(":", 1) for e in args.expect]
        for e, (kglob, metric) in zip(args.expect, pairs):
            hit = any(fnmatch.fnmatchcase(r["kernel"], kglob) and m == metric for r, _, m, _, _ in bad)
            print(f"sass_check: expected breach {e}: {'caught' if hit else 'NOT CAUGHT'}")
            ok &= hit
        for r, _, m, v, lim in bad:
            if not any(fnmatch.fnmatchcase(r["kernel"], k) and m == metric for k, metric in pairs):
                print(f"sass_check: unexpected breach {r['arch']} {r['kernel']}: {m} {fmt(v)} ({lim})")
                ok = False
        print(f"sass_check: deliberate regressions {'all caught' if ok else 'NOT as expected'}")
        return 0 if ok else 1
    if bad:
        return 1
    print(f"\nsass_check: {len(rows)} kernel(s) x arch within {os.path.relpath(args.thresholds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
