// kiln_bench_step: whole training steps and inference of UNetSmall / UNetBase
// on the CPU (see step_cases.hpp). bench/compare_pytorch.py runs it with
// --benchmark_format=json next to the same U-Net in PyTorch.
#include <omp.h>

#include <cstdio>

#include "kiln/cpu/backend.hpp"
#include "step_cases.hpp"

namespace kiln::bench {
template <>
struct StepTiming<Cpu> {
  static constexpr int default_steps = 5;
  static void sync() {}
};
}  // namespace kiln::bench

int main(int argc, char** argv) {
  using namespace kiln::bench;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("kiln_cpu_threads", std::to_string(omp_get_max_threads()));
  benchmark::AddCustomContext("kiln_smoke", smoke() ? "1" : "0");
  register_step_benchmarks<kiln::Cpu>("cpu");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
