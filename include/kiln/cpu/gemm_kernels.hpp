#pragma once
// Register-blocked micro-kernels for the CPU GEMMs and convolutions.
//
// There are no intrinsics here: the kernels are written once over GCC/Clang
// vector extensions (`float __attribute__((vector_size(4 * VL)))`), and the
// tile shape is a template parameter, so the same source gives
//   * AVX-512:  VL = 16, an 8 x 48 tile of C in 24 zmm accumulators,
//   * AVX2+FMA: VL = 8,  a  6 x 16 tile in 12 ymm accumulators,
//   * portable: VL = 1,  a  4 x 4 tile of plain floats (no SIMD assumed),
// DefaultConfig is the one the translation unit's own target allows (__AVX512F__ /
// __AVX2__ + __FMA__: the *baseline*); with run-time dispatch (isa.hpp) the code
// that calls these kernels is also compiled for the wider targets, each copy with
// its own configuration, and the CPU picks one at run time. The kernels are
// always_inline, so they take the target of the function they are inlined into.
// Every configuration compiles on every x86-64 target (the compiler lowers a
// vector type wider than the target's registers), so the tests run all three
// against the naive loops on one machine.
//
// Two kernels:
//   kernel_outer  C[MR x NR] (=|+=) A_panel * B_panel: per k one row of B
//                 (NV vectors) and MR broadcasts of A; FMAs into MR*NV
//                 accumulators. A is packed [k][MR]; B rows are NR contiguous
//                 floats, ldb apart. (forward, input gradient, general GEMM)
//   kernel_dot    C[DR x DC] += A[DR rows] . B[DC rows] over a contiguous
//                 length L: both operands run along the reduction, so the
//                 accumulators hold VL partial sums each, added at the end in a
//                 fixed order. (weight gradient: dy . im2col(x)^T)
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <utility>

