// kiln_bench_step_gpu: the whole training step and inference of UNetSmall and
// UNetBase on the Cuda device (see step_cases.hpp) in each math mode: train_step/cuda/...
// strict fp32, train_step/cuda_tf32/... and train_step/cuda_bf16/... (kiln::cuda::MathMode,
// kiln-train's --precision), the mode set for the whole benchmark (plan included); and
// train_step/cuda_tf32_reductions_apart/..., train_step/cuda_tf32_mma_sync/... and
// train_step/cuda_tf32_forward_packing/... (below).
#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include "bench_common.hpp"
#include "gpu_common.hpp"

#if __has_include("kiln/cuda.hpp")
#include "kiln/cuda.hpp"
#include "step_cases.hpp"
#define KILN_BENCH_OURS 1

namespace kiln::bench {
template <>
struct StepTiming<Cuda> {
  static constexpr int default_steps = 20;
  static void sync() { KILN_BENCH_CUDA(cudaDeviceSynchronize()); }
};
}  // namespace kiln::bench
#else
#define KILN_BENCH_OURS 0
#endif

int main(int argc, char** argv) {
  using namespace kiln::bench;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "kiln_bench_step_gpu: no CUDA device is available\n");
    return 1;
  }
  add_gpu_context();
#if KILN_BENCH_OURS
  try {
    register_step_benchmarks<kiln::Cuda>("cuda");
    for (const auto mode : {kiln::cuda::MathMode::tf32, kiln::cuda::MathMode::bf16})
      register_step_benchmarks<kiln::Cuda>(std::string("cuda_") + kiln::cuda::math_mode_name(mode),
                                           [mode] { return std::make_shared<kiln::cuda::MathModeScope>(mode); });
    // TF32 training with each weight gradient's split-K reduction launched right after its layer
    // (a gradient-ready hook, as a data-parallel trainer's, turns Network::backward's one batched
    // reduction off): the model cannot tell whether the batched launch, which reads the partial sums
    // after the rest of the backward has passed through L2, beats a launch per layer that reads them
    // hot; this row settles it (docs/kernels.md "One reduction launch per backward").
    register_step_benchmarks<kiln::Cuda>(
        "cuda_tf32_reductions_apart",
        [] {
          auto mode = std::make_shared<kiln::cuda::MathModeScope>(kiln::cuda::MathMode::tf32);
          kiln::gradient_ready_hook<kiln::Cuda>() = [](kiln::Tensor<float, kiln::Cuda>&) {};
          return std::shared_ptr<void>(mode.get(),
                                       [mode](void*) { kiln::gradient_ready_hook<kiln::Cuda>() = nullptr; });
        },
        false);
    // TF32 with every convolution on mma.sync: the plan takes wgmma on an H100/H200 (sm_90a build)
    // where the model prefers it (kernels/conv2d_tf32_plan.cuh); this row is the step without it.
    register_step_benchmarks<kiln::Cuda>(
        "cuda_tf32_mma_sync",
        [] {
          namespace tp = kiln::cuda::kernels::tf32_forward;
          auto mode = std::make_shared<kiln::cuda::MathModeScope>(kiln::cuda::MathMode::tf32);
          auto family = std::make_shared<tp::PreferenceScope>(tp::Preference::mma_sync);
          return std::shared_ptr<void>(mode.get(), [mode, family](void*) {});
        },
        false);
    // TF32 with the weights packed by the forward (conv2d_mma_pack_batch_kernel, every step) instead
    // of by Adam as it writes them (kernels/adam_conv_pack.cuh): the step before that fusion.
    register_step_benchmarks<kiln::Cuda>(
        "cuda_tf32_forward_packing",
        [] {
          auto mode = std::make_shared<kiln::cuda::MathModeScope>(kiln::cuda::MathMode::tf32);
          kiln::cuda::set_optimizer_packing(false);
          return std::shared_ptr<void>(mode.get(), [mode](void*) { kiln::cuda::set_optimizer_packing(true); });
        },
        false);
  } catch (const std::exception& e) {  // a malformed KILN_BENCH_STEP_CONFIGS
    std::fprintf(stderr, "kiln_bench_step_gpu: error: %s\n", e.what());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
#else
  std::fprintf(stderr, "kiln_bench_step_gpu: <kiln/cuda.hpp> did not exist when this was built: nothing to run\n");
  benchmark::Shutdown();
  return 3;
#endif
}
