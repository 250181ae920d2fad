#!/usr/bin/env python3
"""Turns the raw outputs of bench/gpu_report.sh (a folder) into one markdown report on stdout.

Reads, each if present: machine.txt, phases.tsv, ctest-gpu.log, bench_gpu.json (per-layer: our
kernels in fp32 and, for convolutions, TF32; cuDNN fp32, cuDNN TF32), bench_step_gpu.json (whole U-Net step), pytorch_gpu.json
(compare_pytorch.py --device cuda). Standard library only.
Usage: bench/gpu_report.py bench/out > bench/out/gpu-report.md
"""
import json
import math
import os
import sys


def load_json(path):
    """The file's JSON; for a Google Benchmark file cut short (its phase timed out, so the closing
    brackets were never written) the context and every row written in full, with "truncated": True;
    None where nothing can be read."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return salvage_benchmarks(text)


def salvage_benchmarks(text):
    decoder = json.JSONDecoder()
    context = {}
    at = text.find('"context"')
    if at >= 0:
        try:
            context, _ = decoder.raw_decode(text, text.index("{", at))
        except ValueError:
            context = {}
    at = text.find('"benchmarks"')
    if at < 0:
        return None
    at = text.find("[", at)
    rows = []
    while at >= 0:
        at += 1
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        try:
            row, at = decoder.raw_decode(text, at)
        except ValueError:
            break  # the row being written when the phase stopped
        rows.append(row)
        at -= 1
    return {"context": context, "benchmarks": rows, "truncated": True} if rows or context else None


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return "-"
    return f"{v:,.{digits}f}"


def time_us(b):
    """Per-call time of a Google Benchmark row in microseconds."""
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
    return b["real_time"] * scale


def split_name(name):
    """'conv3x3_fwd/cuda/fp32/C64_H64_N16' -> ('conv3x3_fwd', 'cuda', 'fp32', 'C64_H64_N16')."""
    parts = name.split("/")
    # Google Benchmark appends '/manual_time', '/iterations:1' ...: drop them.
    parts = [p for p in parts if not (p.startswith("manual_time") or p.startswith("real_time")
                                      or p.startswith("iterations:") or p.startswith("min_time:"))]
    if len(parts) < 3:
        return None
    op, backend, rest = parts[0], parts[1], parts[2:]
    math_mode = rest[0] if len(rest) > 1 else ""
    return op, backend, math_mode, rest[-1]


def shape_key(shape):
    """Sort 'C64_H64_N16' by (N, input size set, C)."""
    try:
        c, h, n = (int(p[1:]) for p in shape.split("_"))
        return (n, c * h, c)
    except ValueError:
        return (0, 0, 0)


OP_ORDER = ["conv3x3_fwd", "conv3x3_dgrad", "conv3x3_wgrad", "conv1x1_fwd", "conv1x1_dgrad", "conv1x1_wgrad",
            "batchnorm_fwd_train", "batchnorm_bwd", "batchnorm_fwd_eval", "relu_fwd", "relu_bwd", "maxpool_fwd",
            "maxpool_bwd", "upsample_fwd", "upsample_bwd", "concat_fwd", "concat_bwd", "mse_fwd", "mse_bwd",
            "adam_step"]


def layer_section(report, lines):
    ctx = report.get("context", {})
    if report.get("truncated"):
        lines.append(f"**kiln_bench_gpu stopped before its end** (its phase's time limit): the {len(report['benchmarks'])} "
                     "rows written in full are below; the rest did not run.\n")
    lines.append("## Device\n")
    keys = [("kiln_gpu_name", "GPU"), ("kiln_gpu_cc", "compute capability"), ("kiln_gpu_sms", "SMs"),
            ("kiln_gpu_clock_mhz", "SM clock (MHz)"), ("kiln_gpu_mem_clock_mhz", "memory clock (MHz)"),
            ("kiln_gpu_bus_bits", "memory bus (bits)"), ("kiln_gpu_fp32_peak_tflops", "fp32 peak (TFLOP/s, CUDA cores)"),
            ("kiln_gpu_tf32_peak_tflops", "TF32 peak (TFLOP/s, dense tensor cores)"),
            ("kiln_gpu_dram_peak_gbs", "DRAM peak (GB/s, from clock x bus)"),
            ("kiln_gpu_d2d_copy_gbs", "measured cudaMemcpy D2D (GB/s, read + write): the memory ceiling"),
            ("kiln_cudnn_version", "cuDNN version"), ("kiln_ours", "our kernels")]
    lines.append("| | |\n|---|---|")
    for k, label in keys:
        if k in ctx:
            v = ctx[k]
            try:
                v = fmt(float(v), 1) if "." in v else v
            except ValueError:
                pass
            lines.append(f"| {label} | {v} |")
    lines.append("")

    rows = {}
    for b in report.get("benchmarks", []):
        if b.get("run_type") == "aggregate":
            continue
        parsed = split_name(b["name"])
        if not parsed:
            continue
        op, backend, math_mode, shape = parsed
        rows.setdefault((op, shape), {})[f"{backend}/{math_mode}" if math_mode else backend] = b
    if not rows:
        lines.append("No per-layer results (kiln_bench_gpu did not run or wrote no JSON).\n")
        return

    lines.append("## Per layer: our kernels against cuDNN\n")
    lines.append("Time per call: the mean GPU event time over Google Benchmark's run (`--benchmark_min_time`). "
                 "**ours/cuDNN** < 1 means ours is faster. fp32 = cuDNN without tensor cores "
                 "(CUDNN_FMA_MATH), like for like with our fp32 kernels; TF32 = cuDNN allowed TF32 tensor cores "
                 "(its default for fp32 convolutions on Ampere and later). Rate = GFLOP/s for convolutions "
                 "(2·N·Cout·Cin·K²·H·W per pass), GB/s for the rest (each tensor read once + written once); "
                 "peak = fraction of the fp32 (or TF32) peak, or of the measured copy bandwidth. "
                 "Shapes: C and H of the layer's input, N the batch (see bench/bench_common.hpp).\n")
    lines.append("Our TF32 column is kiln's tensor-core convolutions (`kiln::cuda::MathMode::tf32`: the mma.sync "
                 "kernels of kernels/conv2d_mma.cuh and conv2d_mma_wgrad.cuh), compared with cuDNN TF32: like with "
                 "like.\n")
    lines.append("| op | shape | ours fp32 µs | cuDNN fp32 µs | ours/cuDNN fp32 | ours TF32 µs | cuDNN TF32 µs "
                 "| ours TF32/cuDNN TF32 | ours fp32 rate | ours fp32 peak | ours TF32 peak | cuDNN fp32 peak "
                 "| cuDNN TF32 peak | errors |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    ratios, ratios_tf32 = {}, {}
    ordered = sorted(rows.items(), key=lambda kv: (OP_ORDER.index(kv[0][0]) if kv[0][0] in OP_ORDER else 99,
                                                   shape_key(kv[0][1])))
    for (op, shape), by in ordered:
        if not any(k in by for k in ("cuda/fp32", "cudnn/fp32", "cudnn/tf32", "cuda/tf32")):
            continue  # a shape with comparison rows only (the sections below)
        ours, fp32, tf32 = by.get("cuda/fp32"), by.get("cudnn/fp32"), by.get("cudnn/tf32")
        ours_tf32 = by.get("cuda/tf32")
        errors = "; ".join(f"{k}: {v.get('error_message', '')}" for k, v in by.items() if v.get("error_occurred"))
        ok = lambda b: b is not None and not b.get("error_occurred")  # noqa: E731
        t_ours = time_us(ours) if ok(ours) else None
        t_fp32 = time_us(fp32) if ok(fp32) else None
        t_tf32 = time_us(tf32) if ok(tf32) else None
        t_ours_tf32 = time_us(ours_tf32) if ok(ours_tf32) else None
        r32 = t_ours / t_fp32 if t_ours and t_fp32 else None
        rtf = t_ours_tf32 / t_tf32 if t_ours_tf32 and t_tf32 else None
        if r32:
            ratios.setdefault(op, []).append(r32)
        if rtf:
            ratios_tf32.setdefault(op, []).append(rtf)
        rate = None
        if ok(ours):
            rate = (f"{fmt(ours['GFLOP/s'], 0)} GFLOP/s" if "GFLOP/s" in ours else
                    f"{fmt(ours.get('GB/s'), 0)} GB/s" if "GB/s" in ours else "-")
        peak = lambda b: fmt(100 * b["peak_frac"], 0) + "%" if ok(b) and "peak_frac" in b else "-"  # noqa: E731
        lines.append(f"| {op} | {shape} | {fmt(t_ours)} | {fmt(t_fp32)} | {fmt(r32, 2)} | {fmt(t_ours_tf32)} | "
                     f"{fmt(t_tf32)} | {fmt(rtf, 2)} | {rate or '-'} | {peak(ours)} | {peak(ours_tf32)} | "
                     f"{peak(fp32)} | {peak(tf32)} | {errors} |")
    lines.append("")
    for table, what in ((ratios, "ours fp32 / cuDNN fp32"), (ratios_tf32, "ours TF32 / cuDNN TF32")):
        if not table:
            continue
        lines.append(f"### Summary: geometric mean of {what} per operation\n")
        lines.append(f"| op | shapes | geomean {what} | best | worst |\n|---|---:|---:|---:|---:|")
        for op in sorted(table, key=lambda o: OP_ORDER.index(o) if o in OP_ORDER else 99):
            rs = table[op]
            g = math.exp(sum(math.log(r) for r in rs) / len(rs))
            lines.append(f"| {op} | {len(rs)} | {g:.2f} | {min(rs):.2f} | {max(rs):.2f} |")
        lines.append("")
    fused = [(shape, by.get("cuda/fused"), by.get("cuda/fp32")) for (op, shape), by in ordered
             if op == "adam_step" and "cuda/fused" in by]
    if fused:
        lines.append("### Multi-tensor Adam (one launch per 64 tensors) against one launch per tensor\n")
        lines.append("| model | fused µs | per-tensor µs | fused / per-tensor | fused GB/s | fused % of copy bandwidth |\n"
                     "|---|---:|---:|---:|---:|---:|")
        for shape, f, per in fused:
            ok = lambda b: b is not None and not b.get("error_occurred")  # noqa: E731
            tf, tp = (time_us(f) if ok(f) else None), (time_us(per) if ok(per) else None)
            frac = fmt(100 * f["peak_frac"], 0) + "%" if ok(f) and "peak_frac" in f else "-"
            lines.append(f"| {shape} | {fmt(tf)} | {fmt(tp)} | {fmt(tf / tp if tf and tp else None, 2)} | "
                         f"{fmt(f.get('GB/s') if ok(f) else None, 0)} | {frac} |")
        lines.append("")
    plan_section(ordered, lines)
    wgrad_sections(ordered, lines)
    clock = ctx.get("kiln_gpu_clock_mhz")
    tail_section(ordered, float(clock) if clock else None, lines)
    dsmem_section(ordered, float(clock) if clock else None, lines)
    labels = [(op, shape, k, b.get("label")) for (op, shape), by in ordered for k, b in by.items()
              if k.startswith("cudnn") and op.startswith("conv") and b.get("label")]
    if labels:
        lines.append("<details><summary>cuDNN's chosen convolution algorithms</summary>\n")
        lines.append("| op | shape | math | algorithm |\n|---|---|---|---|")
        for op, shape, k, label in labels:
            lines.append(f"| {op} | {shape} | {k} | {label} |")
        lines.append("\n</details>\n")


PLAN_COLUMNS = (("cuda/mma_tf32", "planned"), ("cuda/mma_tf32_128x128", "128x128 tiles"),
                ("cuda/mma_tf32_half_slices", "half the slices"))


def plan_section(ordered, lines):
    """The mma.sync forward as planned beside the plans the model weighed (bench/gpu_tf32_cases.hpp,
    add_mma_plan_rows; docs/kernels.md "128 x 64 tiles on the deep levels"): where an alternative is
    faster, mma_conv::block_n or mma_conv::splits is wrong for that shape."""
    ok = lambda b: b is not None and not b.get("error_occurred")  # noqa: E731
    rows = [(op, shape, by) for (op, shape), by in ordered
            if any(k in by for k, _ in PLAN_COLUMNS[1:]) and ok(by.get(PLAN_COLUMNS[0][0]))]
    if not rows:
        return
    lines.append("### The mma.sync forward's plan against the alternatives\n")
    lines.append("Packing + GEMM per call (µs; the JSON rows' labels name each alternative's tiles and slices). "
                 "**faster** marks an alternative that beats the plan by more than 5 %.\n")
    lines.append("| op | shape | " + " | ".join(f"{name} µs" for _, name in PLAN_COLUMNS) +
                 " | cuDNN TF32 µs | verdict |\n|---|---|" + "---:|" * (len(PLAN_COLUMNS) + 1) + "---|")
    for op, shape, by in rows:
        times = [time_us(by[k]) if ok(by.get(k)) else None for k, _ in PLAN_COLUMNS]
        cudnn = by.get("cudnn/tf32")
        planned = times[0]
        faster = [name for (_, name), t in zip(PLAN_COLUMNS[1:], times[1:]) if t and t < 0.95 * planned]
        verdict = "**faster: " + ", ".join(faster) + "**" if faster else "plan holds"
        lines.append(f"| {op} | {shape} | " + " | ".join(fmt(t) for t in times) +
                     f" | {fmt(time_us(cudnn) if ok(cudnn) else None)} | {verdict} |")
    lines.append("")


def pair_section(ordered, lines, keys, title, intro, names, verdicts):
    """A planned variant's rows (keys[0]) against the alternative the model weighed (keys[1]), where a
    shape has both: per-call µs, the planned one's share of the peak, and `loses` where the alternative
    is faster by more than 5 % (verdicts: the planned one holds, the alternative is faster)."""
    ok = lambda b: b is not None and not b.get("error_occurred")  # noqa: E731
    rows = [(op, shape, by) for (op, shape), by in ordered if ok(by.get(keys[0])) and ok(by.get(keys[1]))]
    if not rows:
        return
    lines.append(f"### {title}\n")
    lines.append(intro + "\n")
    lines.append(f"| op | shape | {names[0]} µs | {names[1]} µs | {names[0]}: share of the TF32 peak | verdict |\n"
                 "|---|---|---:|---:|---:|---|")
    for op, shape, by in rows:
        planned, other = time_us(by[keys[0]]), time_us(by[keys[1]])
        frac = by[keys[0]].get("peak_frac")
        verdict = f"**{verdicts[1]}**" if planned and other and other < 0.95 * planned else verdicts[0]
        lines.append(f"| {op} | {shape} | {fmt(planned)} | {fmt(other)} | "
                     f"{fmt(100 * frac if frac is not None else None, 0)} % | {verdict} |")
    lines.append("")


# The weight gradient's planned variants against the alternatives the model weighed (bench/gpu_tf32_cases.hpp):
# tap pairs (planned where a side has 64 channels; register_tf32_wgrad_tile_rows; docs/kernels.md "Tap pairs for
# the weight gradient") against the one-tap tile they replaced: where one tap wins, mma_wgrad::geometry is wrong
# there; few splits added in the GEMM's launch (planned where mma_wgrad::one_launch holds;
# register_tf32_wgrad_reduction_rows; "Few weight-gradient splits added in the GEMM's launch") against the
# reduction launch: where that wins, the tail model behind one_launch is wrong there; the planned split counts
# (register_tf32_wgrad_wave_rows; "Waves") against the plan before them, one block past a whole wave: where that
# wins, the busiest-SM model overstates a partial wave; stream-K where planned (register_tf32_wgrad_stream_k_rows;
# "Stream-K") against the grid's best split count.
WGRAD_COMPARISONS = (
    (("cuda/mma_tf32_tap_pairs", "cuda/mma_tf32_one_tap"), "The weight gradient's tap pairs against one tap per block",
     "GEMM + split-K reduction per call (µs). **one tap faster** marks a shape where the pair loses by more than 5 %; "
     "the predicted share of the TF32 peak is in docs/kernels.md.",
     ("tap pairs", "one tap"), ("pairs hold", "one tap faster")),
    (("cuda/mma_tf32_one_launch", "cuda/mma_tf32_reduction_launch"),
     "The weight gradient's few splits: added in the GEMM's launch against the reduction launch",
     "GEMM (+ reduction) per call (µs). **reduction launch faster** marks a shape where the one-launch sum loses by "
     "more than 5 %.",
     ("one launch", "reduction launch"), ("one launch holds", "reduction launch faster")),
    (("cuda/mma_tf32_planned_splits", "cuda/mma_tf32_past_a_wave"),
     "The weight gradient's splits: planned by the busiest-SM model against one block past a whole wave",
     "GEMM (+ reduction) per call (µs). **past a wave faster** marks a shape where the plan before 2026-12-07 wins by "
     "more than 5 %: there the model's waves (docs/kernels.md \"Waves\") overstate the cost of a partial wave.",
     ("planned", "past a wave"), ("plan holds", "past a wave faster")),
    (("cuda/mma_tf32_stream_k", "cuda/mma_tf32_split_k"),
     "The weight gradient's stream-K schedule against the grid's best split count",
     "GEMM (+ reduction) per call (µs). **split-K faster** marks a shape where the grid's splits win by more than "
     "5 %: there the model behind mma_wgrad::splits (docs/kernels.md \"Stream-K\") misprices the pieces' sums.",
     ("stream-K", "split-K"), ("stream-K holds", "split-K faster")),
    # register_tf32_wgrad_wgmma_rows; docs/kernels.md "The weight gradient on wgmma"
    (("cuda/wgmma_tf32", "cuda/mma_tf32_planned"),
     "The weight gradient on wgmma against mma.sync, in the same splits",
     "GEMM (+ reduction) per call (µs), mma.sync's planned splits for both. **mma.sync faster** marks a shape where "
     "the wgmma kernel loses by more than 5 %.",
     ("wgmma", "mma.sync"), ("wgmma holds", "mma.sync faster")),
    (("cuda/wgmma_tf32_cluster", "cuda/wgmma_tf32"),
     "The wgmma weight gradient's splits added in a cluster against its splits as mma.sync plans them",
     "GEMM (+ reduction) per call (µs). **no cluster faster** marks a shape where adding a tile's splits through "
     "distributed shared memory loses by more than 5 %: there the DSMEM rate the plan assumes "
     "(mma_wgrad::plan_model::sm_dsmem_bytes_per_clock) is too high (see the cluster_dsmem probe above).",
     ("cluster", "mma.sync's splits"), ("cluster holds", "no cluster faster")),
)


def wgrad_sections(ordered, lines):
    for comparison in WGRAD_COMPARISONS + WGMMA_COMPARISONS:
        pair_section(ordered, lines, *comparison)


# The wgmma forward (kernels/conv2d_wgmma.cuh, sm_90a; bench/gpu_tf32_cases.hpp add_wgmma_conv_row) against the
# mma.sync forward as the backend plans it (docs/kernels.md "wgmma"; the backend's plan takes it where the model
# says it wins: "wgmma in the backend"), and the short tile against the 128-row one.
WGMMA_COMPARISONS = (
    (("cuda/wgmma_tf32_128x128", "cuda/mma_tf32"), "The wgmma forward (128 x 128 tiles) against the planned mma.sync one",
     "Packing + GEMM per call (µs), each split as its plan says. **mma.sync faster** marks a shape where wgmma "
     "loses by more than 5 %.",
     ("wgmma 128x128", "mma.sync planned"), ("wgmma holds", "mma.sync faster")),
    (("cuda/wgmma_tf32_128x256", "cuda/mma_tf32"), "The wgmma forward (128 x 256 tiles) against the planned mma.sync one",
     "Packing + GEMM per call (µs), Cout > 128 only. **mma.sync faster** marks a shape where wgmma loses by more than 5 %.",
     ("wgmma 128x256", "mma.sync planned"), ("wgmma holds", "mma.sync faster")),
    (("cuda/wgmma_tf32_64x128", "cuda/wgmma_tf32_128x128"), "The short wgmma tile (64 x 128) against 128 x 128 where those split",
     "Packing + GEMM per call (µs), each split as its plan says (the backend takes the short tile where 128-row tiles "
     "split into more than 2 slices: tf32_forward::wgmma_plan). **128 x 128 faster** marks a shape where the short "
     "tile loses by more than 5 %.",
     ("wgmma 64x128", "wgmma 128x128"), ("short holds", "128 x 128 faster")),
)


# The model's per-SM L2 read rate in a split-K tail (tests/emucheck/predict.py SM_L2_BYTES_PER_CLOCK,
# mma_wgrad::plan_model::sm_l2_bytes_per_clock).
MODEL_TAIL_BYTES_PER_CLOCK = 64


def probe_points(ordered, op, counter):
    """(parameter, µs, bytes per block) of a probe's rows `op/cuda/<name>:<parameter>`, by parameter."""
    ok = lambda b: b is not None and not b.get("error_occurred")  # noqa: E731
    return sorted((int(shape.split(":")[1]), time_us(by["cuda"]), by["cuda"].get(counter))
                  for (o, shape), by in ordered if o == op and ok(by.get("cuda")))


