// The micro-kernels alone, L1-resident (docs/cpu-path.md, 2026-12-02): kernel_outer and
// kernel_outer_rows of the build's default configuration (8 x 48 with AVX-512) over K = 128
// (A 4 KiB, B 24 KiB), kernel_dot over 512 floats, and a register-only FMA loop (12
// independent chains) as the core's peak; thread CPU time. Not part of the CMake build:
//   g++ -O3 -march=native -std=c++20 -I include bench/kernel_outer_driver.cpp -o /tmp/kdrv
//   nice -n 5 /tmp/kdrv
// (run two copies at once to see whether the two vCPUs share an FMA unit).
#include <immintrin.h>

#include <cstdio>
#include <ctime>
#include <vector>

#include "kiln/cpu/gemm_kernels.hpp"

namespace {
using Cfg = kiln::cpu::simd::DefaultConfig;
double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}
__attribute__((noinline)) void outer(long K, const float* a, const float* b, long ldb, const float* bias, float* c,
                                     long ldc) {
  kiln::cpu::simd::kernel_outer<Cfg>(K, a, b, ldb, bias, c, ldc, false);
}
__attribute__((noinline)) void outer_rows(long K, const float* a, const float* b, const std::int64_t* off,
                                          const float* bias, float* c, long ldc) {
  kiln::cpu::simd::kernel_outer_rows<Cfg>(K, a, b, off, bias, c, ldc);
}
__attribute__((noinline)) void dot(long L, const float* a, long lda, const float* b, long ldb, float* c, long ldc) {
  kiln::cpu::simd::kernel_dot<Cfg>(L, a, lda, b, ldb, c, ldc, Cfg::DR, Cfg::DC);
}
#if defined(__AVX512F__)
template <int Chains>
double fma_peak(long iterations) {
  __m512 acc[Chains];
  for (int i = 0; i < Chains; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  __asm__ volatile("" : "+v"(a), "+v"(b));
  const double t0 = thread_seconds();
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < Chains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  const double t = thread_seconds() - t0;
  float sink = 0;
  for (int i = 0; i < Chains; ++i) sink += _mm512_cvtss_f32(acc[i]);
  if (sink == 1.2345f) std::printf(" ");
  return static_cast<double>(iterations) * Chains * 32 / t / 1e9;
}
#endif
}  // namespace

int main() {
  constexpr long MR = Cfg::MR, NR = Cfg::NR, DR = Cfg::DR, DC = Cfg::DC;
  const long K = 128, L = 512;
  std::vector<float> a(K * MR, 0.01f), b(K * NR, 0.5f), c(MR * NR), bias(MR, 0.0f);
  std::vector<std::int64_t> off(K);
  for (long k = 0; k < K; ++k) off[k] = k * NR;
  std::vector<float> da(DR * L, 0.01f), db(DC * L, 0.5f), dc(DR * DC);
  for (int round = 0; round < 2; ++round) {
#if defined(__AVX512F__)
    std::printf("FMA loop, 12 chains: %.1f GFLOP/s\n", fma_peak<12>(50000000));
#endif
    const long it = 2000000;
    double t0 = thread_seconds();
    for (long i = 0; i < it; ++i) {
      outer(K, a.data(), b.data(), NR, bias.data(), c.data(), NR);
      __asm__ volatile("" : : "r"(c.data()) : "memory");
    }
    double t = thread_seconds() - t0;
    std::printf("kernel_outer %ldx%ld, K = %ld: %.1f GFLOP/s\n", MR, NR, K, it * K * MR * NR * 2.0 / t / 1e9);
    t0 = thread_seconds();
    for (long i = 0; i < it; ++i) {
      outer_rows(K, a.data(), b.data(), off.data(), bias.data(), c.data(), NR);
      __asm__ volatile("" : : "r"(c.data()) : "memory");
    }
    t = thread_seconds() - t0;
    std::printf("kernel_outer_rows, K = %ld: %.1f GFLOP/s\n", K, it * K * MR * NR * 2.0 / t / 1e9);
    const long dit = 500000;
    t0 = thread_seconds();
    for (long i = 0; i < dit; ++i) {
      dot(L, da.data(), L, db.data(), L, dc.data(), DC);
      __asm__ volatile("" : : "r"(dc.data()) : "memory");
    }
    t = thread_seconds() - t0;
    std::printf("kernel_dot %ldx%ld, L = %ld: %.1f GFLOP/s\n", DR, DC, L, dit * L * DR * DC * 2.0 / t / 1e9);
  }
  return 0;
}
