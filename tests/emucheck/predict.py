#!/usr/bin/env python3
"""Predicted kernel times on H100 / H200 from the emulator's traffic counters and the SASS figures.

    python3 tests/emucheck/predict.py --profile strict.csv [--profile tf32.csv] [--sass docs/kernels.md] [--by-layer]

--profile: the per-launch CSV of kiln_emu_profile (one U-Net training step; its first line of the
           table names the configuration); several files give one section each.
--sass:    a markdown file holding sass_check.py's sm_90 table (docs/kernels.md carries it; regenerate
           with `sass_check.py --markdown`, see docs/kernels.md).
--by-layer: one row per kernel and layer (the CSV's layer column) instead of per kernel.
--passes:  for kiln_emu_profile --kernels backward: per layer, the H200 time of each backward pass
           on the implicit GEMM and on mma.sync (packing and split-K reductions included).
--targets: issue 20's static target, per convolution pass of the profiled step (layer x forward /
           input gradient / weight gradient): FLOPs, compulsory bytes (every tensor once), whether the
           pass is compute-bound on H100 by the roofline (FLOPs / dense TF32 peak >= compulsory bytes /
           HBM bandwidth), its predicted H100 time and that time's share of the dense TF32 peak
           (FLOPs / time / peak), PASS or FAIL against 60 % where compute-bound. A pass's time is the
           sum of every launch of that layer and pass: the GEMM kernel and its weight packing, split-K
           reductions and NHWC copies, each with its launch term (what one convolution costs the
           step; a TF32 training forward's packing writes both layouts, conv2d_mma_pack_weights_both_kernel,
           so the input gradient has no packing launch of its own; a network's one launch packing every
           convolution, layer "*", is shared out to the forward passes by the CSV's pack_bytes, and a
           backward's one launch adding every split weight gradient's partial sums, layer "*" too, to the
           weight-gradient passes it serves by reduce_bytes); the
           GEMM kernels alone are shown beside it, and the launch ceiling: the share the pass could
           reach if each of its launches took only the launch term (FLOPs / peak / (launches x 2 us)).
           --enforce: exit 1 if a compute-bound pass fails.
A kernel named "name<args> (note)" (kiln_emu_profile's "(dgrad)") takes the SASS figures of name<args>.

The model (docs/kernels.md, "Predicted times", explains it and its limits): every launch takes the
longest of
  math    FLOPs / peak: fp32 SIMT, or for tensor-core kernels the FLOPs their mma operations do
          (counted by the emulator, padding included) / dense TF32 peak (BF16's for the BF16 mma.sync kernels),
  issue   warp instructions / (SMs x 4 schedulers x clock), the instructions being the main loop's
          instructions per FFMA (HMMA) from the SASS times the FFMAs (FLOPs / 64 per warp FFMA) or
          the HMMA instructions the emulator counted (wmma m16n16k8: 4 HMMA.1684, mma.sync m16n8k8:
          1 HMMA.1688); only for kernels with FLOPs and a main loop,
  shared  shared-memory wavefronts / (SMs x 1 wavefront per clock),
  dram    distinct global bytes / HBM bandwidth (each 32-byte sector moved once: a perfect cache),
  launch  2 us per launch (an assumption: back-to-back launches without CUDA Graphs),
where every block of a launch does the same work and the busiest unit sets the time (waves):
  math and issue are per warp scheduler: an SM has 4 processing blocks (warp scheduler and tensor
          cores each; a warp stays on one), the blocks spread evenly over the SMs, so the busiest SM
          runs L = ceil(blocks / SMs) of them, at most `resident` at once (the SASS occupancy), and its
          busiest scheduler the sum over those waves of ceil(warps in the wave / 4) warps' work; the
          terms above are multiplied by that over the average (blocks x warps / (SMs x 4)),
  shared  is per SM: multiplied by L over the average (blocks / SMs),
  dram    is the chip's: divided by min(1, blocks / SMs) only;
so 144 blocks of 4 warps take two blocks' time on 12 SMs (1.83x the even share), 531 one-warp
blocks two warps' time on 3 schedulers (1.99x), and fewer blocks than SMs or warps than schedulers
leave the rest idle (as before),
plus, after the binding term, the split-K tail of the mma.sync one-launch reductions (the forwards',
the TF32 weight gradient's where its splits are few): a tile's last block writes its partial tile and
reads the S - 1 others alone (its own waits in shared memory), S tiles at 64 bytes per clock
from L2 to one SM (an assumption: NVIDIA publishes no per-SM L2 bandwidth); for the wgmma weight
gradient's splits added in clusters the tail is each block's reads of the other blocks' shared
memory, (C - 1) / C of a partial tile per wave of resident blocks, at the same assumed rate
(kiln_emu_profile takes them out of the shared loads it counted; mma_wgrad::cluster_seconds).
"""
import argparse
import csv
import math
import re
import sys
from collections import defaultdict