def probe_slope(points, clock_mhz, what, lines, model=None):
    """The read rate between a probe's first and last row: bytes per ns per SM, and per clock."""
    (p0, t0, b0), (p1, t1, b1) = points[0], points[-1]
    if not (t1 > t0 and b0 is not None and b1 is not None):
        lines.append(f"\nNo slope: {what[1]} was not slower than {what[0]}.\n")
        return
    per_ns = (b1 - b0) / ((t1 - t0) * 1e3)
    per_clock = per_ns / (clock_mhz * 1e-3) if clock_mhz else None
    lines.append(f"\nSlope from {what[2]} {p0} to {p1}: {fmt(per_ns, 1)} bytes/ns per SM"
                 + (f", {fmt(per_clock, 1)} bytes per clock at {fmt(clock_mhz, 0)} MHz" if per_clock else "")
                 + (f" (model: {model})" if per_clock and model else "") + ".\n")


def tail_section(ordered, clock_mhz, lines):
    """split_k_tail/cuda/slices:<S> (bench/gpu_probe_cases.hpp): one block per SM reads S - 1 partial tiles
    of 64 KiB from L2; the slope between the fewest and the most slices is one SM's read rate."""
    points = probe_points(ordered, "split_k_tail", "l2_read_bytes")
    if len(points) < 2:
        return
    lines.append("### One SM's L2 read rate in a split-K tail (the model's assumption)\n")
    lines.append("Each block of `split_k_tail_probe_kernel` is the last of its tile and reads the other slices' "
                 "partial tiles from L2 with the kernels' own `reduce_split_k`. The rate is the slope between the "
                 f"fewest and the most slices; `predict.py` and `mma_wgrad::plan_model` assume "
                 f"{MODEL_TAIL_BYTES_PER_CLOCK} bytes per clock.\n")
    lines.append("| slices | µs per launch | bytes read per block |\n|---:|---:|---:|")
    for slices, us, read in points:
        lines.append(f"| {slices} | {fmt(us, 2)} | {fmt(read, 0)} |")
    probe_slope(points, clock_mhz, ("the fewest slices", "the most slices", "slices"), lines,
                MODEL_TAIL_BYTES_PER_CLOCK)


