#pragma once
// The multi-tensor Adam (Backend<Cuda>::adam_step_multi: one launch per 64 parameter tensors) on
// the U-Nets' parameters, beside layer_cases.hpp's adam_step/cuda/fp32/<model> (one launch per
// tensor): rows adam_step/cuda/fused/<model>, GB/s over the compulsory 7 x 4 bytes per parameter
// (read p, g, m, v; write p, m, v) and peak_frac of the measured device-to-device copy bandwidth
// (issue 7's target for memory-bound layers: >= 80 %).
#include <memory>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "gpu_common.hpp"
#include "kiln/cuda.hpp"
#include "kiln/models/unet.hpp"

namespace kiln::bench {

template <class Net>
void add_fused_adam_row(const std::string& model, const GpuFacts& f) {
  const double bytes = 7 * 4.0 * static_cast<double>(Net::parameter_count);
  auto* b = benchmark::RegisterBenchmark(("adam_step/cuda/fused/" + model).c_str(), [=](benchmark::State& state) {
    try {
      auto net = std::make_unique<Net>();
      const auto params = collect_parameters(*net);
      std::vector<Tensor<float, Cuda>> moments;
      moments.reserve(2 * params.size());
      for (const auto& p : params) {
        moments.emplace_back(p.value->shape());
        moments.emplace_back(p.value->shape());
      }
      std::vector<Backend<Cuda>::AdamTensors> list;
      for (std::size_t i = 0; i < params.size(); ++i)
        list.push_back({params[i].value, params[i].grad, &moments[2 * i], &moments[2 * i + 1]});
      AdamStepArgs a;  // the step-dependent scalars do not change the memory traffic
      gpu_timed_loop(
          state, [&] { Backend<Cuda>::adam_step_multi(a, list); }, kiln::cuda::current_stream());
      state.counters["params"] = static_cast<double>(Net::parameter_count);
      state.SetLabel(std::to_string(list.size()) + " tensors, " +
                     std::to_string((list.size() + kiln::cuda::kernels::adam_multi_max_tensors - 1) /
                                    kiln::cuda::kernels::adam_multi_max_tensors) +
                     " launches");
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
    set_bytes(state, bytes, f.copy_bytes_per_s);
  });
  configure_gpu_row(b);
}

inline void register_fused_benchmarks(const GpuFacts& f) {
  if (smoke()) {
    add_fused_adam_row<UNet<1, 2, 4, 2, Cuda>>("UNetTiny", f);
  } else {
    add_fused_adam_row<UNetSmall<Cuda>>("UNetSmall", f);
    add_fused_adam_row<UNetBase<Cuda>>("UNetBase", f);
  }
}

}  // namespace kiln::bench