# Published peaks. H100 SXM5: NVIDIA H100 Tensor Core GPU datasheet
# (https://www.nvidia.com/en-us/data-center/h100/): FP32 67 TFLOPS, TF32 Tensor Core 989 TFLOPS and
# BF16 1979 TFLOPS "with sparsity" (footnote: "1/2 lower without sparsity", so dense 494.7 and
# 989.4), GPU memory bandwidth 3.35 TB/s. H200 SXM: NVIDIA
# H200 datasheet (https://www.nvidia.com/en-us/data-center/h200/): the same FP32 / TF32 / BF16
# figures, 4.8 TB/s. 132 SMs (NVIDIA H100 Tensor Core GPU Architecture whitepaper, H100 SXM5); the
# clock follows from FP32 = SMs x 128 lanes x 2 FLOP x clock: 1.98 GHz. Shared memory: 32 banks of
# 4 bytes per clock per SM (CUDA C++ Programming Guide, compute capability 9.0); 4 warp schedulers
# per SM, one instruction per clock each, each in a processing block with its own tensor core (the
# whitepaper); a block's warps are statically assigned to those sub-partitions (NVIDIA developer
# forums, "How the 16 INT cores in a processing block in SM execute..." thread 259827), so fewer
# than 4 resident warps leave tensor cores and issue slots idle.
GPUS = {
    "H100 SXM": dict(fp32=67e12, tf32=494.7e12, bf16=989.4e12, hbm=3.35e12, sms=132, clock=1.98e9),
    "H200 SXM": dict(fp32=67e12, tf32=494.7e12, bf16=989.4e12, hbm=4.8e12, sms=132, clock=1.98e9),
}
LAUNCH_S = 2e-6
SM_L2_BYTES_PER_CLOCK = 64  # one SM's reads from L2 (an assumption; the split-K tail)


def read_sass(path):
    """kernel -> {occupancy, per_op, op} from the sm_90 (and sm_90a) tables of sass_check.py --markdown,
    columns found by each table's header."""
    table, in_sm90 = {}, False
    column = {"blocks/SM": 6, "warps/SM": 7, "main loop": 10}  # the older tables' places (no HGMMA column)
    for line in open(path, encoding="utf-8"):
        if line.startswith("**sm_") or re.match(r"sm_\d+[a-z]?:", line):  # both table headings in docs/kernels.md
            in_sm90 = line.startswith(("**sm_90", "sm_90:", "sm_90a:"))
        if in_sm90 and line.startswith("| kernel |"):  # a header: where its columns are
            heads = [c.strip() for c in line.strip().strip("|").split("|")]
            column = {h: heads.index(h) for h in ("blocks/SM", "warps/SM", "main loop") if h in heads}
        if not in_sm90 or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        loop = cells[column["main loop"]]
        m = re.match(r"(\d+) / (\d+) (HMMA|HGMMA|FFMA) = ([\d.]+)", loop)
        table[name] = dict(occupancy=cells[column["blocks/SM"]], warps=cells[column["warps/SM"]],
                           per_op=float(m.group(4)) if m else None,
                           op=m.group(3) if m else None)
    return table


def sass_name(kernel):
    """The SASS table's name of a profiled kernel: without a " (note)" or the " · layer" of --by-layer."""
    return re.sub(r" (\(.*\)|· .*)$", "", re.sub(r" · .*$", "", kernel))