def dsmem_section(ordered, clock_mhz, lines):
    """cluster_dsmem/cuda/cluster:<C> (bench/gpu_probe_cases.hpp): each block of a cluster sums a 1/C slice
    of a 64 KiB tile over the cluster's shared memories; the slope between the smallest and the largest
    cluster is one SM's distributed-shared-memory read rate."""
    points = probe_points(ordered, "cluster_dsmem", "dsmem_read_bytes")
    if len(points) < 2:
        return
    lines.append("### One SM's distributed-shared-memory read rate (a cluster split-K's reduction)\n")
    lines.append("Each block of `cluster_dsmem_probe_kernel` leaves a 64 KiB tile in its shared memory and sums a "
                 "1/C slice of it over the C blocks of its cluster, (C - 1) / C of it read from other SMs. The "
                 "rate is the slope between the smallest and the largest cluster; compare it with the L2 rate "
                 f"above (the model's {MODEL_TAIL_BYTES_PER_CLOCK} bytes per clock): a cluster split-K weight "
                 "gradient pays off where it is not far below.\n")
    lines.append("| cluster | µs per launch | bytes read from other SMs per block |\n|---:|---:|---:|")
    for cluster, us, read in points:
        lines.append(f"| {cluster} | {fmt(us, 2)} | {fmt(read, 0)} |")
    probe_slope(points, clock_mhz, ("the smallest cluster", "the largest cluster", "clusters of"), lines)


