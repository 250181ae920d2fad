#pragma once
// Rows that measure an assumption of the predicted-time model (tests/emucheck/predict.py) instead of
// a layer:
//   split_k_tail/cuda/slices:<S>  split_k_tail_probe_kernel (split_k_tail_probe.cuh) on 16 tiles:
//                                 each block writes one 64 KiB partial tile and reads S - 1 others
//                                 from L2, as a one-launch split-K's last block does; counter
//                                 l2_read_bytes (per block). bench/gpu_report.py takes the slope
//                                 between the fewest and the most slices as one SM's L2 read rate.
#include <string>

#include "bench_common.hpp"
#include "gpu_common.hpp"
#include "kiln/cuda.hpp"
#include "layer_cases.hpp"  // CaseTensors
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
}

}  // namespace kiln::bench
