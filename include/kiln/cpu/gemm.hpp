#pragma once
// Packed, register-blocked GEMMs for the CPU (row-major, fp32).
//
//   reference::gemm   the plain triple loop: the oracle (tests/unit/test_cpu_gemm.cpp)
//   gemm<Cfg>         op(A)[M,K] * op(B)[K,N] (+)= C with explicit strides and a
//                     caller-provided workspace (gemm_workspace_floats): K is cut
//                     in blocks of kKc; per block, A is packed into MR-row panels
//                     [k][MR] and B into NR-column panels [k][NR] (zero-padded),
//                     then every MR x NR tile of C is one kernel_outer call.
//   gemm(...)         the same without <Cfg>: runs the active CPU code path
//                     (isa.hpp: AVX-512 / AVX2 / portable, chosen once by CPUID);
//                     gemm_workspace_floats(M, N, K) fits every compiled path.
//   gemm_nn/tn/nt     the historical entry points (no workspace argument); they use
//                     a per-calling-thread scratch that grows once and is reused.
//
// gemm<Cfg> and its helpers live in gemm_fast.inl, compiled once per code path
// (isa.hpp explains the dispatch); kiln::cpu::gemm<Cfg> is the baseline copy.
//
// Threads: one OpenMP region per call; the packing and the C tiles are split
// with static schedules, each tile written by exactly one thread, and every
// element's sum runs over k in the same order whatever the thread count, so
// results are identical run to run (and across thread counts).
//
// The convolutions do not go through gemm<>: conv2d.hpp packs straight from
// the image (implicit im2col) and uses the same micro-kernels.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kiln/cpu/gemm_kernels.hpp"
#include "kiln/cpu/isa.hpp"
#include "kiln/cpu/separate.hpp"

namespace kiln::cpu {

namespace reference {

// C[M,N] (+)= op(A) * op(B); op(A)[i][k] = trans_a ? A[k*lda + i] : A[i*lda + k], likewise B.
inline void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const float* A,
                 std::int64_t lda, const float* B, std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate) {
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t j = 0; j < N; ++j) {
      double acc = accumulate ? C[i * ldc + j] : 0.0;
      for (std::int64_t k = 0; k < K; ++k)
        acc += static_cast<double>(trans_a ? A[k * lda + i] : A[i * lda + k]) *
               (trans_b ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = static_cast<float>(acc);
    }
}

}  // namespace reference

// One code path's GEMM entry points (gemm_fast.inl fills one table per path).
struct GemmKernels {
  void (*gemm)(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const float* A,
               std::int64_t lda, const float* B, std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate,
               float* workspace);
  std::size_t (*workspace_floats)(std::int64_t M, std::int64_t N, std::int64_t K);
};

// The baseline copy: compiled for the target of this translation unit.
#define KILN_ISA_CFG simd::DefaultConfig
#include "kiln/cpu/gemm_fast.inl"  // IWYU pragma: export
#undef KILN_ISA_CFG

}  // namespace kiln::cpu

#if KILN_CPU_COPY_AVX2
KILN_CPU_TARGET_AVX2_BEGIN
namespace kiln::cpu::isa_avx2 {
#define KILN_ISA_CFG simd::Avx2Config
#include "kiln/cpu/gemm_fast.inl"
#undef KILN_ISA_CFG
}  // namespace kiln::cpu::isa_avx2
KILN_CPU_TARGET_END
#endif
#if KILN_CPU_COPY_AVX512
KILN_CPU_TARGET_AVX512_BEGIN
namespace kiln::cpu::isa_avx512 {
#define KILN_ISA_CFG simd::Avx512Config
#include "kiln/cpu/gemm_fast.inl"
#undef KILN_ISA_CFG
}  // namespace kiln::cpu::isa_avx512
KILN_CPU_TARGET_END
#endif

namespace kiln::cpu {

// The GEMM entry points of a code path compiled into this program (kiln::Error otherwise).
inline const GemmKernels& gemm_kernels(Isa isa) {
#if KILN_CPU_COPY_AVX512
  if (isa == Isa::avx512) return isa_avx512::gemm_kernel_table;
#endif
#if KILN_CPU_COPY_AVX2
  if (isa == Isa::avx2) return isa_avx2::gemm_kernel_table;
#endif
  if (isa != baseline_isa()) {
    parse_isa(isa_name(isa), "gemm_kernels");  // throws with the reason
    fail("gemm_kernels: the ", isa_name(isa), " path is not compiled into this program");
  }
  return gemm_kernel_table;
}

// Floats of workspace for gemm(...) on any compiled path (so set_active_isa is safe).
inline std::size_t gemm_workspace_floats(std::int64_t M, std::int64_t N, std::int64_t K) {
  (void)active_isa();  // checks KILN_CPU_ISA, also without dispatch (see conv2d_workspace_floats)
  std::size_t n = gemm_workspace_floats<simd::DefaultConfig>(M, N, K);
#if KILN_CPU_COPY_AVX2
  n = std::max(n, isa_avx2::gemm_workspace_floats<simd::Avx2Config>(M, N, K));
#endif
#if KILN_CPU_COPY_AVX512
  n = std::max(n, isa_avx512::gemm_workspace_floats<simd::Avx512Config>(M, N, K));
#endif
  return n;
}

// gemm<Cfg> on the active code path (active_isa()): one dispatch per call. Declared first: with
// KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) defined in one unit of the program only.
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
          const float* B, std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate, float* workspace);
#if KILN_CPU_ENTRY_DEFINITIONS
KILN_CPU_ENTRY void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const float* A,
                         std::int64_t lda, const float* B, std::int64_t ldb, float* C, std::int64_t ldc,
                         bool accumulate, float* workspace) {
#if KILN_CPU_DISPATCH
  gemm_kernels(active_isa()).gemm(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, workspace);
#else
  gemm<simd::DefaultConfig>(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, workspace);
#endif
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

namespace impl {
// Scratch of the historical entry points: one per calling thread, grown once.
inline float* gemm_scratch(std::size_t floats) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < floats) scratch.resize(floats);
  return scratch.data();
}
}  // namespace impl

// C[M,N] (+)= A[M,K] * B[K,N]
inline void gemm_nn(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* A, const float* B, float* C,
                    bool accumulate) {
  gemm(false, false, M, N, K, A, K, B, N, C, N, accumulate, impl::gemm_scratch(gemm_workspace_floats(M, N, K)));
}

// C[M,N] (+)= A^T * B, with A stored [K,M] and B [K,N]
inline void gemm_tn(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* A, const float* B, float* C,
                    bool accumulate) {
  gemm(true, false, M, N, K, A, M, B, N, C, N, accumulate, impl::gemm_scratch(gemm_workspace_floats(M, N, K)));
}

// C[M,N] (+)= A[M,K] * B^T, with B stored [N,K]
inline void gemm_nt(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* A, const float* B, float* C,
                    bool accumulate) {
  gemm(false, true, M, N, K, A, K, B, K, C, N, accumulate, impl::gemm_scratch(gemm_workspace_floats(M, N, K)));
}

}  // namespace kiln::cpu