def step_section(report, lines):
    lines.append("## Whole U-Net on the GPU (kiln_bench_step_gpu)\n")
    if not report or not report.get("benchmarks"):
        lines.append("No results (kiln_bench_step_gpu did not run or wrote no JSON).\n")
        return
    lines.append("Median of the timed steps (each synchronised), after warm-up steps; a training step is "
                 "forward + MSE + zero_grad + backward + Adam.\n")
    lines.append("| benchmark | median ms | min ms | images/s | arena MiB | params |\n|---|---:|---:|---:|---:|---:|")
    for b in report["benchmarks"]:
        if b.get("error_occurred"):
            lines.append(f"| {b['name']} | error: {b.get('error_message', '')} | | | | |")
            continue
        name = b["name"].split("/iterations")[0].split("/manual_time")[0]
        lines.append(f"| {name} | {fmt(b.get('median_ms'), 2)} | {fmt(b.get('min_ms'), 2)} | "
                     f"{fmt(b.get('images_per_s'), 0)} | {fmt(b.get('arena_MiB'), 0)} | {fmt(b.get('params'), 0)} |")
    lines.append("")


def pytorch_section(report, lines):
    lines.append("## kiln against PyTorch on the GPU (compare_pytorch.py --device cuda)\n")
    if not report:
        lines.append("No results (PyTorch with CUDA was not found, or the comparison failed).\n")
        return
    m = report.get("machine", {})
    lines.append(f"PyTorch {m.get('torch', '?')} on {m.get('gpu', '?')}; median of {m.get('steps')} steps after "
                 f"{m.get('warmup')} warm-up; cudnn.benchmark on. Each row runs both libraries in the same math: "
                 "strict fp32 (PyTorch: allow_tf32 off), TF32 (kiln MathMode::tf32, PyTorch allow_tf32), BF16 "
                 "(kiln MathMode::bf16, kiln-train's --precision bf16; PyTorch eager with autocast to bfloat16, "
                 "its AMP). Issue 20's goal: the BF16 training step at most 1/1.5 = 0.67 of PyTorch AMP's "
                 "(kiln / PyTorch <= 0.67).\n")
    lines.append("| model | config | mode | math (both) | kiln ms | PyTorch ms | kiln / PyTorch |\n"
                 "|---|---|---|---|---:|---:|---:|")
    for r in report.get("rows", []):
        lines.append(f"| {r['model']} | {r['config']} | {r['mode']} | {r['math']} | {fmt(r.get('kiln_ms'), 2)} | "
                     f"{fmt(r.get('pytorch_ms'), 2)} | {fmt(r.get('ratio'), 2)} |")
    params = report.get("parameters", [])
    if params:
        lines.append("\n| model | PyTorch parameters | kiln parameter_count |\n|---|---:|---:|")
        for p in params:
            lines.append(f"| {p['model']} | {p['pytorch']:,} | {p.get('kiln', '-')} |")
    lines.append("")


