// Warpgroup tensor-core instructions (kernels/kiln/gpu/wgmma.hpp) on the emulator: wgmma.mma_async
// TF32 m64nNk8 and BF16 m64nNk16 from shared memory in every canonical K-major layout, one or two
// warpgroups, one group or a group per instruction, against a CPU product. Operands are exact in
// TF32/BF16 and every sum is exact in fp32, so any difference is a layout error. The kernel places
// its operands by CUTLASS's atoms written independently of the emulator (wgmma_tile_kernel.hpp);
// its deliberate bugs must each be reported, and a descriptor that names the wrong swizzle must
// change the product (the comparison can fail).
#include <doctest/doctest.h>

#include <string>

#include "wgmma_tile_kernel.hpp"

namespace t = kiln_wgmma_test;
using t::mismatches;
using t::Run;
using t::run;

TEST_CASE("wgmma TF32 m64nNk8: every canonical K-major layout, N = 64, 128 and 256, exact") {
  for (int mode : {t::plain_groups, t::plain_planes, t::swizzle32, t::swizzle64, t::swizzle128}) {
    CAPTURE(mode);
    const Run r64 = run<64, false>(1, 8, mode, 0);
    REQUIRE(r64.error == "");
    CHECK(mismatches(r64) == 0);
    const Run r128 = run<128, false>(1, 4, mode, t::accumulate_init);
    REQUIRE(r128.error == "");
    CHECK(mismatches(r128) == 0);
  }
  const Run r256 = run<256, false>(1, 4, t::swizzle128, 0);
  REQUIRE(r256.error == "");
  CHECK(mismatches(r256) == 0);
}

TEST_CASE("wgmma BF16 m64nNk16 and two warpgroups") {
  for (int mode : {t::plain_groups, t::plain_planes, t::swizzle32, t::swizzle64, t::swizzle128}) {
    CAPTURE(mode);
    const Run r = run<64, true>(1, 4, mode, t::accumulate_init);
    REQUIRE(r.error == "");
    CHECK(mismatches(r) == 0);
  }
  const Run r256 = run<256, true>(1, 4, t::swizzle128, 0);
  REQUIRE(r256.error == "");
  CHECK(mismatches(r256) == 0);
  const Run two = run<128, false>(2, 4, t::swizzle128, 0);  // rows 64..127 from warpgroup 1's descriptor
  REQUIRE(two.error == "");
  CHECK(mismatches(two) == 0);
  const Run two_bf16 = run<64, true>(2, 4, t::plain_planes, 0);
  REQUIRE(two_bf16.error == "");
  CHECK(mismatches(two_bf16) == 0);
}

TEST_CASE("wgmma: a group per instruction, waited one behind") {
  const Run r = run<128, false>(1, 8, t::swizzle128, t::group_per_step | t::accumulate_init);
  REQUIRE(r.error == "");
  CHECK(mismatches(r) == 0);
}

TEST_CASE("wgmma: a descriptor with the wrong swizzle changes the product (the comparison can fail)") {
  const Run r = run<64, false>(1, 4, t::swizzle128, t::wrong_swizzle);
  REQUIRE(r.error == "");
  CHECK(mismatches(r) > 0);
}

TEST_CASE("wgmma: misuse the GPU would not report is an error") {
  const Run no_fence = run<64, false>(1, 4, t::swizzle128, t::no_fence);
  CHECK(no_fence.error.find("no wgmma.fence") != std::string::npos);
#if !KILN_EMU_THREADS  // a real race between thread 0's store and its neighbours' reads: ThreadSanitizer's to report
  const Run overwrite = run<64, false>(1, 4, t::swizzle128, t::overwrite);
  CHECK(overwrite.error.find("changed before this wait_group") != std::string::npos);
#endif
  const Run no_wait = run<64, false>(1, 4, t::plain_groups, t::no_wait);
  CHECK(no_wait.error.find("not waited for") != std::string::npos);
  const Run lane = run<64, false>(1, 4, t::plain_groups, t::lane_differs);
  CHECK(lane.error.find("passes other descriptors") != std::string::npos);
  const Run misaligned = run<64, false>(1, 4, t::swizzle64, t::misaligned);
  CHECK(misaligned.error.find("not aligned to its swizzle pattern") != std::string::npos);
  const Run unswizzled = run<64, false>(1, 4, t::plain_groups, t::misaligned);  // no pattern to align to
  CHECK(unswizzled.error == "");
  CHECK(mismatches(unswizzled) == 0);
  const Run partial = run<64, false>(1, 4, t::plain_groups, 0, 96);
  CHECK(partial.error.find("incomplete") != std::string::npos);
}

TEST_CASE("wgmma self-test: passes on the emulator, fails on a wrong swizzle; the probe says wgmma runs") {
  CHECK(kiln::gpu::wgmma::self_test());
  CHECK(!kiln::gpu::wgmma::self_test(true));
  CHECK(kiln::gpu::wgmma::runs_here());
  // compiled_here()'s probe (which compiled_here skips in the emulator: it knows the answer)
  kiln_emu_test::DeviceBuffer<int> flag(1);
  flag.zero();
  KILN_LAUNCH(kiln::gpu::wgmma::detail::probe_kernel<0>, dim3(1), dim3(1), 0, nullptr, flag.get());
  CHECK(flag.download()[0] == 1);
}
