// The checker and the traffic counters on thread-block clusters (kiln/gpu/cluster.hpp), in the
// checking build: a cluster's blocks run together, each with its own shadow of its dynamic shared
// memory; an access to another block's memory (distributed shared memory) is checked against that
// block's shadow, ordered only by that block's barriers (a cluster barrier is one of each block's),
// and counted as a shared-memory request. Each check fires on a kernel with the bug and stays quiet
// on the corrected kernel.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "emu/cluster_kernels.hpp"
#include "emu/test_emulator_support.hpp"
#include "kiln/gpu/gpu.hpp"

static_assert(KILN_EMU_CHECK, "tests/emucheck is compiled only in the checking build");

namespace {

using kiln_emu_test::DeviceBuffer;
using kiln_emu_test::launch_error;
namespace ct = kiln_cluster_test;
namespace emu = kiln::gpu::emu;

}  // namespace

TEST_CASE("cluster checks: the correct cluster kernels pass the race and init checks under every schedule") {
  constexpr unsigned threads = 64;
  DeviceBuffer<unsigned> ring(8 * threads);
  constexpr int k_total = 64, cols = 96, tiles = 3;
  const auto host = kiln_emu_test::exact_values(static_cast<std::size_t>(tiles) * k_total * cols, 9);
  DeviceBuffer<float> in(host), sums(static_cast<std::size_t>(tiles) * cols);
  for (const auto order : {emu::Schedule::forward, emu::Schedule::reverse, emu::Schedule::random}) {
    kiln_emu_test::ScopedSchedule scoped(order);
    CHECK(launch_error([&] {
            KILN_LAUNCH_CLUSTER(ct::ring_exchange, dim3(4, 2), dim3(threads), dim3(2, 2), threads * sizeof(unsigned),
                                nullptr, ring.get());
          }) == "");
    CHECK(ring.download()[5 * threads + 7] == ct::ring_expected(1, 1, 7));
    CHECK(launch_error([&] {
            KILN_LAUNCH_CLUSTER(ct::cluster_split_sum, dim3(4, tiles), dim3(32), dim3(4, 1), cols * sizeof(float),
                                nullptr, in.get(), k_total, cols, sums.get(), false);
          }) == "");
    CHECK(sums.download() == ct::split_sum_reference(host, tiles, k_total, cols, 4));
  }
  DeviceBuffer<float> out(32);
  CHECK(launch_error([&] {
          KILN_LAUNCH_CLUSTER(ct::overwrite_while_read, dim3(2), dim3(32), dim3(2), 32 * sizeof(float), nullptr,
                              out.get(), true);
        }) == "");
  CHECK(out.download() == std::vector<float>(32, 1.0f));
}

TEST_CASE("cluster checks: another block's shared memory read before its writer reached the cluster barrier") {
  constexpr int k_total = 64, cols = 96, tiles = 3;
  const auto host = kiln_emu_test::exact_values(static_cast<std::size_t>(tiles) * k_total * cols, 9);
  DeviceBuffer<float> in(host), sums(static_cast<std::size_t>(tiles) * cols);
  kiln_emu_test::ScopedSchedule scoped(emu::Schedule::forward);  // rank 0 reads rank 1's memory first
  const std::string error = launch_error([&] {
    KILN_LAUNCH_CLUSTER(ct::cluster_split_sum, dim3(4, tiles), dim3(32), dim3(4, 1), cols * sizeof(float), nullptr,
                        in.get(), k_total, cols, sums.get(), true);
  });
  INFO(error);
  CHECK(error.find("init check") != std::string::npos);
  CHECK(error.find("of the block of cluster rank 1") != std::string::npos);
}

TEST_CASE("cluster checks: a block overwrites shared memory another block of its cluster reads (write-after-read)") {
  DeviceBuffer<float> out(32);
  kiln_emu_test::ScopedSchedule scoped(emu::Schedule::forward);
  const std::string error = launch_error([&] {
    KILN_LAUNCH_CLUSTER(ct::overwrite_while_read, dim3(2), dim3(32), dim3(2), 32 * sizeof(float), nullptr, out.get(),
                        false);
  });
  INFO(error);
  CHECK(error.find("write-after-read race") != std::string::npos);
  CHECK(error.find("a thread of another block of the cluster") != std::string::npos);
}

TEST_CASE("cluster checks: distributed shared memory is counted as shared-memory requests, every block sampled") {
  emu::profile_log().clear();
  emu::set_profile(true);
  constexpr unsigned threads = 64;
  DeviceBuffer<unsigned> ring(8 * threads);
  KILN_LAUNCH_CLUSTER(ct::ring_exchange, dim3(4, 2), dim3(threads), dim3(2, 2), threads * sizeof(unsigned), nullptr,
                      ring.get());
  emu::set_profile(false);
  REQUIRE(emu::profile_log().size() == 1);
  const emu::LaunchProfile& p = emu::profile_log()[0];
  CHECK(p.blocks == 8);
  CHECK(p.sampled_blocks == 8);
  // Per block, 2 warps: one store of their own words, one load of the next rank's (conflict-free).
  CHECK(p.shared_store.requests == 16);
  CHECK(p.shared_load.requests == 16);
  CHECK(p.shared_load.units == 16);
  CHECK(p.global_store.requests == 16);
}
