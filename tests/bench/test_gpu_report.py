#!/usr/bin/env python3
"""Unit test of bench/gpu_report.py on hand-made inputs (no GPU): a kiln_bench_gpu JSON cut short by
its phase's time limit keeps the rows written in full and says so; a complete one reads as it is.
Run by ctest (unit.gpu_report, label unit) and directly: python3 tests/bench/test_gpu_report.py"""
import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import gpu_report  # noqa: E402


def bench_json(rows):
    return {"context": {"kiln_gpu_name": "Test GPU", "kiln_gpu_sms": "132"},
            "benchmarks": [{"name": name, "run_type": "iteration", "real_time": us * 1e3, "cpu_time": us * 1e3,
                            "time_unit": "ns", "iterations": 10} for name, us in rows]}


ROWS = [("conv3x3_wgrad/cuda/mma_tf32_stream_k/C512_H8_N16", 14.6),
        ("conv3x3_wgrad/cuda/mma_tf32_split_k/C512_H8_N16", 17.6),
        ("conv3x3_wgrad/cuda/mma_tf32_stream_k/C256_H16_N16", 16.2)]


def report_of(directory):
    """gpu_report.py's report on the JSON files in `directory`, as it prints it."""
    out = io.StringIO()
    argv = sys.argv
    sys.argv = ["gpu_report.py", directory]
    try:
        with redirect_stdout(out):
            gpu_report.main()
    finally:
        sys.argv = argv
    return out.getvalue()


class TruncatedBenchmarks(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "bench_gpu.json")

    def tearDown(self):
        self.dir.cleanup()

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def test_complete_file_reads_as_it_is(self):
        self.write(json.dumps(bench_json(ROWS), indent=2))
        got = gpu_report.load_json(self.path)
        self.assertNotIn("truncated", got)
        self.assertEqual(len(got["benchmarks"]), 3)

    def test_cut_inside_a_row_keeps_the_rows_before_it(self):
        text = json.dumps(bench_json(ROWS), indent=2)
        self.write(text[:text.index('"real_time": 16200.0')])  # the third row half written
        got = gpu_report.load_json(self.path)
        self.assertTrue(got["truncated"])
        self.assertEqual([b["name"] for b in got["benchmarks"]], [ROWS[0][0], ROWS[1][0]])
        self.assertEqual(got["context"]["kiln_gpu_name"], "Test GPU")

    def test_cut_between_rows(self):
        text = json.dumps(bench_json(ROWS), indent=2)
        self.write(text[:text.rindex("}", 0, text.index('"conv3x3_wgrad/cuda/mma_tf32_stream_k/C256')) + 1] + ",\n")
        self.assertEqual(len(gpu_report.load_json(self.path)["benchmarks"]), 2)

    def test_nothing_readable(self):
        self.write('{"context": {"kiln_gpu_na')
        self.assertIsNone(gpu_report.load_json(self.path))

    def test_report_says_the_run_stopped_and_keeps_its_comparison(self):
        text = json.dumps(bench_json(ROWS), indent=2)
        self.write(text[:text.index('"real_time": 16200.0')])
        report = report_of(self.dir.name)
        self.assertIn("kiln_bench_gpu stopped before its end", report)
        self.assertIn("| conv3x3_wgrad | C512_H8_N16 | 14.6 | 17.6 |", report)


class ProbeSections(unittest.TestCase):
    def test_dsmem_rate_is_the_slope_between_the_smallest_and_largest_cluster(self):
        rows = bench_json([("cluster_dsmem/cuda/cluster:2", 2.0), ("cluster_dsmem/cuda/cluster:4", 2.3),
                           ("cluster_dsmem/cuda/cluster:8", 2.5)])
        rows["context"]["kiln_gpu_clock_mhz"] = "1980"
        for b, read in zip(rows["benchmarks"], (32768, 49152, 57344)):
            b["dsmem_read_bytes"] = read
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "bench_gpu.json"), "w") as f:
                json.dump(rows, f)
            report = report_of(d)
        self.assertIn("distributed-shared-memory read rate", report)
        self.assertIn("| 8 | 2.50 | 57,344 |", report)
        # (57344 - 32768) bytes in 0.5 us: 49.2 bytes/ns, 24.8 bytes per clock at 1980 MHz
        self.assertIn("Slope from clusters of 2 to 8: 49.2 bytes/ns per SM, 24.8 bytes per clock at 1,980 MHz.", report)

    def test_l2_tail_rate_says_the_models_figure(self):
        rows = bench_json([("split_k_tail/cuda/slices:2", 3.0), ("split_k_tail/cuda/slices:16", 10.0)])
        rows["context"]["kiln_gpu_clock_mhz"] = "2000"
        for b, read in zip(rows["benchmarks"], (65536, 983040)):
            b["l2_read_bytes"] = read
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "bench_gpu.json"), "w") as f:
                json.dump(rows, f)
            report = report_of(d)
        # (983040 - 65536) bytes in 7 us: 131.1 bytes/ns, 65.5 bytes per clock at 2000 MHz
        self.assertIn("Slope from slices 2 to 16: 131.1 bytes/ns per SM, 65.5 bytes per clock at 2,000 MHz (model: 64).",
                      report)


if __name__ == "__main__":
    unittest.main()
