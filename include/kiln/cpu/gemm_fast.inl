// The packed GEMM: the body of gemm.hpp that is compiled once per CPU code path.
// No include guard: gemm.hpp includes it inside namespace kiln::cpu (the baseline,
// with KILN_ISA_CFG = simd::DefaultConfig) and, with run-time dispatch, inside
// kiln::cpu::isa_avx2 / isa_avx512 under a `#pragma GCC target` region (isa.hpp).
// Every name it defines lands in that namespace; the table at the end is what the
// dispatch calls. Include only from gemm.hpp.

namespace impl {
inline constexpr std::int64_t round_up(std::int64_t a, std::int64_t b) { return (a + b - 1) / b * b; }
inline constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
// Next 64-byte boundary (workspaces carry 16 floats of slack per buffer for this).
inline float* align64(float* p) {
  const auto u = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<float*>((u + 63) / 64 * 64);
}
}  // namespace impl

// K block of the general GEMM: an MR x kKc panel of A (8 KiB at MR = 8) and a
// kKc x NR panel of B (48 KiB at NR = 48, L1/L2) per kernel call.
inline constexpr std::int64_t kKc = 256;

template <class Cfg = simd::DefaultConfig>
inline std::size_t gemm_workspace_floats(std::int64_t M, std::int64_t N, std::int64_t K) {
  const std::int64_t kc = std::min(K, kKc);
  return static_cast<std::size_t>(kc * (impl::round_up(M, Cfg::MR) + impl::round_up(N, Cfg::NR)) + 32);
}

template <class Cfg = simd::DefaultConfig>
inline void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const float* A,
                 std::int64_t lda, const float* B, std::int64_t ldb, float* C, std::int64_t ldc, bool accumulate,
                 float* workspace) {
  constexpr std::int64_t MR = Cfg::MR, NR = Cfg::NR;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j) C[i * ldc + j] = 0.0f;
    return;
  }
  const std::int64_t mb = impl::ceil_div(M, MR), nb = impl::ceil_div(N, NR);
  const std::int64_t kc_max = std::min(K, kKc);
  float* pa = impl::align64(workspace);
  float* pb = impl::align64(pa + mb * MR * kc_max);
  const bool big = static_cast<double>(M) * N * K > 2e5;  // below that a parallel region costs more than it saves
#pragma omp parallel if (big)
  for (std::int64_t pc = 0; pc < K; pc += kKc) {
    const std::int64_t kc = std::min(kKc, K - pc);
    // pa[(ib*kc + k)*MR + r] = op(A)[ib*MR + r][pc + k]   (0 past M)
#pragma omp for schedule(static)
    for (std::int64_t ib = 0; ib < mb; ++ib) {
      float* dst = pa + ib * kc * MR;
      for (std::int64_t k = 0; k < kc; ++k)
        for (std::int64_t r = 0; r < MR; ++r) {
          const std::int64_t i = ib * MR + r;
          dst[k * MR + r] = i < M ? (trans_a ? A[(pc + k) * lda + i] : A[i * lda + pc + k]) : 0.0f;
        }
    }
    // pb[(jb*kc + k)*NR + j] = op(B)[pc + k][jb*NR + j]   (0 past N)
#pragma omp for schedule(static)
    for (std::int64_t jb = 0; jb < nb; ++jb) {
      float* dst = pb + jb * kc * NR;
      const std::int64_t j0 = jb * NR, nj = std::min(NR, N - j0);
      for (std::int64_t k = 0; k < kc; ++k) {
        float* row = dst + k * NR;
        if (trans_b) {
          for (std::int64_t j = 0; j < nj; ++j) row[j] = B[(j0 + j) * ldb + pc + k];
        } else {
          const float* src = B + (pc + k) * ldb + j0;
          for (std::int64_t j = 0; j < nj; ++j) row[j] = src[j];
        }
        for (std::int64_t j = nj; j < NR; ++j) row[j] = 0.0f;
      }
    }
    const bool acc = accumulate || pc > 0;
#pragma omp for collapse(2) schedule(static)
    for (std::int64_t jb = 0; jb < nb; ++jb)
      for (std::int64_t ib = 0; ib < mb; ++ib) {
        const std::int64_t i0 = ib * MR, j0 = jb * NR;
        const float* a = pa + ib * kc * MR;
        const float* b = pb + jb * kc * NR;
        float* c = C + i0 * ldc + j0;
        if (i0 + MR <= M && j0 + NR <= N) {
          simd::kernel_outer<Cfg>(kc, a, b, NR, nullptr, c, ldc, acc);
          continue;
        }
        // Edge tile: through a local MR x NR tile, only the valid part copied.
        alignas(64) float tile[MR * NR];
        const std::int64_t mi = std::min(MR, M - i0), nj = std::min(NR, N - j0);
        if (acc)
          for (std::int64_t r = 0; r < MR; ++r)
            for (std::int64_t j = 0; j < NR; ++j) tile[r * NR + j] = r < mi && j < nj ? c[r * ldc + j] : 0.0f;
        simd::kernel_outer<Cfg>(kc, a, b, NR, nullptr, tile, NR, acc);
        for (std::int64_t r = 0; r < mi; ++r)
          for (std::int64_t j = 0; j < nj; ++j) c[r * ldc + j] = tile[r * NR + j];
      }
  }
}

// The entry points of this copy, for the dispatch (gemm.hpp: gemm_kernels()); with
// KILN_CPU_SEPARATE only declared, outside its one unit (kiln/cpu/separate.hpp).
#if KILN_CPU_ENTRY_DEFINITIONS
KILN_CPU_TABLE GemmKernels gemm_kernel_table{&gemm<KILN_ISA_CFG>, &gemm_workspace_floats<KILN_ISA_CFG>};
#else
KILN_CPU_TABLE GemmKernels gemm_kernel_table;
#endif
