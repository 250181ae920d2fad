#pragma once
// Conv2d on the CPU: stride 1, zero padding K/2 (K odd), NCHW, weight [Cout, Cin, K, K].
//
//   reference::   the plain loops: the oracle every other version is tested against.
//   conv2d_*      what the layers call: implicit-im2col GEMMs on the register-
//                 blocked micro-kernels of gemm_kernels.hpp (AVX-512 / AVX2 /
//                 portable: compiled per code path in conv2d_fast.inl and chosen
//                 once per process by CPUID, see isa.hpp); conv_kernels(isa) runs
//                 a given path.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <omp.h>

#include "kiln/core/conv_shape.hpp"
#include "kiln/cpu/conv_rounding.hpp"
#include "kiln/cpu/gemm.hpp"
#include "kiln/cpu/gemm_kernels.hpp"
#include "kiln/cpu/isa.hpp"
#include "kiln/cpu/separate.hpp"

namespace kiln::cpu {

using kiln::ConvShape;

namespace reference {

inline void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y) {
  const std::int64_t p = s.pad();
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < s.h; ++i)
        for (std::int64_t j = 0; j < s.w; ++j) {
          double acc = b ? b[o] : 0.0;
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < s.k; ++u)
              for (std::int64_t v = 0; v < s.k; ++v) {
                const std::int64_t ii = i + u - p, jj = j + v - p;
                if (ii < 0 || ii >= s.h || jj < 0 || jj >= s.w) continue;
                acc += static_cast<double>(x[((n * s.c_in + c) * s.h + ii) * s.w + jj]) *
                       w[((o * s.c_in + c) * s.k + u) * s.k + v];
              }
          y[((n * s.c_out + o) * s.h + i) * s.w + j] = static_cast<float>(acc);
        }
}

// dx = conv_transpose(dy, w) (overwritten); dw, db accumulated (+=).
inline void conv2d_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                            float* db) {
  const std::int64_t p = s.pad();
  if (dx)
    for (std::int64_t i = 0; i < s.n * s.c_in * s.hw(); ++i) dx[i] = 0.0f;
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < s.h; ++i)
        for (std::int64_t j = 0; j < s.w; ++j) {
          const float g = dy[((n * s.c_out + o) * s.h + i) * s.w + j];
          if (db) db[o] += g;
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < s.k; ++u)
              for (std::int64_t v = 0; v < s.k; ++v) {
                const std::int64_t ii = i + u - p, jj = j + v - p;
                if (ii < 0 || ii >= s.h || jj < 0 || jj >= s.w) continue;
                const std::int64_t xi = ((n * s.c_in + c) * s.h + ii) * s.w + jj;
                const std::int64_t wi = ((o * s.c_in + c) * s.k + u) * s.k + v;
                if (dx) dx[xi] += g * w[wi];
                if (dw) dw[wi] += g * x[xi];
              }
        }
}

}  // namespace reference

// One code path's convolution entry points (conv2d_fast.inl fills one table per path):
// the impl::conv2d_*_with<Cfg> functions of that path, with an explicit thread count.
struct ConvKernels {
  void (*forward)(const ConvShape& s, const float* x, const float* w, const float* b, float* y, float* workspace,
                  int threads);
  void (*backward)(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                   float* workspace, int threads);
  std::size_t (*workspace_floats)(const ConvShape& s, int threads);
};

// The baseline copy (compiled for this translation unit's target) in kiln::cpu::impl.
#define KILN_ISA_CFG simd::DefaultConfig
#include "kiln/cpu/conv2d_fast.inl"  // IWYU pragma: export
#undef KILN_ISA_CFG

}  // namespace kiln::cpu

// The copies above the baseline (run-time dispatch, isa.hpp), next to gemm.hpp's.
#if KILN_CPU_COPY_AVX2
KILN_CPU_TARGET_AVX2_BEGIN
namespace kiln::cpu::isa_avx2 {
#define KILN_ISA_CFG simd::Avx2Config
#include "kiln/cpu/conv2d_fast.inl"
#undef KILN_ISA_CFG
}  // namespace kiln::cpu::isa_avx2
KILN_CPU_TARGET_END
#endif
#if KILN_CPU_COPY_AVX512
KILN_CPU_TARGET_AVX512_BEGIN
namespace kiln::cpu::isa_avx512 {
#define KILN_ISA_CFG simd::Avx512Config
#include "kiln/cpu/conv2d_fast.inl"
#undef KILN_ISA_CFG
}  // namespace kiln::cpu::isa_avx512
KILN_CPU_TARGET_END
#endif