def sanitizer_section(folder, lines):
    rows = []
    for tool in ("memcheck", "racecheck", "synccheck", "initcheck"):
        log = read(os.path.join(folder, f"sanitizer-{tool}.log"))
        if log:
            summary = [ln for ln in log.splitlines() if "ERROR SUMMARY" in ln or "RACECHECK SUMMARY" in ln]
            rows.append(f"| {tool} | {summary[-1].replace('=========', '').strip() if summary else 'no summary line (see log)'} |")
    if rows:
        lines.append("## compute-sanitizer\n\n| tool | summary |\n|---|---|")
        lines.extend(rows)
        lines.append("")


def train_section(folder, lines):
    log = read(os.path.join(folder, "train_gpu.log"))
    if not log:
        return
    keep = [ln for ln in log.splitlines() if ln.startswith(("epoch", "summary", "  ", "device", "kiln-train"))]
    lines.append("## kiln-train on the GPU\n\n```\n" + "\n".join(keep[-30:]) + "\n```\n")
    col = read(os.path.join(folder, "colorize_gpu.log"))
    if col:
        lines.append("```\n" + "\n".join(col.splitlines()[-6:]) + "\n```\n")
    bf16 = read(os.path.join(folder, "train_gpu_bf16.log"))
    if bf16:
        keep = [ln for ln in bf16.splitlines() if ln.startswith(("epoch", "summary", "  ", "device", "kiln-train"))]
        lines.append("The same run with `--precision bf16` (its validation MSE against the fp32 run's above):\n\n```\n"
                     + "\n".join(keep[-30:]) + "\n```\n")


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out")
    lines = ["# kiln GPU report\n", "Written by `bench/gpu_report.sh` (raw JSON and logs next to this file).\n"]
    machine = read(os.path.join(folder, "machine.txt"))
    if machine:
        lines.append("```\n" + machine.strip() + "\n```\n")
    phases = read(os.path.join(folder, "phases.tsv"))
    if phases:
        lines.append("## Phases\n\n| phase | status | seconds | note |\n|---|---|---:|---|")
        for line in phases.strip().splitlines():
            cols = (line.split("\t") + ["", "", "", ""])[:4]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cols) + " |")
        lines.append("")
    ctest = read(os.path.join(folder, "ctest-gpu.log"))
    if ctest:
        summary = [ln for ln in ctest.splitlines() if "tests passed" in ln or "tests failed" in ln
                   or "***Failed" in ln or "No tests were found" in ln or "test cases:" in ln
                   or "assertions:" in ln or "ERROR" in ln]
        lines.append("## gpu tests (ctest -L gpu, or kiln_gpu_tests run directly)\n\n```\n" + ("\n".join(summary) or ctest.strip()[-2000:]) + "\n```\n")
    layer = load_json(os.path.join(folder, "bench_gpu.json"))
    if layer:
        layer_section(layer, lines)
    else:
        lines.append("## Per layer\n\nNo results (kiln_bench_gpu did not run or wrote no JSON).\n")
    step_section(load_json(os.path.join(folder, "bench_step_gpu.json")), lines)
    pytorch_section(load_json(os.path.join(folder, "pytorch_gpu.json")), lines)
    sanitizer_section(folder, lines)
    train_section(folder, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
