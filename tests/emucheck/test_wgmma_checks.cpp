// kernels/kiln/gpu/wgmma.hpp in the checking build: the tensor cores' reads of shared memory go
// through the async proxy, so every byte a wgmma.mma_async reads must have been written before a
// fence.proxy.async of its writer (then __syncthreads); the reads are race- and init-checked as the
// issuing warps'; and the traffic counters see one conflict-free request per warp and instruction
// (its 16 A rows and a quarter of B: 16 x 32 + N x 32 / 4 bytes), the tensor FLOPs and one HGMMA per
// warp and instruction (the counters' hmma).
#include <doctest/doctest.h>

#include <string>

#include "emu/wgmma_tile_kernel.hpp"

static_assert(KILN_EMU_CHECK, "tests/emucheck is compiled only in the checking build");

namespace t = kiln_wgmma_test;
namespace emu = kiln::gpu::emu;

TEST_CASE("wgmma in the checking build: fenced operands pass, a missing fence.proxy.async is reported") {
  const t::Run fenced = t::run<64, false>(1, 4, t::swizzle128, 0);
  CHECK(fenced.error == "");
  CHECK(t::mismatches(fenced) == 0);
  const t::Run two = t::run<128, true>(2, 4, t::plain_planes, t::group_per_step);
  CHECK(two.error == "");
  CHECK(t::mismatches(two) == 0);
  const t::Run unfenced = t::run<64, false>(1, 4, t::swizzle128, t::no_proxy_fence);
  CHECK(unfenced.error.find("proxy check") != std::string::npos);
  CHECK(unfenced.error.find("fence.proxy.async") != std::string::npos);
}

TEST_CASE("wgmma's shared-memory operand reads and tensor FLOPs in the traffic counters") {
  emu::profile_log().clear();
  emu::set_profile(true);
  const t::Run r = t::run<128, false>(1, 4, t::swizzle128, 0);
  emu::set_profile(false);
  REQUIRE(r.error == "");
  REQUIRE(emu::profile_log().size() == 1);
  const emu::LaunchProfile& p = emu::profile_log()[0];
  // 4 instructions x 4 warps, each 16 x 32 + 128 x 32 / 4 = 1536 bytes in 12 wavefronts.
  CHECK(p.fragment_load.requests == doctest::Approx(16));
  CHECK(p.fragment_load.bytes == doctest::Approx(16 * 1536));
  CHECK(p.fragment_load.units == doctest::Approx(16 * 12));
  CHECK(p.fragment_load.conflict_free_units == doctest::Approx(16 * 12));
  CHECK(p.tensor_flops == doctest::Approx(2.0 * 64 * 128 * 32));
  CHECK(p.hmma == doctest::Approx(16));  // the tensor-core instructions: one HGMMA per warp and instruction
}