namespace kiln::cpu {

// The convolution entry points of a code path compiled into this program (kiln::Error otherwise).
inline const ConvKernels& conv_kernels(Isa isa) {
#if KILN_CPU_COPY_AVX512
  if (isa == Isa::avx512) return isa_avx512::conv_kernel_table;
#endif
#if KILN_CPU_COPY_AVX2
  if (isa == Isa::avx2) return isa_avx2::conv_kernel_table;
#endif
  if (isa != baseline_isa()) {
    parse_isa(isa_name(isa), "conv_kernels");  // throws with the reason
    fail("conv_kernels: the ", isa_name(isa), " path is not compiled into this program");
  }
  return conv_kernel_table;
}

// Threads a convolution runs on (the workspace holds one chunk per thread).
inline int conv2d_threads() { return omp_get_max_threads(); }

// Floats of scratch the layer requests once (Arena): the packed weight and one
// pixel chunk per thread; shared by forward and backward. With run-time dispatch,
// the largest need of the compiled paths, so that set_active_isa() between steps is safe.
std::size_t conv2d_workspace_floats(const ConvShape& s);
// Floats of scratch conv2d_forward needs (a plan for inference asks only for this): the
// largest need of the compiled paths, as above.
std::size_t conv2d_forward_workspace_floats(const ConvShape& s);

// The dispatch points below, declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) they
// are defined in one unit of the program only.
void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, float* workspace);
void conv2d_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                     float* db, float* workspace);

#if KILN_CPU_ENTRY_DEFINITIONS
KILN_CPU_ENTRY std::size_t conv2d_workspace_floats(const ConvShape& s) {
  // Reads and checks KILN_CPU_ISA when a layer plans, also without dispatch (where it can
  // only name the baseline: anything else is refused here, not silently ignored).
  (void)active_isa();
  const int threads = conv2d_threads();
  std::size_t n = impl::conv2d_workspace_floats_with<simd::DefaultConfig>(s, threads);
#if KILN_CPU_COPY_AVX2
  n = std::max(n, isa_avx2::impl::conv2d_workspace_floats_with<simd::Avx2Config>(s, threads));
#endif
#if KILN_CPU_COPY_AVX512
  n = std::max(n, isa_avx512::impl::conv2d_workspace_floats_with<simd::Avx512Config>(s, threads));
#endif
  return n;
}

KILN_CPU_ENTRY std::size_t conv2d_forward_workspace_floats(const ConvShape& s) {
  (void)active_isa();
  const int threads = conv2d_threads();
  std::size_t n = impl::conv2d_forward_workspace_floats_with<simd::DefaultConfig>(s, threads);
#if KILN_CPU_COPY_AVX2
  n = std::max(n, isa_avx2::impl::conv2d_forward_workspace_floats_with<simd::Avx2Config>(s, threads));
#endif
#if KILN_CPU_COPY_AVX512
  n = std::max(n, isa_avx512::impl::conv2d_forward_workspace_floats_with<simd::Avx512Config>(s, threads));
#endif
  return n;
}

// The dispatch point of a convolution pass: the active path's entry (one indirect call
// per pass) or, without run-time dispatch, the baseline called directly.
// y = conv(x, w) + b (b may be null).
KILN_CPU_ENTRY void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                                   float* workspace) {
  // BF16 / TF32 simulated (conv_rounding.hpp): the same GEMMs on rounded copies of x and w.
  if (const ConvRounding r = conv_rounding(); rounds_operands(r, s)) [[unlikely]] {
    x = rounded_copy(0, r, ConvOperand::activation, x, s.n * s.c_in * s.hw());
    w = rounded_copy(1, r, ConvOperand::weight, w, s.c_out * s.c_in * s.k * s.k);
  }
#if KILN_CPU_DISPATCH
  conv_kernels(active_isa()).forward(s, x, w, b, y, workspace, conv2d_threads());
#else
  impl::conv2d_forward_with<simd::DefaultConfig>(s, x, w, b, y, workspace, conv2d_threads());
#endif
}

// dx overwritten (may be null: the first layer of a network needs none);
// dw and db accumulated (db may be null).
KILN_CPU_ENTRY void conv2d_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx,
                                    float* dw, float* db, float* workspace) {
  // BF16 / TF32 simulated: dx and dw from rounded copies of x, w and dy; db from the fp32 dy (as on CUDA).
  if (const ConvRounding r = conv_rounding(); rounds_operands(r, s)) [[unlikely]] {
    if (db) {
#pragma omp parallel num_threads(conv2d_threads())
      impl::conv_bias_grad(s, dy, db);
      db = nullptr;
    }
    x = rounded_copy(0, r, ConvOperand::activation, x, s.n * s.c_in * s.hw());
    if (dx) w = rounded_copy(1, r, ConvOperand::weight, w, s.c_out * s.c_in * s.k * s.k);
    dy = rounded_copy(2, r, ConvOperand::activation, dy, s.n * s.c_out * s.hw());
  }
#if KILN_CPU_DISPATCH
  conv_kernels(active_isa()).backward(s, x, w, dy, dx, dw, db, workspace, conv2d_threads());
#else
  impl::conv2d_backward_with<simd::DefaultConfig>(s, x, w, dy, dx, dw, db, workspace, conv2d_threads());
#endif
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::cpu
