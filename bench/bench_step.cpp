// kiln_bench_step: whole training steps and inference of UNetSmall / UNetBase
// on the CPU (see step_cases.hpp). bench/compare_pytorch.py runs it with
// --benchmark_format=json next to the same U-Net in PyTorch. The JSON context
// names the CPU code path the convolutions and GEMMs run (kiln_cpu_isa: the
// best this CPU runs, or KILN_CPU_ISA), the program's baseline (its -m flags)
// and the paths it could run here.
#include <omp.h>

#include <cstdio>
#include <exception>
#include <string>

#include "kiln/cpu/backend.hpp"
#include "kiln/cpu/isa.hpp"
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
  try {
    // Checks KILN_CPU_ISA here, before any benchmark, so a path this program or CPU lacks stops it with the reason.
    const auto isa = kiln::cpu::active_isa();
    benchmark::AddCustomContext("kiln_cpu_isa", kiln::cpu::isa_name(isa));
    benchmark::AddCustomContext("kiln_cpu_isa_baseline", kiln::cpu::isa_name(kiln::cpu::baseline_isa()));
    std::string available;
    for (const auto path : kiln::cpu::available_isas())
      available += (available.empty() ? "" : ",") + std::string(kiln::cpu::isa_name(path));
    benchmark::AddCustomContext("kiln_cpu_isas_available", available);
    benchmark::AddCustomContext("kiln_cpu_threads", std::to_string(omp_get_max_threads()));
    benchmark::AddCustomContext("kiln_smoke", smoke() ? "1" : "0");
    register_step_benchmarks<kiln::Cpu>("cpu");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_bench_step: error: %s\n", e.what());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
