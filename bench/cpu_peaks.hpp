#pragma once
// The CPU's practical peaks, measured once per process (kiln_bench_cpu).
#include <immintrin.h>
#include <omp.h>

#include <ctime>

#include "bench_common.hpp"

namespace kiln::bench {

// ---- CPU practical peaks (measured once per process) -------------------------
// FLOP/s: every OpenMP thread runs a loop of fused multiply-adds on 12
// independent vectors (AVX-512 with -march=native on a machine that has it). This is the core's FMA throughput,
// the ceiling no convolution can pass. Memory: a copy of 256 MiB (not in any
// cache), counted as bytes read + written, the ceiling for memory-bound layers.
struct CpuPeaks {
  double flops = 0;        // FLOP/s, all threads
  double bytes_per_s = 0;  // read + write bytes/s of a large copy, all threads
  int threads = 0;
};

namespace detail {
// The widest FMA the compiler may use here (-march=native), as explicit
// intrinsics so the loop is fused multiply-adds whatever -ffp-contract says.
#if defined(__AVX512F__)
using vec = __m512;
inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
inline vec vset(float x) { return _mm512_set1_ps(x); }
inline float vfirst(vec v) { return _mm512_cvtss_f32(v); }
inline constexpr const char* fma_isa = "AVX-512 FMA (16 floats)";
#elif defined(__FMA__)
using vec = __m256;
inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
inline vec vset(float x) { return _mm256_set1_ps(x); }
inline float vfirst(vec v) { return _mm256_cvtss_f32(v); }
inline constexpr const char* fma_isa = "AVX2 FMA (8 floats)";
#else
using vec = float;
inline vec vfma(vec a, vec b, vec c) { return a * b + c; }
inline vec vset(float x) { return x; }
inline float vfirst(vec v) { return v; }
inline constexpr const char* fma_isa = "scalar multiply-add";
#endif
inline constexpr int vec_floats = sizeof(vec) / sizeof(float);
inline constexpr int fma_chains = 12;  // > latency x pipes: throughput-bound, not latency-bound

// CPU time of the calling thread: the peaks are properties of the core, and
// on a shared machine wall time would count other processes' time slices.
inline double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

inline double fma_loop_seconds(std::int64_t iterations, float* sink) {
  vec acc[fma_chains];
  for (int i = 0; i < fma_chains; ++i) acc[i] = vset(static_cast<float>(i) * 1e-3f);
  vec a = vset(0.999999f), b = vset(1e-7f);
  // a and b opaque (the compiler cannot precompute the chains); the chains
  // themselves stay in registers. An asm that took acc[i] as "+v" operands inside
  // the loop (the version before 2026-12-02) made GCC keep the array in memory and
  // store 12 zmm per iteration: the loop was store-bound at ~65 of the core's
  // ~167 GFLOP/s (Intel Xeon model 207), and every peak_frac 2.6x too high.
  __asm__ volatile("" : "+v"(a), "+v"(b));
  const double t0 = thread_seconds();
  for (std::int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < fma_chains; ++i) acc[i] = vfma(acc[i], a, b);
  }
  const double t1 = thread_seconds();
  float s = 0;
  for (int i = 0; i < fma_chains; ++i) s += vfirst(acc[i]);
  *sink = s;
  return t1 - t0;
}
}  // namespace detail

inline const CpuPeaks& cpu_peaks() {
  static const CpuPeaks peaks = [] {
    CpuPeaks p;
    p.threads = omp_get_max_threads();
    const bool tiny = smoke();
    // FMA: every thread at once, best of 3 rounds per thread, summed.
    const std::int64_t iters = tiny ? 100000 : 20000000;
    double flops = 0;
#pragma omp parallel reduction(+ : flops)
    {
      double best = 1e30;
      float sink = 0;
      for (int round = 0; round < 3; ++round) best = std::min(best, detail::fma_loop_seconds(iters, &sink));
      flops = static_cast<double>(iters) * detail::fma_chains * detail::vec_floats * 2 / best;
      if (sink == 12345.0f) flops += 1;  // keep the result alive
    }
    p.flops = flops;
    // Copy bandwidth: each thread copies its own slice (first-touched by it),
    // best of 5 rounds per thread, summed over threads.
    const std::size_t floats = tiny ? (std::size_t(1) << 20) : (std::size_t(64) << 20);
    std::vector<float> src(floats), dst(floats);
    double bytes_per_s = 0;
#pragma omp parallel reduction(+ : bytes_per_s)
    {
      const std::size_t nt = static_cast<std::size_t>(omp_get_num_threads()),
                        t = static_cast<std::size_t>(omp_get_thread_num());
      const std::size_t lo = floats * t / nt, hi = floats * (t + 1) / nt;
      for (std::size_t i = lo; i < hi; ++i) src[i] = dst[i] = static_cast<float>(i & 1023);
      double best = 1e30;
      for (int round = 0; round < 5; ++round) {
        const double t0 = detail::thread_seconds();
        std::memcpy(dst.data() + lo, src.data() + lo, (hi - lo) * sizeof(float));
        benchmark::ClobberMemory();
        best = std::min(best, detail::thread_seconds() - t0);
      }
      bytes_per_s = 2.0 * static_cast<double>((hi - lo) * sizeof(float)) / best;
    }
    benchmark::DoNotOptimize(dst.data());
    p.bytes_per_s = bytes_per_s;
    return p;
  }();
  return peaks;
}

inline void add_cpu_context() {
  const CpuPeaks& p = cpu_peaks();
  benchmark::AddCustomContext("kiln_cpu_threads", std::to_string(p.threads));
  benchmark::AddCustomContext("kiln_cpu_peak_gflops", std::to_string(p.flops * 1e-9));
  benchmark::AddCustomContext("kiln_cpu_peak_method", std::string("FMA-throughput loop (thread CPU time), ") +
                                                          detail::fma_isa +
                                                          ", 12 independent chains per thread, all OpenMP threads");
  benchmark::AddCustomContext("kiln_cpu_copy_gbs", std::to_string(p.bytes_per_s * 1e-9));
  benchmark::AddCustomContext(
      "kiln_cpu_copy_method",
      "memcpy of a 256 MiB slice per thread (read + written bytes), thread CPU time, all OpenMP threads");
  benchmark::AddCustomContext("kiln_smoke", smoke() ? "1" : "0");
}

}  // namespace kiln::bench