namespace kiln::cpu::simd {

#if defined(__GNUC__) || defined(__clang__)
#define KILN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define KILN_ALWAYS_INLINE inline
#endif

// Vector of VL floats; may_alias + aligned(4): loads/stores from any float*.
template <int VL>
struct Vec;
template <>
struct Vec<1> {
  using type = float;
};
template <>
struct Vec<4> {
  typedef float type __attribute__((vector_size(16), aligned(4), may_alias));
};
template <>
struct Vec<8> {
  typedef float type __attribute__((vector_size(32), aligned(4), may_alias));
};
template <>
struct Vec<16> {
  typedef float type __attribute__((vector_size(64), aligned(4), may_alias));
};

// Vectors never pass by value through a function (only by reference): a
// function taking or returning a 64-byte vector on a target without AVX-512
// has a different ABI, which GCC reports (-Wpsabi) when the AVX-512
// configuration is compiled for plain x86-64, as the tests do.
template <int VL>
KILN_ALWAYS_INLINE void load(typename Vec<VL>::type& v, const float* p) {
  v = *reinterpret_cast<const typename Vec<VL>::type*>(p);
}
template <int VL>
KILN_ALWAYS_INLINE void store(float* p, const typename Vec<VL>::type& v) {
  *reinterpret_cast<typename Vec<VL>::type*>(p) = v;
}
// Holds v in a register from here on. Without it, GCC's Zen tuning (the -mtune that
// -march=native implies on AMD Zen 3/4) folds the loads of kernel_dot_rows' B rows into
// every FMA as memory operands, DR times over: 28 loads per 24 FMAs instead of 10, and
// the padded weight gradient 1.7x slower on Zen 4 (docs/cpu-path.md). Only where the
// translation unit's own target holds a VL-float vector in one register.
template <int VL>
KILN_ALWAYS_INLINE void keep_in_register([[maybe_unused]] typename Vec<VL>::type& v) {
#if defined(__AVX512F__)
  if constexpr (VL == 8 || VL == 16) asm("" : "+v"(v));
#elif defined(__AVX__)
  if constexpr (VL == 8) asm("" : "+x"(v));
#endif
}

// v = {s, s, ..., s}, written as a constructor with VL equal elements: GCC turns
// it into one vbroadcastss from memory (or an embedded {1to16} broadcast operand of
// the FMA). The former `V{} + s` had to be compiled as an add (0 + s is not s for
// s = -0 without -ffast-math): a vaddss on the FMA ports and a register broadcast
// per A element, which held kernel_outer at ~60% of the FMA peak (98 of 167
// GFLOP/s, L1-resident, 2026-12-02).
template <int VL, std::size_t... E>
KILN_ALWAYS_INLINE void splat(typename Vec<VL>::type& v, float s, std::index_sequence<E...>) {
  v = typename Vec<VL>::type{((void)E, s)...};
}
template <int VL>
KILN_ALWAYS_INLINE void broadcast(typename Vec<VL>::type& v, float s) {
  if constexpr (VL == 1)
    v = s;
  else
    splat<VL>(v, s, std::make_index_sequence<VL>{});
}

// Transposing reduction: out lane e = the sum of the lanes of x[e], for VL
// vectors at once (log2 VL rounds of two shuffles and an add, instead of VL
// horizontal sums). Round with group size G -> G/2 folds p and q (each VL/G
// groups of G lanes, one accumulator per group) into one vector of 2*VL/G
// groups of G/2 lanes: the low half plus the high half of every group.
// Lane order is fixed, so the result is deterministic.
constexpr int fold_index(int vl, int g, int e, bool high) {
  const int half = vl / 2, ee = e % half;
  return (e < half ? 0 : vl) + (ee / (g / 2)) * g + (high ? g / 2 : 0) + ee % (g / 2);
}
template <int VL, int G, std::size_t... E>
KILN_ALWAYS_INLINE void fold(typename Vec<VL>::type& out, const typename Vec<VL>::type& p,
                             const typename Vec<VL>::type& q, std::index_sequence<E...>) {
#if defined(__CUDACC__)
  // nvcc's front end cannot expand a pack inside __builtin_shufflevector: the
  // same fold lane by lane (host code only; nvcc builds use the portable config).
  float lanes[2 * VL], result[VL];
  std::memcpy(lanes, &p, sizeof(float) * VL);
  std::memcpy(lanes + VL, &q, sizeof(float) * VL);
  ((result[E] =
        lanes[fold_index(VL, G, static_cast<int>(E), false)] + lanes[fold_index(VL, G, static_cast<int>(E), true)]),
   ...);
  std::memcpy(&out, result, sizeof(float) * VL);
#else
  out = __builtin_shufflevector(p, q, fold_index(VL, G, static_cast<int>(E), false)...) +
        __builtin_shufflevector(p, q, fold_index(VL, G, static_cast<int>(E), true)...);
#endif
}
template <int VL, int G = VL>
KILN_ALWAYS_INLINE void reduce_lanes(typename Vec<VL>::type* x) {  // x[0..VL) in, x[0] out
  if constexpr (G > 1) {                                           // G vectors alive at this round
#pragma GCC unroll 16
    for (int i = 0; i < G / 2; ++i) fold<VL, G>(x[i], x[2 * i], x[2 * i + 1], std::make_index_sequence<VL>{});
    reduce_lanes<VL, G / 2>(x);
  }
}

// A kernel configuration: vector width, outer-product tile (MR rows x NV
// vectors) and dot-product tile (DR x DC).
template <int VL_, int MR_, int NV_, int DR_, int DC_>
struct Config {
  static constexpr int VL = VL_, MR = MR_, NV = NV_, NR = NV_ * VL_, DR = DR_, DC = DC_;
  using V = typename Vec<VL>::type;
};

using Avx512Config =
    Config<16, 8, 3, 4, 6>;  // 24 + 3 + 1 zmm in the outer kernel; 24 + 4 (A rows) + 1 (a B row) in the dot kernel
using Avx2Config = Config<8, 6, 2, 3, 4>;      // 12 + 2 + 1 ymm; 12 + 3 + 1 ymm
using PortableConfig = Config<1, 4, 4, 2, 4>;  // plain floats

#if defined(__AVX512F__)
using DefaultConfig = Avx512Config;
inline constexpr const char* kDefaultConfigName = "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
using DefaultConfig = Avx2Config;
inline constexpr const char* kDefaultConfigName = "avx2";
#else
using DefaultConfig = PortableConfig;
inline constexpr const char* kDefaultConfigName = "portable";
#endif

// C[r][j] for r < MR, j < NR (C row r at c + r*ldc):
//   init:  accumulate ? C : (bias ? bias[r] : 0)
//   C = init + sum_k a[k*MR + r] * b[k*ldb + j]
// Plain loop it stands for:
//   for r, j: acc = init(r, j); for k: acc += a[k*MR+r] * b[k*ldb+j]; c[r*ldc+j] = acc;
template <class Cfg>
KILN_ALWAYS_INLINE void kernel_outer(std::int64_t K, const float* __restrict a, const float* __restrict b,
                                     std::int64_t ldb, const float* __restrict bias, float* __restrict c,
                                     std::int64_t ldc, bool accumulate) {
  constexpr int VL = Cfg::VL, MR = Cfg::MR, NV = Cfg::NV;
  using V = typename Cfg::V;
  V acc[MR][NV];
  if (accumulate) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) load<VL>(acc[r][v], c + r * ldc + v * VL);
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      V init;
      broadcast<VL>(init, bias ? bias[r] : 0.0f);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = init;
    }
  }
  for (std::int64_t k = 0; k < K; ++k) {
    V bv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) load<VL>(bv[v], b + v * VL);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      V ar;
      broadcast<VL>(ar, a[r]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] += ar * bv[v];
    }
    a += MR;
    b += ldb;
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) store<VL>(c + r * ldc + v * VL, acc[r][v]);
}

