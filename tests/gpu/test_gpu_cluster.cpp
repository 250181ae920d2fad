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

template <class T>
std::vector<T> download(const T* device, std::size_t n) {
  std::vector<T> host(n);
  kiln::gpu::memcpy_device_to_host(host.data(), device, n * sizeof(T));
  return host;
}

}  // namespace

TEST_CASE("gpu: thread-block clusters: ranks, the cluster barrier and distributed shared memory, as the emulator") {
  if (!clusters_run_here()) return;
  namespace ct = kiln_cluster_test;
  constexpr unsigned threads = 64;
  auto* ring = static_cast<unsigned*>(kiln::gpu::device_malloc(8 * threads * sizeof(unsigned)));
  KILN_LAUNCH_CLUSTER(ct::ring_exchange, dim3(4, 2), dim3(threads), dim3(2, 2), threads * sizeof(unsigned), nullptr,
                      ring);
  kiln::gpu::synchronize();
  const auto got = download(ring, 8 * threads);
  for (unsigned by = 0; by < 2; ++by)
    for (unsigned bx = 0; bx < 4; ++bx)
      for (unsigned t = 0; t < threads; ++t) CHECK(got[(bx + 4 * by) * threads + t] == ct::ring_expected(bx, by, t));
  kiln::gpu::device_free(ring);

  constexpr int k_total = 64, cols = 96, tiles = 3;
  std::vector<float> host(static_cast<std::size_t>(tiles) * k_total * cols);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(static_cast<int>(i * 7 % 17) - 8) * 0.5f;
  const auto want = ct::split_sum_reference(host, tiles, k_total, cols, 4);
  auto* in = static_cast<float*>(kiln::gpu::device_malloc(host.size() * sizeof(float)));
  auto* out = static_cast<float*>(kiln::gpu::device_malloc(want.size() * sizeof(float)));
  kiln::gpu::memcpy_host_to_device(in, host.data(), host.size() * sizeof(float));
  KILN_LAUNCH_CLUSTER(ct::cluster_split_sum, dim3(4, tiles), dim3(32), dim3(4, 1), cols * sizeof(float), nullptr, in,
                      k_total, cols, out, false);
  kiln::gpu::synchronize();
  CHECK(download(out, want.size()) == want);
  kiln::gpu::device_free(in);
  kiln::gpu::device_free(out);

  // kiln_bench_gpu's DSMEM probe computes what it should (its timing is the bench row's).
  namespace kb = kiln::bench;
  kiln::gpu::set_max_dynamic_shared(kb::cluster_dsmem_probe_kernel, kb::dsmem_probe_shared_bytes);
  constexpr std::size_t tile_floats = kb::dsmem_probe_shared_bytes / sizeof(float);
  auto* probe = static_cast<float*>(kiln::gpu::device_malloc(8 * tile_floats * sizeof(float)));
  for (const unsigned c : {2u, 4u, 8u}) {
    KILN_LAUNCH_CLUSTER(kb::cluster_dsmem_probe_kernel, dim3(16), dim3(kb::dsmem_probe_threads), dim3(c),
                        kb::dsmem_probe_shared_bytes, nullptr, 0.5f, probe);
    kiln::gpu::synchronize();
    const auto sums = download(probe, 16 / c * tile_floats);
    const float want = 0.5f * static_cast<float>(c) + static_cast<float>(c * (c - 1) / 2);
    CHECK(sums == std::vector<float>(sums.size(), want));
  }
  kiln::gpu::device_free(probe);
}
