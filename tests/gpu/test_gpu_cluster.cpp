// Thread-block clusters on a REAL GPU (sm_90 and later): the emulator's cluster kernels
// (tests/emu/cluster_kernels.hpp) with kiln::gpu::launch_cluster, against the same host references
// as tests/emu/test_emulator_cluster.cpp. A failure here is a difference between the emulator's
// clusters (ranks, block indices, the barrier, map_shared) and the hardware's. Below sm_90 it says
// so and checks nothing; compiled by g++ or without a device: skipped as the rest of the gpu suite
// (exit 77).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../../bench/cluster_dsmem_probe.cuh"
#include "emu/cluster_kernels.hpp"
#include "emu/test_emulator_support.hpp"

namespace {

bool clusters_run_here() {
  if (kiln::gpu::emulated || !kiln::gpu::device_available()) {
    std::printf("SKIPPED: no CUDA device\n");
    std::fflush(stdout);
    std::exit(77);  // ctest: SKIP_RETURN_CODE 77
  }
#if KILN_GPU_REAL
  int device = 0, major = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (major >= 9) return true;
#endif
  std::printf("clusters: not checked: the device is below sm_90\n");
  return false;
}

}  // namespace

TEST_CASE("gpu: thread-block clusters: ranks, the cluster barrier and distributed shared memory, as the emulator") {
  if (!clusters_run_here()) return;
  namespace ct = kiln_cluster_test;
  using kiln_emu_test::DeviceBuffer;
  constexpr unsigned threads = 64;
  DeviceBuffer<unsigned> ring(8 * threads);
  KILN_LAUNCH_CLUSTER(ct::ring_exchange, dim3(4, 2), dim3(threads), dim3(2, 2), threads * sizeof(unsigned), nullptr,
                      ring.get());
  const auto got = ring.download();  // (a blocking copy: after the kernel)
  for (unsigned by = 0; by < 2; ++by)
    for (unsigned bx = 0; bx < 4; ++bx)
      for (unsigned t = 0; t < threads; ++t) CHECK(got[(bx + 4 * by) * threads + t] == ct::ring_expected(bx, by, t));

  constexpr int k_total = 64, cols = 96, tiles = 3;
  const auto host = kiln_emu_test::exact_values(static_cast<std::size_t>(tiles) * k_total * cols, 5);
  const auto want = ct::split_sum_reference(host, tiles, k_total, cols, 4);
  DeviceBuffer<float> in(host), out(want.size());
  KILN_LAUNCH_CLUSTER(ct::cluster_split_sum, dim3(4, tiles), dim3(32), dim3(4, 1), cols * sizeof(float), nullptr,
                      in.get(), k_total, cols, out.get(), false);
  CHECK(out.download() == want);

  // kiln_bench_gpu's DSMEM probe computes what it should (its timing is the bench row's).
  namespace kb = kiln::bench;
  kiln::gpu::set_max_dynamic_shared(kb::cluster_dsmem_probe_kernel, kb::dsmem_probe_shared_bytes);
  constexpr std::size_t tile_floats = kb::dsmem_probe_shared_bytes / sizeof(float);
  for (const unsigned c : {2u, 4u, 8u}) {
    DeviceBuffer<float> sums(16 / c * tile_floats);
    KILN_LAUNCH_CLUSTER(kb::cluster_dsmem_probe_kernel, dim3(16), dim3(kb::dsmem_probe_threads), dim3(c),
                        kb::dsmem_probe_shared_bytes, nullptr, 0.5f, sums.get());
    const float want_sum = 0.5f * static_cast<float>(c) + static_cast<float>(c * (c - 1) / 2);
    CHECK(sums.download() == std::vector<float>(sums.size(), want_sum));
  }
}
