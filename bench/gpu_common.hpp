#pragma once
// GPU side of the benchmarks (nvcc only): device facts and theoretical peaks,
// the measured device-to-device copy ceiling, and GPU event timing.
//
// Timing: every iteration records a CUDA event before and after the operation
// on the stream the work goes to (kiln::cuda::current_stream() for our
// kernels: the legacy default stream unless a program sets another; the
// legacy default stream for cuDNN, whose handle is bound to it) and reports
// the elapsed GPU time (UseManualTime).
#include <cuda_runtime.h>

#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>

#include "bench_common.hpp"

#define KILN_BENCH_CUDA(call)                                                                        \
  do {                                                                                               \
    const cudaError_t kiln_status_ = (call);                                                         \
    if (kiln_status_ != cudaSuccess)                                                                 \
      throw std::runtime_error(std::string(#call) + " failed: " + cudaGetErrorString(kiln_status_)); \
  } while (0)

namespace kiln::bench {

struct GpuFacts {
  std::string name;
  int cc_major = 0, cc_minor = 0, sms = 0;
  double clock_hz = 0, mem_clock_hz = 0;
  int bus_bits = 0;
  double fp32_flops = 0;        // CUDA cores: SMs x FP32 lanes x 2 x clock
  double tf32_flops = 0;        // dense tensor-core TF32 (0: not known for this architecture)
  double dram_bytes_per_s = 0;  // 2 (DDR) x memory clock x bus width / 8
  double copy_bytes_per_s = 0;  // measured cudaMemcpy device-to-device, read + written bytes
};

// FP32 lanes per SM and dense TF32 tensor-core FLOPs per clock per SM, by
// compute capability (CUDA C Programming Guide throughput table; NVIDIA
// architecture whitepapers for TF32: A100 1024, GA10x/AD10x 512 (dense,
// counting an FMA as 2), H100 2048 per SM per clock).
inline int fp32_lanes_per_sm(int major, int minor) {
  if (major == 8 && minor == 0) return 64;
  if (major >= 8) return 128;
  if (major == 7) return 64;
  if (major == 6) return minor == 0 ? 64 : 128;
  return 128;
}
inline int tf32_flops_per_clock_per_sm(int major, int minor) {
  if (major == 8 && minor == 0) return 1024;
  if (major == 8) return 512;
  if (major == 9) return 2048;
  if (major >= 10) return 2048;  // Blackwell: at least Hopper's rate per SM (check the whitepaper)
  return 0;
}

inline const GpuFacts& gpu_facts() {
  static const GpuFacts facts = [] {
    GpuFacts f;
    int device = 0;
    KILN_BENCH_CUDA(cudaGetDevice(&device));
    cudaDeviceProp p{};
    KILN_BENCH_CUDA(cudaGetDeviceProperties(&p, device));
    f.name = p.name;
    f.cc_major = p.major;
    f.cc_minor = p.minor;
    f.sms = p.multiProcessorCount;
    f.bus_bits = p.memoryBusWidth;
    // CUDA 13 removed clockRate / memoryClockRate from cudaDeviceProp: ask for the attributes (kHz).
    int clock_khz = 0, mem_khz = 0;
    KILN_BENCH_CUDA(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
    KILN_BENCH_CUDA(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, device));
    f.clock_hz = clock_khz * 1e3;
    f.mem_clock_hz = mem_khz * 1e3;
    f.fp32_flops = f.sms * double(fp32_lanes_per_sm(f.cc_major, f.cc_minor)) * 2.0 * f.clock_hz;
    f.tf32_flops = f.sms * double(tf32_flops_per_clock_per_sm(f.cc_major, f.cc_minor)) * f.clock_hz;
    f.dram_bytes_per_s = 2.0 * f.mem_clock_hz * f.bus_bits / 8.0;
    // The practical ceiling of a memory-bound kernel: a 512 MiB device-to-device copy, best of 10.
    const std::size_t bytes = smoke() ? (std::size_t(8) << 20) : (std::size_t(512) << 20);
    void *src = nullptr, *dst = nullptr;
    KILN_BENCH_CUDA(cudaMalloc(&src, bytes));
    KILN_BENCH_CUDA(cudaMalloc(&dst, bytes));
    KILN_BENCH_CUDA(cudaMemset(src, 1, bytes));
    cudaEvent_t a, b;
    KILN_BENCH_CUDA(cudaEventCreate(&a));
    KILN_BENCH_CUDA(cudaEventCreate(&b));
    float best_ms = 1e30f;
    for (int i = 0; i < 11; ++i) {
      KILN_BENCH_CUDA(cudaEventRecord(a, 0));
      KILN_BENCH_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
      KILN_BENCH_CUDA(cudaEventRecord(b, 0));
      KILN_BENCH_CUDA(cudaEventSynchronize(b));
      float ms = 0;
      KILN_BENCH_CUDA(cudaEventElapsedTime(&ms, a, b));
      if (i > 0 && ms < best_ms) best_ms = ms;  // the first copy is a warm-up
    }
    f.copy_bytes_per_s = 2.0 * double(bytes) / (best_ms * 1e-3);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaFree(src);
    cudaFree(dst);
    return f;
  }();
  return facts;
}

inline void add_gpu_context() {
  const GpuFacts& f = gpu_facts();
  auto num = [](double v) { return std::to_string(v); };
  benchmark::AddCustomContext("kiln_gpu_name", f.name);
  benchmark::AddCustomContext("kiln_gpu_cc", std::to_string(f.cc_major) + "." + std::to_string(f.cc_minor));
  benchmark::AddCustomContext("kiln_gpu_sms", std::to_string(f.sms));
  benchmark::AddCustomContext("kiln_gpu_clock_mhz", num(f.clock_hz * 1e-6));
  benchmark::AddCustomContext("kiln_gpu_mem_clock_mhz", num(f.mem_clock_hz * 1e-6));
  benchmark::AddCustomContext("kiln_gpu_bus_bits", std::to_string(f.bus_bits));
  benchmark::AddCustomContext("kiln_gpu_fp32_peak_tflops", num(f.fp32_flops * 1e-12));
  benchmark::AddCustomContext("kiln_gpu_tf32_peak_tflops", num(f.tf32_flops * 1e-12));
  benchmark::AddCustomContext("kiln_gpu_dram_peak_gbs", num(f.dram_bytes_per_s * 1e-9));
  benchmark::AddCustomContext("kiln_gpu_d2d_copy_gbs", num(f.copy_bytes_per_s * 1e-9));
  benchmark::AddCustomContext("kiln_smoke", smoke() ? "1" : "0");
  std::fprintf(stderr,
               "kiln bench: %s (cc %d.%d, %d SMs, %.0f MHz): fp32 peak %.1f TFLOP/s, tf32 peak %.1f TFLOP/s, "
               "DRAM %.0f GB/s, measured D2D copy %.0f GB/s%s\n",
               f.name.c_str(), f.cc_major, f.cc_minor, f.sms, f.clock_hz * 1e-6, f.fp32_flops * 1e-12,
               f.tf32_flops * 1e-12, f.dram_bytes_per_s * 1e-9, f.copy_bytes_per_s * 1e-9,
               smoke() ? " (smoke mode)" : "");
}

// One GPU-timed loop: warm-up, then per iteration sync, event, op, event.
// Returns nothing; stores the summed GPU seconds in last_loop_seconds().
template <class F>
void gpu_timed_loop(benchmark::State& state, F&& op, cudaStream_t stream = nullptr) {
  static cudaEvent_t start = nullptr, stop = nullptr;
  if (start == nullptr) {
    KILN_BENCH_CUDA(cudaEventCreate(&start));
    KILN_BENCH_CUDA(cudaEventCreate(&stop));
  }
  op();  // warm-up (first-use costs: module load, cuDNN plans, caches)
  KILN_BENCH_CUDA(cudaDeviceSynchronize());
  double total = 0;
  for (auto _ : state) {
    KILN_BENCH_CUDA(cudaEventRecord(start, stream));
    op();
    KILN_BENCH_CUDA(cudaEventRecord(stop, stream));
    KILN_BENCH_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    KILN_BENCH_CUDA(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms * 1e-3);
    total += ms * 1e-3;
  }
  KILN_BENCH_CUDA(cudaDeviceSynchronize());
  last_loop_seconds() = total;
}

// Seconds per call of cuDNN's TF32 rows by "<op>/<shape>" (reference_seconds() holds the strict
// fp32 ones), so that our TF32 rows (gpu_tf32_cases.hpp) report their ratio to cuDNN TF32.
inline std::map<std::string, double>& tf32_reference_seconds() {
  static std::map<std::string, double> table;
  return table;
}

inline void configure_gpu_row(benchmark::internal::Benchmark* b) {
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
  if (smoke()) b->Iterations(1);
}

}  // namespace kiln::bench
