// Thread-block clusters in the emulator (kiln/gpu/cluster.hpp): ranks and block indices, the
// cluster barrier, reads of another block's shared memory, a split-K style reduction through it
// against a plain sum, and the errors a cluster kernel can make (a missing barrier, a block that
// returns while the others wait, addresses and ranks map_shared cannot map, grids of partial
// clusters). In fiber and OS-thread mode (the ThreadSanitizer build); the checking build's race and
// init checks on clusters: tests/emucheck/test_cluster_checks.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "kiln/gpu/gpu.hpp"
#include "../../bench/cluster_dsmem_probe.cuh"
#include "emu/cluster_kernels.hpp"
#include "test_emulator_support.hpp"

using kiln_cluster_test::cluster_split_sum;
using kiln_cluster_test::ring_exchange;
using kiln_emu_test::DeviceBuffer;
using kiln_emu_test::launch_error;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

__global__ void returns_before_barrier(unsigned quitter) {
  if (kiln::gpu::cluster::rank() == quitter) return;
  kiln::gpu::cluster::sync();
}

__global__ void maps_static_shared(float* out) {
  __shared__ float kept[32];  // (one copy for the cluster's blocks in the emulator: rank 0 alone uses it)
  if (kiln::gpu::cluster::rank() != 0) return;
  kept[threadIdx.x] = 1.0f;
  out[threadIdx.x] = *kiln::gpu::cluster::map_shared(&kept[threadIdx.x], 0);
}

__global__ void maps_missing_rank(float* out) {
  float* mine = kiln::gpu::dynamic_shared<float>();
  mine[threadIdx.x] = 1.0f;
  kiln::gpu::cluster::sync();
  out[threadIdx.x] = *kiln::gpu::cluster::map_shared(mine, kiln::gpu::cluster::size());
}

}  // namespace

TEST_CASE("cluster: ranks, block indices and another block's shared memory after the cluster barrier") {
  // A 4 x 2 grid in clusters of 2 x 2: ranks x fastest, as %cluster_ctarank counts them.
  constexpr unsigned threads = 64;
  DeviceBuffer<unsigned> out(8 * threads);
  for (const auto order :
       {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse, kiln::gpu::emu::Schedule::random}) {
    kiln_emu_test::ScopedSchedule scoped(order);
    out.zero();
    KILN_LAUNCH_CLUSTER(ring_exchange, dim3(4, 2), dim3(threads), dim3(2, 2), threads * sizeof(unsigned), nullptr,
                        out.get());
    const auto got = out.download();
    for (unsigned by = 0; by < 2; ++by)
      for (unsigned bx = 0; bx < 4; ++bx) {
        const unsigned block = bx + 4 * by;
        for (unsigned t = 0; t < threads; t += 21) {
          CAPTURE(block);
          CAPTURE(t);
          CHECK(got[block * threads + t] == kiln_cluster_test::ring_expected(bx, by, t));
        }
      }
  }
}

TEST_CASE("cluster: a split-K sum through distributed shared memory matches the plain sum") {
  constexpr int k_total = 64, cols = 96, tiles = 3;
  const auto host = kiln_emu_test::exact_values(static_cast<std::size_t>(tiles) * k_total * cols, 5);
  const auto want = kiln_cluster_test::split_sum_reference(host, tiles, k_total, cols, 4);
  DeviceBuffer<float> in(host), out(want.size());
  // Clusters of 4 along x, one per tile (y): 3 clusters.
  KILN_LAUNCH_CLUSTER(cluster_split_sum, dim3(4, tiles), dim3(32), dim3(4, 1), cols * sizeof(float), nullptr, in.get(),
                      k_total, cols, out.get(), false);
  const auto got = out.download();
  for (std::size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == want[i]);
  }
  // The deliberate bug: without the barrier, the forward schedule's rank 0 reads the other blocks'
  // partial sums before they wrote them (dynamic shared memory starts as NaN). (Fibers only: with OS
  // threads the order is the OS's; the ThreadSanitizer build reports such a race.)
  if (KILN_EMU_THREADS) return;
  kiln_emu_test::ScopedSchedule scoped(kiln::gpu::emu::Schedule::forward);
  KILN_LAUNCH_CLUSTER(cluster_split_sum, dim3(4, tiles), dim3(32), dim3(4, 1), cols * sizeof(float), nullptr, in.get(),
                      k_total, cols, out.get(), true);
  CHECK(std::isnan(out.download()[0]));
}

