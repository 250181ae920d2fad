#pragma once
// Rows that measure an assumption of the predicted-time model (tests/emucheck/predict.py) instead of
// a layer:
//   split_k_tail/cuda/slices:<S>  split_k_tail_probe_kernel (split_k_tail_probe.cuh) on 16 tiles:
//                                 each block writes one 64 KiB partial tile and reads S - 1 others
//                                 from L2, as a one-launch split-K's last block does; counter
//                                 l2_read_bytes (per block). bench/gpu_report.py takes the slope
//                                 between the fewest and the most slices as one SM's L2 read rate.
//   cluster_dsmem/cuda/cluster:<C> cluster_dsmem_probe_kernel (cluster_dsmem_probe.cuh) on 16 blocks in
//                                 clusters of C: each block sums a 1/C slice of a 64 KiB tile over the
//                                 cluster's shared memories, as a cluster split-K would; counter
//                                 dsmem_read_bytes (per block, from other SMs). gpu_report.py takes the
//                                 slope between C = 2 and 8 as one SM's distributed-shared-memory read rate.
#include <string>

#include "bench_common.hpp"
#include "gpu_common.hpp"
#include "kiln/cuda.hpp"
#include "layer_cases.hpp"  // CaseTensors
#include "cluster_dsmem_probe.cuh"
#include "split_k_tail_probe.cuh"

namespace kiln::bench {

// 16 tiles x 16 slices of 64 KiB: 16 MiB of partial sums, which stay in an H100's 50 MB L2 from one
// launch to the next; 16 blocks, each alone on an SM.
inline void register_probe_benchmarks() {
  constexpr int tiles = 16, max_slices = 16;
  for (const int slices : {2, 4, 8, 16}) {
    const std::string name = "split_k_tail/cuda/slices:" + std::to_string(slices);
    auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
      using T = Tensor<float, Cuda>;
      auto& c = CaseTensors<Cuda>::for_case("split_k_tail");  // one set of buffers for every slice count
      T& partials = c.get("partials", Shape{tail_probe_floats(tiles, max_slices)}, 0, 0);
      T& out = c.get("out", Shape{tail_probe_tile_floats * tiles}, 0, 0);
      T& counters = c.get("counters", Shape{tiles}, 0, 0);
      auto* count = reinterpret_cast<unsigned*>(counters.data());
      gpu_timed_loop(
          state,
          [&] {
            KILN_LAUNCH(split_k_tail_probe_kernel, dim3(tiles), dim3(tail_probe_threads), tail_probe_shared_bytes,
                        kiln::cuda::current_stream(), partials.data(), count, slices, 1.0f, out.data());
          },
          kiln::cuda::current_stream());
      state.counters["l2_read_bytes"] = static_cast<double>((slices - 1) * tail_probe_tile_floats * 4);
      state.SetLabel("one SM per tile reads " + std::to_string(slices - 1) + " partial tiles of 64 KiB from L2");
    });
    configure_gpu_row(b);
  }
  // 16 blocks (one per SM) in clusters of 2, 4 and 8; thread-block clusters need sm_90.
  for (const int cluster : {2, 4, 8}) {
    const std::string name = "cluster_dsmem/cuda/cluster:" + std::to_string(cluster);
    auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
      int device = 0, major = 0;
      cudaGetDevice(&device);
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
      if (major < 9) {
        state.SkipWithError("thread-block clusters need sm_90");
        return;
      }
      using T = Tensor<float, Cuda>;
      constexpr int blocks = 16;
      auto& c = CaseTensors<Cuda>::for_case("cluster_dsmem");
      T& out = c.get("out", Shape{static_cast<std::int64_t>(dsmem_probe_shared_bytes / 4) * blocks}, 0, 0);
      kiln::gpu::set_max_dynamic_shared(cluster_dsmem_probe_kernel, dsmem_probe_shared_bytes);
      gpu_timed_loop(
          state,
          [&] {
            KILN_LAUNCH_CLUSTER(cluster_dsmem_probe_kernel, dim3(blocks), dim3(dsmem_probe_threads),
                                dim3(static_cast<unsigned>(cluster)), dsmem_probe_shared_bytes,
                                kiln::cuda::current_stream(), 1.0f, out.data());
          },
          kiln::cuda::current_stream());
      state.counters["dsmem_read_bytes"] = static_cast<double>(dsmem_probe_remote_bytes(cluster));
      state.SetLabel("each block sums a 1/" + std::to_string(cluster) + " slice of a 64 KiB tile over its cluster");
    });
    configure_gpu_row(b);
  }
}

}  // namespace kiln::bench
