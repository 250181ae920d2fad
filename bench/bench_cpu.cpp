// kiln_bench_cpu: every layer's forward and backward on the CPU backend, at
// the U-Net's shapes (see bench_common.hpp for names and counters).
//   kiln_bench_cpu --benchmark_filter='conv3x3_.*/cpu/C64_H64_N16'
// peak_frac compares with this process's own measured ceilings (printed in
// the JSON context): an FMA-throughput loop for FLOP/s, a large copy for bytes/s.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "bench_common.hpp"
#include "cpu_peaks.hpp"
#include "kiln/cpu/backend.hpp"
#include "layer_cases.hpp"

namespace kiln::bench {

template <>
struct Timing<Cpu> {
  // Real (wall) time: the work runs on all OpenMP threads. Calls costing more
  // than ~0.1 s (the 256x256 convolutions) get a short minimum time, so they
  // run once or twice instead of being skipped. Smoke mode: one iteration.
  static void configure(benchmark::internal::Benchmark* b, double work) {
    b->UseRealTime()->Unit(benchmark::kMillisecond);
    if (smoke())
      b->Iterations(1);
    else if (work > 4e9)
      b->MinTime(0.2);
  }
  template <class F>
  static void loop(benchmark::State& state, F&& op) {
    op();  // warm-up: first touch, OpenMP threads awake
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) op();
    last_loop_seconds() = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  static void sync() {}
};

// The practical peaks themselves, as rows (so they sit in the same table).
inline void register_peak_rows() {
  benchmark::RegisterBenchmark("cpu_peak/fma_loop", [](benchmark::State& state) {
    const CpuPeaks& p = cpu_peaks();
    for (auto _ : state) benchmark::DoNotOptimize(p.flops);
    state.counters["GFLOP/s"] = p.flops * 1e-9;
    state.counters["threads"] = p.threads;
  })->Iterations(1);
  benchmark::RegisterBenchmark("cpu_peak/copy", [](benchmark::State& state) {
    const CpuPeaks& p = cpu_peaks();
    for (auto _ : state) benchmark::DoNotOptimize(p.bytes_per_s);
    state.counters["GB/s"] = p.bytes_per_s * 1e-9;
    state.counters["threads"] = p.threads;
  })->Iterations(1);
  // Our own best GEMM path at a square size, for scale (not used as the peak).
  const std::ptrdiff_t m = smoke() ? 64 : 1024;
  benchmark::RegisterBenchmark(("cpu_peak/gemm_nn_" + std::to_string(m)).c_str(),
                               [m](benchmark::State& state) {
                                 const float* a = random_values(static_cast<std::size_t>(m * m), 1);
                                 const float* b = random_values(static_cast<std::size_t>(m * m), 2);
                                 std::vector<float> c(static_cast<std::size_t>(m * m));
                                 Timing<Cpu>::loop(state, [&] { cpu::gemm_nn(m, m, m, a, b, c.data(), false); });
                                 benchmark::DoNotOptimize(c.data());
                                 set_flops(state, 2.0 * m * m * m, cpu_peaks().flops);
                               })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(smoke() ? 1 : 10);
}

}  // namespace kiln::bench

int main(int argc, char** argv) {
  using namespace kiln::bench;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const CpuPeaks& peaks = cpu_peaks();  // measured before anything else runs
  std::fprintf(stderr, "kiln_bench_cpu: %d threads, FMA peak %.1f GFLOP/s, copy %.1f GB/s%s\n", peaks.threads,
               peaks.flops * 1e-9, peaks.bytes_per_s * 1e-9, smoke() ? " (smoke mode)" : "");
  add_cpu_context();
  register_peak_rows();
  register_layer_benchmarks<kiln::Cpu>("cpu", Peaks{peaks.flops, peaks.bytes_per_s});
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
