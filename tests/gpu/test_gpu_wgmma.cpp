// kernels/kiln/gpu/wgmma.hpp on a REAL GPU: the emulator's wgmma test kernel (tests/emu/
// wgmma_tile_kernel.hpp) in every canonical K-major layout, TF32 and BF16, one and two warpgroups,
// against the CPU product, exactly (operands exact in TF32/BF16, sums exact in fp32). The emulator
// passes the same cases (tests/emu/test_emulator_wgmma.cpp), so a failure here is a difference
// between the emulator's reading of the PTX ISA's layouts and the hardware's. Runs where the binary
// holds sm_90a code for the device (KILN_CUDA_ARCHITECTURES 90a: bench/gpu_bundle.sh's default);
// elsewhere it says so and checks nothing. Compiled by g++ or without a device: skipped as the rest
// of the gpu suite (exit 77).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

#include "emu/wgmma_tile_kernel.hpp"

namespace t = kiln_wgmma_test;

namespace {

bool wgmma_runs_here() {
  if (kiln::gpu::emulated || !kiln::gpu::device_available()) {
    std::printf("SKIPPED: no CUDA device\n");
    std::fflush(stdout);
    std::exit(77);  // ctest: SKIP_RETURN_CODE 77
  }
  if (kiln::gpu::wgmma::compiled_here()) return true;
  std::printf(
      "wgmma: not checked: this binary has no sm_90a code for this device (build with "
      "-DKILN_CUDA_ARCHITECTURES=90a on an H100/H200)\n");
  return false;
}

}  // namespace

TEST_CASE("gpu: wgmma TF32 and BF16 in every canonical K-major layout, exactly as the emulator") {
  if (!wgmma_runs_here()) return;
  CHECK(kiln::gpu::wgmma::self_test());       // the library's own check (runs_here() asks it)
  CHECK(!kiln::gpu::wgmma::self_test(true));  // ... which fails on a wrong swizzle
  for (int mode : {t::plain_groups, t::plain_planes, t::swizzle32, t::swizzle64, t::swizzle128}) {
    CAPTURE(mode);
    const t::Run r64 = t::run<64, false>(1, 8, mode, 0);
    CHECK(r64.error == "");
    CHECK(t::mismatches(r64) == 0);
    const t::Run r128 = t::run<128, false>(1, 4, mode, t::accumulate_init);
    CHECK(r128.error == "");
    CHECK(t::mismatches(r128) == 0);
    const t::Run bf16 = t::run<64, true>(1, 4, mode, t::accumulate_init);
    CHECK(bf16.error == "");
    CHECK(t::mismatches(bf16) == 0);
  }
  CHECK(t::mismatches(t::run<256, false>(1, 4, t::swizzle128, 0)) == 0);
  CHECK(t::mismatches(t::run<256, true>(1, 4, t::swizzle128, 0)) == 0);
  CHECK(t::mismatches(t::run<128, false>(2, 4, t::swizzle128, 0)) == 0);
  CHECK(t::mismatches(t::run<64, true>(2, 4, t::plain_planes, 0)) == 0);
  CHECK(t::mismatches(t::run<128, false>(1, 8, t::swizzle128, t::group_per_step | t::accumulate_init)) == 0);
}
