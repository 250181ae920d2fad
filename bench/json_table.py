#!/usr/bin/env python3
"""Markdown table of a kiln Google Benchmark JSON report (kiln_bench_cpu / kiln_bench_gpu).

  bench/json_table.py out.json                # every row
  bench/json_table.py out.json conv3x3_ relu_  # rows whose name starts with one of these
Columns: benchmark, time per call (ms), rate (GFLOP/s or GB/s), fraction of the peak, label.
Standard library only; used to paste the CPU figures into docs/benchmarks.md.
"""
import json
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    report = json.load(open(sys.argv[1]))
    prefixes = sys.argv[2:]
    ctx = report.get("context", {})
    print(f"<!-- {ctx.get('date', '')}, {ctx.get('num_cpus', '?')} CPUs, load {ctx.get('load_avg', '')} -->")
    print("| benchmark | ms / call | rate | of peak | |\n|---|---:|---:|---:|---|")
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
    for b in report.get("benchmarks", []):
        name = b["name"]
        if prefixes and not any(name.startswith(p) for p in prefixes):
            continue
        short = "/".join(p for p in name.split("/") if not (p.startswith(("real_time", "manual_time", "min_time:",
                                                                            "iterations:"))))
        if b.get("error_occurred"):
            print(f"| {short} | error: {b.get('error_message', '')} | | | |")
            continue
        ms = b["real_time"] * scale[b.get("time_unit", "ns")]
        rate = (f"{b['GFLOP/s']:.1f} GFLOP/s" if "GFLOP/s" in b else
                f"{b['GB/s']:.2f} GB/s" if "GB/s" in b else "")
        peak = f"{100 * b['peak_frac']:.1f}%" if "peak_frac" in b else ""
        print(f"| {short} | {ms:.3g} | {rate} | {peak} | {b.get('label', '')} |")


if __name__ == "__main__":
    main()