// kernel_outer with the rows of B at b + off[k] (any offsets) instead of b + k*ldb,
// and no accumulate: C = bias + sum_k a[k*MR + r] * b[off[k] + j]. Used by the
// padded-plane convolution, where B row (c, u, v) is the padded input plane c
// shifted by (u - p, v - p): a pointer offset, no copy.
template <class Cfg>
KILN_ALWAYS_INLINE void kernel_outer_rows(std::int64_t K, const float* __restrict a, const float* __restrict b,
                                          const std::int64_t* __restrict off, const float* __restrict bias,
                                          float* __restrict c, std::int64_t ldc) {
  constexpr int VL = Cfg::VL, MR = Cfg::MR, NV = Cfg::NV;
  using V = typename Cfg::V;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    V init;
    broadcast<VL>(init, bias ? bias[r] : 0.0f);
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = init;
  }
  for (std::int64_t k = 0; k < K; ++k) {
    const float* row = b + off[k];
    V bv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) load<VL>(bv[v], row + v * VL);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      V ar;
      broadcast<VL>(ar, a[r]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] += ar * bv[v];
    }
    a += MR;
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) store<VL>(c + r * ldc + v * VL, acc[r][v]);
}

// kernel_dot: c[r*ldc + q] += sum_{l < L} a[r*lda + l] * b[q*ldb + l] for r < dr, q < dc
// (kernel_dot_rows below, then the wrapper). L is a multiple of VL (callers pad with zeros). Rows past dr / dc repeat
// the last valid row (computed, not stored), so nothing is read out of range. The same with the rows of B given as DC
// pointers (all DC filled: the caller repeats the last valid row past dc, as kernel_dot does).
//
// Segments: with nseg > 1 the reduction runs over nseg segments of length L, segment g
// of A row r at a + r*lda + g*seg_a and of B row q at brows[q] + g*seg_b (the
// images of a batch in the padded weight gradient), all into the same
// accumulators: one lane reduction per call instead of one per segment.
template <class Cfg>
KILN_ALWAYS_INLINE void kernel_dot_rows(std::int64_t L, const float* __restrict a, std::int64_t lda,
                                        const float* const* brows, float* __restrict c, std::int64_t ldc, int dr,
                                        int dc, std::int64_t nseg = 1, std::int64_t seg_a = 0, std::int64_t seg_b = 0) {
  constexpr int VL = Cfg::VL, DR = Cfg::DR, DC = Cfg::DC;
  using V = typename Cfg::V;
  const float* ap[DR];
  const float* bp[DC];
#pragma GCC unroll 16
  for (int r = 0; r < DR; ++r) ap[r] = a + (r < dr ? r : dr - 1) * lda;
#pragma GCC unroll 16
  for (int q = 0; q < DC; ++q) bp[q] = brows[q];
  V acc[DR][DC];
#pragma GCC unroll 16
  for (int r = 0; r < DR; ++r)
#pragma GCC unroll 16
    for (int q = 0; q < DC; ++q) acc[r][q] = V{};
  for (std::int64_t g = 0; g < nseg; ++g) {
    for (std::int64_t l = 0; l < L; l += VL) {
      V av[DR];
#pragma GCC unroll 16
      for (int r = 0; r < DR; ++r) {  // through a scalar: an array element in an asm operand stays in memory
        V a1;
        load<VL>(a1, ap[r] + l);
        keep_in_register<VL>(a1);
        av[r] = a1;
      }
#pragma GCC unroll 16
      for (int q = 0; q < DC; ++q) {
        V bv;
        load<VL>(bv, bp[q] + l);
        keep_in_register<VL>(bv);
#pragma GCC unroll 16
        for (int r = 0; r < DR; ++r) acc[r][q] += av[r] * bv;
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < DR; ++r) ap[r] += seg_a;
#pragma GCC unroll 16
    for (int q = 0; q < DC; ++q) bp[q] += seg_b;
  }
  if constexpr (VL == 1) {
#pragma GCC unroll 16
    for (int r = 0; r < DR; ++r)
#pragma GCC unroll 16
      for (int q = 0; q < DC; ++q)
        if (r < dr && q < dc) c[r * ldc + q] += acc[r][q];
  } else {
    // Reduce VL accumulators at a time (zeros past DR*DC), then add into C.
    constexpr int total = DR * DC, groups = (total + VL - 1) / VL;
    alignas(64) float sums[groups * VL];
#pragma GCC unroll 4
    for (int g = 0; g < groups; ++g) {
      V x[VL];
#pragma GCC unroll 16
      for (int e = 0; e < VL; ++e) x[e] = g * VL + e < total ? acc[(g * VL + e) / DC][(g * VL + e) % DC] : V{};
      reduce_lanes<VL>(x);
      store<VL>(sums + g * VL, x[0]);
    }
    for (int r = 0; r < dr; ++r)
      for (int q = 0; q < dc; ++q) c[r * ldc + q] += sums[r * DC + q];
  }
}

template <class Cfg>
KILN_ALWAYS_INLINE void kernel_dot(std::int64_t L, const float* __restrict a, std::int64_t lda,
                                   const float* __restrict b, std::int64_t ldb, float* __restrict c, std::int64_t ldc,
                                   int dr, int dc) {
  const float* brows[Cfg::DC];
#pragma GCC unroll 16
  for (int q = 0; q < Cfg::DC; ++q) brows[q] = b + (q < dc ? q : dc - 1) * ldb;
  kernel_dot_rows<Cfg>(L, a, lda, brows, c, ldc, dr, dc);
}

}  // namespace kiln::cpu::simd