def occupancy_blocks(s):
    """Blocks per SM from the SASS table's occupancy cell ("4 (regs)"), None where it has none."""
    m = re.match(r"(\d+)", s.get("occupancy") or "")
    return float(m.group(1)) if m else None


def num(row, key):
    return float(row.get(key) or 0)


def busiest(blocks, warps, resident, sms):
    """How much longer than an even share of the chip the busiest SM (shared memory) and the busiest
    warp scheduler (math, issue) take, for `blocks` equal blocks of `warps` warps, at most `resident`
    of them on an SM at once (None: no limit known). Both are 1 for a whole number of full waves."""
    if not blocks or not warps:
        return 1.0, 1.0
    per_sm = math.ceil(blocks / sms)  # the busiest SM's blocks, in waves of `resident`
    at_once = min(per_sm, int(resident)) if resident else per_sm
    full, rest = divmod(per_sm, at_once)
    scheduler_warps = full * math.ceil(at_once * warps / 4) + math.ceil(rest * warps / 4)
    return per_sm * sms / blocks, scheduler_warps * sms * 4 / (blocks * warps)


def predict(row, sass, gpu):
    g = GPUS[gpu]
    blocks = num(row, "blocks")
    s = sass.get(sass_name(row["kernel"]))
    sm_load, scheduler_load = busiest(blocks, num(row, "threads") / 32, occupancy_blocks(s) if s else None, g["sms"])
    flops = num(row, "flops")
    kernel = row["kernel"]
    tensor_flops, hmma = num(row, "tensor_flops"), num(row, "hmma")
    tensor = tensor_flops > 0 or "igemm" in kernel
    terms = {}
    # the BF16 kernels (MathMode::bf16: conv2d_mma_bf16*.cuh; the fp32-staged "<..., true>" variants are retired)
    bf16 = kernel.startswith("conv2d_mma_bf16_")
    peak = g["bf16"] if bf16 else g["tf32"] if tensor else g["fp32"]
    terms["math"] = (tensor_flops or flops) / peak * scheduler_load
    if flops > 0 and s and s["per_op"]:
        if s["op"] in ("HMMA", "HGMMA"):  # the profile's hmma: the tensor-core instructions (HGMMA for wgmma)
            ops = hmma if hmma > 0 else flops / 1024  # counted, or (old profiles) one m16n8k4 HMMA per 1024 FLOPs
        else:
            ops = flops / 64  # warp FFMAs
        terms["issue"] = ops * s["per_op"] / (g["sms"] * 4 * g["clock"]) * scheduler_load
    wavefronts = num(row, "sld_wavefronts") + num(row, "sst_wavefronts")
    terms["shared"] = wavefronts / (g["sms"] * g["clock"]) * sm_load
    terms["dram"] = num(row, "global_distinct_bytes") / g["hbm"] / (min(1.0, blocks / g["sms"]) if blocks else 1.0)
    terms["launch"] = LAUNCH_S
    limit = max(terms, key=terms.get)
    tail = num(row, "split_tail_bytes") / (SM_L2_BYTES_PER_CLOCK * g["clock"])  # serial, after the k loop
    return terms[limit] + tail, limit, terms


def next_limit(k, limit):
    """The largest H200 term after the binding one, summed over the kernel's launches."""
    terms = sorted(((k["H200 SXMterm " + n], n) for n in ("math", "issue", "shared", "dram", "launch") if n != limit), reverse=True)
    return f"{terms[0][1]} {terms[0][0] * 1e6:.0f}"


