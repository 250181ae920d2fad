#!/usr/bin/env python3
"""Unit test of tests/emucheck/predict.py's model on hand-made launches (no profile, no GPU):
the SM and warp-scheduler fractions, the busiest SM and scheduler of a partial wave, the split-K
tail, and that a kernel's SASS occupancy caps the warps an SM holds. Run by ctest (unit.predict_model, label unit) and directly:
  python3 tests/emucheck/test_predict.py"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import predict  # noqa: E402

GPU = predict.GPUS["H100 SXM"]
SMS = GPU["sms"]


def launch(blocks, threads, tensor_flops=1e9, **extra):
    row = {"kernel": "k<1>", "blocks": str(blocks), "threads": str(threads), "flops": str(tensor_flops),
           "tensor_flops": str(tensor_flops), "hmma": "0", "sld_wavefronts": "0", "sst_wavefronts": "0",
           "global_distinct_bytes": "0", "split_tail_bytes": "0"}
    row.update({k: str(v) for k, v in extra.items()})
    return row


def terms(row, occupancy="8 (regs)"):
    sass = {"k<1>": dict(occupancy=occupancy, warps="", per_op=2.0, op="HMMA")}
    return predict.predict(row, sass, "H100 SXM")


class Model(unittest.TestCase):
    def test_math_at_the_peak_with_four_warps_on_every_sm(self):
        _, limit, t = terms(launch(SMS, 128))
        self.assertEqual(limit, "math")
        self.assertAlmostEqual(t["math"], 1e9 / GPU["tf32"], delta=1e-12)

    def test_fewer_warps_than_schedulers_leave_tensor_cores_idle(self):
        four = terms(launch(SMS, 128))[2]["math"]
        self.assertAlmostEqual(terms(launch(SMS, 64))[2]["math"] / four, 2.0)  # 2 warps per SM
        self.assertAlmostEqual(terms(launch(SMS, 32))[2]["math"] / four, 4.0)  # 1 warp per SM
        # ... the issue term alike, shared memory and DRAM not (an SM's, the chip's)
        one = terms(launch(SMS, 32, sld_wavefronts=1e6, global_distinct_bytes=1e6))[2]
        all4 = terms(launch(SMS, 128, sld_wavefronts=1e6, global_distinct_bytes=1e6))[2]
        self.assertAlmostEqual(one["issue"] / all4["issue"], 4.0)
        self.assertAlmostEqual(one["shared"], all4["shared"])
        self.assertAlmostEqual(one["dram"], all4["dram"])

    def test_several_blocks_per_sm_fill_the_schedulers_up_to_the_occupancy(self):
        four = terms(launch(SMS, 128))[2]["math"]
        self.assertAlmostEqual(terms(launch(4 * SMS, 32))[2]["math"], four)  # 4 one-warp blocks per SM
        self.assertAlmostEqual(terms(launch(4 * SMS, 32), occupancy="2 (regs)")[2]["math"] / four, 2.0)

    def test_fewer_blocks_than_sms(self):
        four = terms(launch(SMS, 128))[2]["math"]
        self.assertAlmostEqual(terms(launch(SMS // 2, 128))[2]["math"] / four, 2.0)

    def test_a_block_past_a_whole_wave_costs_the_busiest_sm_a_second_one(self):
        four = terms(launch(SMS, 128, sld_wavefronts=1e6))[2]
        # 144 blocks of 4 warps: 12 SMs run two at once, each scheduler of theirs two warps
        over = terms(launch(144, 128, tensor_flops=1e9 * 144 / SMS, sld_wavefronts=1e6 * 144 / SMS))[2]
        self.assertAlmostEqual(over["math"] / four["math"], 2.0)
        self.assertAlmostEqual(over["shared"] / four["shared"], 2.0)
        # 531 one-warp blocks: 3 SMs hold 5, one of their schedulers two warps
        one = terms(launch(4 * SMS, 32))[2]["math"]
        self.assertAlmostEqual(terms(launch(531, 32, tensor_flops=1e9 * 531 / 528))[2]["math"] / one, 2.0)
        # whole waves cost nothing more: 2 one-warp blocks per scheduler, 8 per SM (occupancy 8)
        self.assertAlmostEqual(terms(launch(8 * SMS, 32, tensor_flops=2e9))[2]["math"] / one, 2.0)
        # DRAM is the chip's, not the busiest SM's
        dram = terms(launch(SMS, 128, global_distinct_bytes=1e6))[2]["dram"]
        self.assertAlmostEqual(terms(launch(144, 128, global_distinct_bytes=1e6))[2]["dram"], dram)

    def test_the_busiest_units(self):
        self.assertEqual(predict.busiest(SMS, 4, 2, SMS), (1.0, 1.0))
        self.assertEqual(predict.busiest(0, 4, 2, SMS), (1.0, 1.0))
        sm, scheduler = predict.busiest(4 * SMS, 1, 2, SMS)  # 4 one-warp blocks per SM, 2 at once
        self.assertAlmostEqual(sm, 1.0)
        self.assertAlmostEqual(scheduler, 2.0)  # two waves of two warps: half the schedulers each time

    def test_the_launch_ceiling(self):
        at_peak = GPU["tf32"] * predict.LAUNCH_S  # FLOPs the peak does in one launch term
        self.assertAlmostEqual(predict.launch_ceiling(0.6 * at_peak, 1), 0.6)
        self.assertAlmostEqual(predict.launch_ceiling(0.6 * at_peak, 2), 0.3)  # a GEMM and its reduction
        self.assertEqual(predict.launch_ceiling(5 * at_peak, 1), 1.0)

    def test_the_split_k_tail_comes_after_the_binding_term(self):
        base, _, _ = terms(launch(SMS, 128))
        tailed, _, _ = terms(launch(SMS, 128, split_tail_bytes=64 * GPU["clock"] * 1e-6))  # 1 us at 64 B/clock
        self.assertAlmostEqual((tailed - base) * 1e6, 1.0)

    def test_the_launch_term_is_a_floor(self):
        t, limit, _ = terms(launch(SMS, 128, tensor_flops=1e3))
        self.assertEqual(limit, "launch")
        self.assertAlmostEqual(t, predict.LAUNCH_S)

    def test_occupancy_cell(self):
        self.assertEqual(predict.occupancy_blocks({"occupancy": "4 (regs)"}), 4.0)
        self.assertIsNone(predict.occupancy_blocks({"occupancy": "-"}))


if __name__ == "__main__":
    unittest.main()
