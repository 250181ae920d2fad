#!/usr/bin/env python3
"""Unit test of tests/nvcc/sass_check.py on saved disassembly (no nvcc, no GPU, no cuobjdump needed):
tests/nvcc/sass_samples/fixture.sm_90.{sass,res} are `nvdisasm -c` and `cuobjdump -res-usage` of
kiln_sass_fixture's sm_90 cubin (nvcc 13.0). Regenerate them after changing sass_fixture.cu:
  cuobjdump -xelf all build/ci-nvcc/kiln_sass_fixture && nvdisasm -c *.sm_90.cubin > ...sass
  && cuobjdump -res-usage *.sm_90.cubin > ...res
Run by ctest (sass.parser, label unit) and directly: python3 tests/nvcc/test_sass_check.py"""
import contextlib
import io
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sass_check  # noqa: E402

SAMPLES = os.path.join(HERE, "sass_samples")
SASS = os.path.join(SAMPLES, "fixture.sm_90.sass")
RES = os.path.join(SAMPLES, "fixture.sm_90.res")
THRESHOLDS = os.path.join(HERE, "sass_thresholds.json")


def run_main(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = sass_check.main(["--sass", "sm_90", SASS, RES, *args])
    return rc, out.getvalue()


class Parser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(SASS, encoding="utf-8") as f:
            cls.funcs = sass_check.parse_nvdisasm(f.read())
        with open(RES, encoding="utf-8") as f:
            cls.res = sass_check.parse_res_usage(f.read())
        cls.rows = {r["kernel"]: r for r in sass_check.analyse("sm_90", cls.funcs, cls.res, {"launch": [{"kernel": "*", "threads": 256}]})}

    def test_every_kernel_found_with_its_resources(self):
        self.assertEqual(set(self.rows), {"sass_fixture_clean", "sass_fixture_local_array", "sass_fixture_generic_load",
                                          "sass_fixture_div64", "sass_fixture_hmma"})
        for r in self.rows.values():
            self.assertGreater(r["registers"], 0)
            self.assertGreater(r["instructions"], 10)

    def test_clean_kernel_is_clean(self):
        r = self.rows["sass_fixture_clean"]
        self.assertEqual((r["local_ops"], r["generic_loads_in_loops"], r["div64_in_loops"], r["hmma"]), (0, 0, 0, 0))
        self.assertGreaterEqual(r["loops"], 1)  # the grid-stride loop: a backward branch
        self.assertEqual(r["main_loop_op"], "FFMA")

    def test_each_regression_is_seen(self):
        self.assertGreater(self.rows["sass_fixture_local_array"]["local_ops"], 0)
        self.assertGreater(self.rows["sass_fixture_local_array"]["local_bytes"], 0)
        self.assertGreater(self.rows["sass_fixture_generic_load"]["generic_loads_in_loops"], 0)
        self.assertGreater(self.rows["sass_fixture_div64"]["div64_in_loops"], 0)
        h = self.rows["sass_fixture_hmma"]
        self.assertEqual(h["main_loop_op"], "HMMA")
        self.assertGreater(h["inst_per_hmma"], 4)
        self.assertLessEqual(h["main_loop_ops"], h["hmma"])

    def test_occupancy(self):
        # 128 threads, 124 registers, 18.5 KiB dynamic shared: 4 blocks by registers on both archs
        # (124 -> 128 per thread -> 4096 per warp -> 4 warps per sub-partition -> 16 warps).
        occ = sass_check.occupancy("sm_90", 124, 0, 128, 18944)
        self.assertEqual((occ["blocks"], occ["warps"], occ["limiter"]), (4, 16, "regs"))
        occ = sass_check.occupancy("sm_80", 32, 0, 256, 100 * 1024)
        self.assertEqual((occ["blocks"], occ["limiter"]), (1, "smem"))
        self.assertIsNone(sass_check.occupancy("sm_90", 32, 0, None, 0))

    def test_short_names(self):
        self.assertEqual(sass_check.short_name(
            "void kiln::cuda::kernels::conv2d_igemm_forward_kernel<3>(kiln::ConvShape, float const*, float const*, float const*, float*)"),
            "conv2d_igemm_forward_kernel<3>")
        self.assertEqual(sass_check.short_name(
            "void kiln::cuda::kernels::adam_multi_tensor_kernel<float>(kiln::AdamStepArgs, kiln::cuda::kernels::AdamTensorList<float>)"),
            "adam_multi_tensor_kernel<float>")
        self.assertEqual(sass_check.short_name("void ns::k<(ns::igemm::Pass)1, 3>(int)"), "k<Pass:1, 3>")


class Warpgroup(unittest.TestCase):
    # wgmma's HGMMA (kernels/kiln/gpu/wgmma.hpp, sm_90a) as nvdisasm prints it, with the empty HGMMA
    # ptxas injects to wait (destination RZ), which must not count.
    SASS = """\t.section\t.text._Z4wgmmav,"ax",@progbits
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   HGMMA.64x128x8.F32.TF32 R24, gdesc[UR8], R24, UP0, gsb0 ;
        /*0020*/                   HGMMA.64x8x16.F16 RZ, gdesc[URZ], RZ, !UPT, gsb0 ;
        /*0030*/                   HGMMA.64x256x16.F32.BF16 R24, gdesc[UR12], R24, gsb0 ;
        /*0040*/                   EXIT ;
"""

    def test_hgmma_counted_without_the_injected_waits(self):
        funcs = sass_check.parse_nvdisasm(self.SASS)
        rows = sass_check.analyse("sm_90a", funcs, {}, {"launch": [{"kernel": "*", "threads": 128}]})
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]["hgmma"], rows[0]["hmma"]), (2, 0))


class Thresholds(unittest.TestCase):
    def test_fixture_breaches_exactly_as_expected(self):
        rc, out = run_main("--thresholds", THRESHOLDS, "--kernels", "sass_fixture_*",
                           "--expect", "sass_fixture_local_array:local_ops", "--expect", "sass_fixture_local_array:local_bytes",
                           "--expect", "sass_fixture_generic_load:generic_loads_in_loops",
                           "--expect", "sass_fixture_div64:div64_in_loops",
                           "--expect", "sass_fixture_hmma:inst_per_hmma", "--expect", "sass_fixture_hmma:generic_loads_in_loops")
        self.assertEqual(rc, 0, out)
        self.assertIn("all caught", out)

    def test_breach_fails_and_missing_breach_is_reported(self):
        rc, out = run_main("--thresholds", THRESHOLDS, "--kernels", "sass_fixture_*")
        self.assertEqual(rc, 1, out)
        self.assertIn("FAIL", out)
        rc, out = run_main("--thresholds", THRESHOLDS, "--kernels", "sass_fixture_clean", "--expect", "sass_fixture_clean:local_ops")
        self.assertEqual(rc, 1, out)
        self.assertIn("NOT CAUGHT", out)

    def test_clean_kernel_passes(self):
        rc, out = run_main("--thresholds", THRESHOLDS, "--kernels", "sass_fixture_clean")
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