def section(path, sass, by_layer=False):
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    if not rows:
        sys.exit(f"predict.py: {path} has no launches")
    per_kernel = defaultdict(lambda: defaultdict(float))
    step = {gpu: defaultdict(float) for gpu in GPUS}
    bound = {gpu: defaultdict(float) for gpu in GPUS}
    for r in rows:
        k = per_kernel[r["kernel"] + (f" · {r['layer']}" if by_layer and r.get("layer") else "")]
        k["launches"] += 1
        for key in ("flops", "tensor_flops", "hmma", "gld_request_distinct_bytes", "gst_request_distinct_bytes", "gld_requests", "gld_sectors", "gld_bytes", "gst_requests", "gst_sectors", "gst_bytes",
                    "sld_requests", "sld_wavefronts", "sst_requests", "sst_wavefronts", "global_distinct_bytes"):
            k[key] += num(r, key)
        for gpu in GPUS:
            t, limit, terms = predict(r, sass, gpu)
            k[gpu] += t
            k[gpu + limit] += t
            for name, term in terms.items():  # every term, for the next limit after the binding one
                k[gpu + "term " + name] += term
            step[gpu][r["phase"]] += t
            bound[gpu][limit] += t
    print(f"| kernel | launches | GFLOP | tensor-core FLOPs useful | coalescing | sectors / ld, st request | "
          f"shared wavefronts / request | occupancy (sm_90) | instructions per FFMA / HMMA | H100 µs | H200 µs | "
          f"binding limit (H200) | next limit (H200, µs) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sorted(per_kernel, key=lambda n: -per_kernel[n]["H200 SXM"]):
        k = per_kernel[name]
        moved = 32 * (k["gld_sectors"] + k["gst_sectors"])
        coalescing = f"{100 * (k['gld_request_distinct_bytes'] + k['gst_request_distinct_bytes']) / moved:.0f} %" if moved else "-"
        ld = k["gld_sectors"] / k["gld_requests"] if k["gld_requests"] else 0
        st = k["gst_sectors"] / k["gst_requests"] if k["gst_requests"] else 0
        req = k["sld_requests"] + k["sst_requests"]
        wf = f"{(k['sld_wavefronts'] + k['sst_wavefronts']) / req:.2f}" if req else "-"
        s = sass.get(sass_name(name), {})
        per_op = f"{s['per_op']} {s['op']}" if s.get("per_op") else "-"
        limits = {lim: k["H200 SXM" + lim] for lim in ("math", "issue", "shared", "dram", "launch")}
        limit = max(limits, key=limits.get)
        useful = f"{100 * k['flops'] / k['tensor_flops']:.0f} %" if k["tensor_flops"] else "-"
        print(f"| `{name}` | {k['launches']:.0f} | {k['flops'] / 1e9:.2f} | {useful} | {coalescing} | {ld:.1f}, {st:.1f} | {wf} | "
              f"{s.get('occupancy', '?')} | {per_op} | {k['H100 SXM'] * 1e6:.0f} | {k['H200 SXM'] * 1e6:.0f} | {limit} | "
              f"{next_limit(k, limit)} |")
    print()
    for gpu in GPUS:
        total = sum(step[gpu].values())
        phases = ", ".join(f"{p} {t * 1e3:.2f} ms" for p, t in step[gpu].items())
        shares = ", ".join(f"{lim} {100 * t / total:.0f} %" for lim, t in sorted(bound[gpu].items(), key=lambda x: -x[1]))
        what = "one step" if "optimizer" in step[gpu] else "these launches"
        print(f"* {gpu}: {what} {total * 1e3:.2f} ms ({phases}); time by binding limit: {shares}")
    print()


def pass_of(kernel):
    """(pass, family) of a backward-convolution kernel, None for other kernels."""
    if "backward_data" in kernel:
        return "input gradient", "implicit GEMM"
    if "backward_weight" in kernel or "reduce_splits" in kernel:
        return "weight gradient", "implicit GEMM"
    if "pack_weights_dgrad" in kernel or "(dgrad)" in kernel:
        return "input gradient", "mma.sync"
    if "mma_wgrad" in kernel:
        return "weight gradient", "mma.sync"
    return None


def passes(path, sass):
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    layers, times = [], defaultdict(float)
    for r in rows:
        p = pass_of(r["kernel"])
        if p is None or not r.get("layer"):
            continue
        if r["layer"] not in layers:
            layers.append(r["layer"])
        times[(r["layer"],) + p] += predict(r, sass, "H200 SXM")[0]
    cols = [(p, f) for p in ("input gradient", "weight gradient") for f in ("implicit GEMM", "mma.sync")]
    print("| layer | " + " | ".join(f"{p}, {f} (H200 µs)" for p, f in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for layer in layers + ["all"]:
        cells = [sum(times[(l, p, f)] for l in layers) if layer == "all" else times[(layer, p, f)] for p, f in cols]
        print(f"| {layer} | " + " | ".join(f"{c * 1e6:.0f}" if c else "-" for c in cells) + " |")
    print()


TARGET_SHARE = 0.60  # issue 20: >= 60 % of the H100's dense TF32 peak where compute-bound


def launch_ceiling(flops, launches, gpu=GPUS["H100 SXM"]):
    """The highest share of the dense TF32 peak a pass of `flops` in `launches` launches can reach
    under the model's launch term alone (each launch takes at least LAUNCH_S), at most 1."""
    return min(1.0, flops / gpu["tf32"] / (launches * LAUNCH_S)) if launches else 1.0


def step_pass(row):
    """The convolution pass (forward / input gradient / weight gradient) a launch of a step belongs
    to, None for launches outside the convolutions (the CSV's layer column is empty there)."""
    kernel = row["kernel"]
    if not row.get("layer"):
        return None
    if "pack_weights_dgrad" in kernel or "(dgrad)" in kernel or "backward_data" in kernel:
        return "input gradient"
    if "wgrad" in kernel or "backward_weight" in kernel or "reduce_splits" in kernel:
        return "weight gradient"
    # the rest of a layer's launches: the forward's (packing, both packings in a TF32 training
    # forward, NHWC copy, GEMM), or in the backward phase the input gradient's NHWC copy of dy
    return "forward" if row["phase"] == "forward" else "input gradient"


def targets(path, sass, enforce):
    """Issue 20's target per convolution pass; returns the number of compute-bound passes below it."""
    gpu = GPUS["H100 SXM"]
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    passes_seen, acc = [], defaultdict(lambda: defaultdict(float))
    batched = 0.0  # a launch packing every convolution's weights (layer "*"): shared out below
    batched_reduce = 0.0  # a launch adding every split weight gradient's sums (layer "*"): the same
    for r in rows:
        if r.get("layer") == "*":
            if "reduce_batch" in r["kernel"]:
                batched_reduce += predict(r, sass, "H100 SXM")[0]
            else:
                batched += predict(r, sass, "H100 SXM")[0]
            continue
        p = step_pass(r)
        if p is None:
            continue
        key = (r["layer"], p)
        if key not in passes_seen:
            passes_seen.append(key)
        a = acc[key]
        t = predict(r, sass, "H100 SXM")[0]
        a["time"] += t
        a["launches"] += 1
        if num(r, "flops") > 0:  # the GEMM kernel: the pass's FLOPs and its tensors
            a["pack_bytes"] += num(r, "pack_bytes")
            a["reduce_bytes"] += num(r, "reduce_bytes")
            a["flops"] += num(r, "flops")
            a["bytes"] += num(r, "compulsory_bytes") or num(r, "global_distinct_bytes")
            a["gemm"] += t
    # A batched launch's time goes to the passes it serves by the bytes each one's part moves.
    for time, key, what in (
            (batched, "pack_bytes", "The forward passes include their share of the one launch packing every "
                                    "convolution's weights"),
            (batched_reduce, "reduce_bytes", "The weight-gradient passes reduced apart include their share of "
                                             "the one launch adding every split weight gradient's partial sums at "
                                             "the backward's end")):
        total = sum(acc[k][key] for k in passes_seen)
        for k in passes_seen:
            if time and total and acc[k][key]:
                acc[k]["time"] += time * acc[k][key] / total
        if time:
            print(f"{what} ({time * 1e6:.1f} µs, by the bytes each one's part moves).\n")
    print(f"Issue 20 target on H100 SXM: each compute-bound convolution pass at >= {TARGET_SHARE:.0%} of the dense "
          f"TF32 peak ({gpu['tf32'] / 1e12:.1f} TFLOP/s; roofline against {gpu['hbm'] / 1e12:.2f} TB/s)\n")
    print("| layer | pass | GFLOP | compulsory MB | bound (roofline) | launches | H100 µs | % of peak | GEMM kernel µs "
          "| GEMM % of peak | launch ceiling | target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    failed = passed = capped = capped_near = 0
    order = {"forward": 0, "input gradient": 1, "weight gradient": 2}
    for key in sorted(passes_seen, key=lambda k: (passes_seen.index((k[0], "forward")) if (k[0], "forward") in passes_seen
                                                   else len(passes_seen), order[k[1]])):
        a = acc[key]
        if a["flops"] == 0:
            continue
        math_s, dram_s = a["flops"] / gpu["tf32"], a["bytes"] / gpu["hbm"]
        compute = math_s >= dram_s
        share, gemm_share = math_s / a["time"], math_s / a["gemm"]
        ceiling = launch_ceiling(a["flops"], a["launches"])
        if compute:
            ok = share >= TARGET_SHARE
            passed += ok
            failed += not ok
            capped += ceiling < TARGET_SHARE
            capped_near += TARGET_SHARE <= ceiling < TARGET_SHARE + 0.05
        verdict = ("PASS" if share >= TARGET_SHARE else "FAIL") if compute else "-"
        print(f"| {key[0]} | {key[1]} | {a['flops'] / 1e9:.2f} | {a['bytes'] / 1e6:.1f} | "
              f"{'compute' if compute else 'memory'} ({math_s / dram_s:.2f}) | {a['launches']:.0f} | {a['time'] * 1e6:.1f} | "
              f"{100 * share:.0f} % | {a['gemm'] * 1e6:.1f} | {100 * gemm_share:.0f} % | {100 * ceiling:.0f} % | {verdict} |")
    total = sum(acc[k]["time"] for k in passes_seen)
    flops = sum(acc[k]["flops"] for k in passes_seen)
    print(f"\n* {passed + failed} compute-bound passes: {passed} PASS, {failed} FAIL; all convolution passes "
          f"{total * 1e6:.0f} µs on H100 for {flops / 1e9:.1f} GFLOP ({100 * flops / gpu['tf32'] / total:.0f} % of the "
          f"dense TF32 peak)")
    print(f"* launch ceiling: the share a pass could reach if every launch took only the model's "
          f"{LAUNCH_S * 1e6:.0f} µs launch term (FLOPs / peak / (launches x {LAUNCH_S * 1e6:.0f} µs)); "
          f"{capped} of the compute-bound passes are below {100 * TARGET_SHARE:.0f} % by it alone, "
          f"{capped_near} more below {100 * TARGET_SHARE + 5:.0f} %\n")
    return failed if enforce else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", action="append", required=True, help="kiln_emu_profile --csv output")
    ap.add_argument("--sass", default="docs/kernels.md", help="markdown holding sass_check.py's sm_90 table")
    ap.add_argument("--by-layer", action="store_true", help="one row per kernel and layer")
    ap.add_argument("--passes", action="store_true", help="per layer and backward pass: implicit GEMM vs mma.sync")
    ap.add_argument("--targets", action="store_true",
                    help="issue 20's target per convolution pass (>= 60 %% of the dense TF32 peak where compute-bound)")
    ap.add_argument("--enforce", action="store_true", help="with --targets: exit 1 if a compute-bound pass fails")
    args = ap.parse_args()
    try:
        sass = read_sass(args.sass)
    except OSError as e:
        sys.exit(f"predict.py: cannot read the SASS table: {e}")
    if not sass:
        sys.exit(f"predict.py: {args.sass} holds no sm_90 table of sass_check.py --markdown")
    failures = 0
    for path in args.profile:
        print(f"**{path}**\n")
        if args.targets:
            failures += targets(path, sass, args.enforce)
            continue
        section(path, sass, args.by_layer)
        if args.passes:
            passes(path, sass)
    if failures:
        sys.exit(f"predict.py: {failures} compute-bound convolution passes below {TARGET_SHARE:.0%} of the TF32 peak")


if __name__ == "__main__":
    main()
