#!/usr/bin/env python3
"""Markdown table of a kiln Google Benchmark JSON report (kiln_bench_cpu / kiln_bench_gpu).

  bench/json_table.py out.json                # every row
  bench/json_table.py out.json conv3x3_ relu_  # rows whose name starts with one of these
  bench/json_table.py --grid N16 H128 out.json # layers x shapes (rows with N16 and one of the five
                                               # level sizes of a 128x128 input; H256 for 256x256)
Columns: benchmark, time per call (ms), rate (GFLOP/s or GB/s), fraction of the peak, label.
The grid's cells: ms per call, rate, % of peak.
Standard library only; used to paste the CPU figures into docs/benchmarks.md.
"""
import json
import sys


SCALE = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def grid(report, batch, top):
    """Layers (rows) x UNet levels (columns) for batch `batch` and a `top` x `top` input."""
    levels = [(32 << i, top >> i) for i in range(5)]
    cells, layers = {}, []
    for b in report.get("benchmarks", []):
        parts = b["name"].split("/")
        if len(parts) < 3 or parts[1] != "cpu" or b.get("error_occurred"):
            continue
        layer, shape = parts[0], parts[2]
        for c, h in levels:
            if shape == f"C{c}_H{h}_{batch}" or (layer.startswith("mse_") and shape == f"C2_H{top}_{batch}"):
                ms = b["real_time"] * SCALE[b.get("time_unit", "ns")]
                rate = (f"{b['GFLOP/s']:.0f} GF/s" if "GFLOP/s" in b else f"{b['GB/s']:.1f} GB/s" if "GB/s" in b else "")
                peak = f" · {100 * b['peak_frac']:.0f}%" if "peak_frac" in b else ""
                key = (c, h) if not layer.startswith("mse_") else levels[0]
                cells[(layer, key)] = f"{ms:.3g} ms · {rate}{peak}"
                if layer not in layers:
                    layers.append(layer)
    print("| layer | " + " | ".join(f"{c}@{h}²" for c, h in levels) + " |")
    print("|---|" + "---:|" * len(levels))
    for layer in layers:
        print(f"| {layer} | " + " | ".join(cells.get((layer, l), "") for l in levels) + " |")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "--grid":
        if len(sys.argv) != 5:
            sys.exit(__doc__)
        return grid(json.load(open(sys.argv[4])), sys.argv[2], int(sys.argv[3].lstrip("H")))
    report = json.load(open(sys.argv[1]))
    prefixes = sys.argv[2:]
    ctx = report.get("context", {})
    print(f"<!-- {ctx.get('date', '')}, {ctx.get('num_cpus', '?')} CPUs, load {ctx.get('load_avg', '')} -->")
    print("| benchmark | ms / call | rate | of peak | |\n|---|---:|---:|---:|---|")
    for b in report.get("benchmarks", []):
        name = b["name"]
        if prefixes and not any(name.startswith(p) for p in prefixes):
            continue
        short = "/".join(p for p in name.split("/") if not (p.startswith(("real_time", "manual_time", "min_time:",
                                                                            "iterations:"))))
        if b.get("error_occurred"):
            print(f"| {short} | error: {b.get('error_message', '')} | | | |")
            continue
        ms = b["real_time"] * SCALE[b.get("time_unit", "ns")]
        rate = (f"{b['GFLOP/s']:.1f} GFLOP/s" if "GFLOP/s" in b else
                f"{b['GB/s']:.2f} GB/s" if "GB/s" in b else "")
        peak = f"{100 * b['peak_frac']:.1f}%" if "peak_frac" in b else ""
        print(f"| {short} | {ms:.3g} | {rate} | {peak} | {b.get('label', '')} |")


if __name__ == "__main__":
    main()
