// kiln_bench_gpu: every layer on the GPU, our CUDA kernels (Backend<Cuda>) and
// cuDNN side by side in the same run, at the U-Net's shapes.
//   <op>/cuda/fp32/<shape>    our kernels (strict fp32); counters GFLOP/s or GB/s,
//                             peak_frac, and x_cudnn = our time / cuDNN fp32's time
//   <op>/cudnn/fp32/<shape>   cuDNN without tensor cores (CUDNN_FMA_MATH)
//   <op>/cudnn/tf32/<shape>   cuDNN convolutions allowed TF32 tensor cores
//   <op>/cuda/tf32/<shape>    our implicit-GEMM TF32 tensor-core convolutions (MathMode::tf32),
//                             x_cudnn = our time / cuDNN TF32's time (gpu_tf32_cases.hpp)
//   adam_step/cuda/fused/<model>  the multi-tensor Adam (gpu_fused_cases.hpp)
//   split_k_tail/cuda/slices:<S>  one SM's L2 read rate in a split-K tail (gpu_probe_cases.hpp)
//   cluster_dsmem/cuda/cluster:<C>  one SM's distributed-shared-memory read rate in a cluster (same file)
// peak_frac: convolutions over the theoretical peak of their math (fp32 CUDA
// cores, or TF32 tensor cores), memory-bound layers over the measured
// device-to-device cudaMemcpy bandwidth (the practical ceiling). The device's
// facts and peaks are in the JSON context (kiln_gpu_*).
// Built with KILN_CUDA (ours) and KILN_CUDNN (the cuDNN rows).
#include <cstdio>

#include "bench_common.hpp"
#include "gpu_common.hpp"

#if __has_include("kiln/cuda.hpp")
#include "kiln/cuda.hpp"
#define KILN_BENCH_OURS 1
#else
#define KILN_BENCH_OURS 0
#endif
#include "layer_cases.hpp"

#if KILN_BENCH_CUDNN
#include "cudnn_cases.hpp"
#endif
#if KILN_BENCH_OURS
#include "gpu_fused_cases.hpp"
#include "gpu_probe_cases.hpp"
#include "gpu_tf32_cases.hpp"
#endif

#if KILN_BENCH_OURS
namespace kiln::bench {
template <>
struct Timing<Cuda> {
  static void configure(benchmark::internal::Benchmark* b, double) { configure_gpu_row(b); }
  template <class F>
  static void loop(benchmark::State& state, F&& op) {
    gpu_timed_loop(state, op, kiln::cuda::current_stream());
  }
  static void sync() { KILN_BENCH_CUDA(cudaDeviceSynchronize()); }
};
}  // namespace kiln::bench
#endif

int main(int argc, char** argv) {
  using namespace kiln::bench;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "kiln_bench_gpu: no CUDA device is available\n");
    return 1;
  }
  add_gpu_context();
  const GpuFacts& f = gpu_facts();
#if KILN_BENCH_CUDNN
  // cuDNN first: our rows read its times to report x_cudnn.
  benchmark::AddCustomContext("kiln_cudnn_version", std::to_string(cudnnGetVersion()));
  cudnn::register_benchmarks(f);
#else
  std::fprintf(stderr, "kiln_bench_gpu: built without KILN_CUDNN: no cuDNN rows\n");
#endif
#if KILN_BENCH_OURS
  register_layer_benchmarks<kiln::Cuda>("cuda/fp32", Peaks{f.fp32_flops, f.copy_bytes_per_s});
  register_tf32_conv_benchmarks(f);       // conv rows on tensor cores (MathMode::tf32), x_cudnn vs cuDNN TF32
  register_tf32_wgrad_tile_rows(f);       // the weight gradient's tap pairs against the one-tap tile
  register_tf32_wgrad_wgmma_rows(f);      // the wgmma weight gradient against mma.sync in the same splits
  register_tf32_wgrad_reduction_rows(f);  // few splits added in the GEMM's launch against the reduction launch
  register_tf32_wgrad_wave_rows(f);       // the planned splits against one block past a whole wave
  register_tf32_wgrad_stream_k_rows(f);   // stream-K where planned against the grid's best split count
  register_fused_benchmarks(f);           // adam_step/cuda/fused: the multi-tensor Adam
  register_probe_benchmarks();            // split_k_tail: one SM's L2 read rate (the model's assumption)
#else
  std::fprintf(stderr, "kiln_bench_gpu: <kiln/cuda.hpp> did not exist when this was built: no rows for our kernels\n");
  benchmark::AddCustomContext("kiln_ours", "absent (no <kiln/cuda.hpp> at build time)");
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