TEST_CASE("cluster: what a cluster kernel gets wrong is reported, naming the kernel") {
  // Rank 1 returns after rank 0's threads wait (blocks run by rank), then rank 0 returns first.
  for (const unsigned quitter : {1u, 0u}) {
    const std::string returned = launch_error(
        [&] { KILN_LAUNCH_CLUSTER(returns_before_barrier, dim3(4), dim3(32), dim3(2), 0, nullptr, quitter); });
    MESSAGE(returned);
    CHECK(contains(returned, "returns_before_barrier"));
    CHECK(contains(returned, "cluster barrier"));
    CHECK(contains(returned, "wait in kiln::gpu::cluster::sync at"));
    CHECK(contains(returned, "have exited"));
  }

  DeviceBuffer<float> out(32);
  const std::string stat =
      launch_error([&] { KILN_LAUNCH_CLUSTER(maps_static_shared, dim3(2), dim3(32), dim3(2), 0, nullptr, out.get()); });
  CHECK(contains(stat, "not in the block's dynamic shared memory"));
  const std::string rank = launch_error([&] {
    KILN_LAUNCH_CLUSTER(maps_missing_rank, dim3(2), dim3(32), dim3(2), 32 * sizeof(float), nullptr, out.get());
  });
  CHECK(contains(rank, "rank 2 is not in a cluster of 2 blocks"));

  const std::string partial =
      launch_error([] { KILN_LAUNCH_CLUSTER(returns_before_barrier, dim3(3), dim3(32), dim3(2), 0, nullptr, 0u); });
  CHECK(contains(partial, "not a whole number of clusters"));
  const std::string large =
      launch_error([] { KILN_LAUNCH_CLUSTER(returns_before_barrier, dim3(16), dim3(32), dim3(16), 0, nullptr, 0u); });
  CHECK(contains(large, "at most 8"));
}

TEST_CASE("cluster: the DSMEM probe (kiln_bench_gpu's read rate) sums each slice of the tile over its cluster") {
  namespace kb = kiln::bench;
  kiln::gpu::set_max_dynamic_shared(kb::cluster_dsmem_probe_kernel, kb::dsmem_probe_shared_bytes);
  constexpr std::size_t tile_floats = kb::dsmem_probe_shared_bytes / sizeof(float);
  for (const unsigned c : {2u, 4u, 8u}) {
    CAPTURE(c);
    DeviceBuffer<float> out(16 / c * tile_floats);
    out.zero();
    KILN_LAUNCH_CLUSTER(kb::cluster_dsmem_probe_kernel, dim3(16), dim3(kb::dsmem_probe_threads), dim3(c),
                        kb::dsmem_probe_shared_bytes, nullptr, 0.5f, out.get());
    const float want = 0.5f * static_cast<float>(c) + static_cast<float>(c * (c - 1) / 2);
    const auto got = out.download();
    CHECK(std::count(got.begin(), got.end(), want) == static_cast<std::ptrdiff_t>(got.size()));
    CHECK(kb::dsmem_probe_remote_bytes(static_cast<int>(c)) == 65536 * (c - 1) / c);
  }
}

TEST_CASE("cluster: a launch without clusters is a cluster of one block") {
  DeviceBuffer<unsigned> out(2 * 32);
  KILN_LAUNCH(ring_exchange, dim3(2), dim3(32), 32 * sizeof(unsigned), nullptr, out.get());
  const auto got = out.download();
  CHECK(got[0] == 0u + 100000000u);          // its own value, rank 0 of 1
  CHECK(got[32 + 5] == 1005u + 100000000u);  // block 1
}
