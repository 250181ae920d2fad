#pragma once
// Tensor-core fragments: kiln::gpu::wmma is nvcuda::wmma (<mma.h>) under nvcc, and an emulation of
// the same API otherwise. Kernels write
//
//   namespace wmma = kiln::gpu::wmma;
//   wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
//   wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
//   wmma::fill_fragment(acc, 0.0f);
//   wmma::load_matrix_sync(a, tile, ldm);
//   for (int i = 0; i < a.num_elements; ++i) a.x[i] = wmma::__float_to_tf32(a.x[i]);
//   wmma::mma_sync(acc, a, b, acc);
//   wmma::store_matrix_sync(out, acc, ldm, wmma::mem_row_major);
//
// Supported (both modes): TF32 m16n16k8 (matrix_a/b element precision::tf32, stored as float) and
// BF16 m16n16k16 (__nv_bfloat16), with float accumulators; row_major / col_major operands.
//
// The emulation (GUIDE.md section 3): every thread of the warp holds the WHOLE tile in its
// fragment (num_elements = rows x cols instead of the GPU's share of it), so only code that treats
// fragment elements uniformly (fill, the tf32 rounding loop above, scaling) is portable, as on the
// GPU, where the element-to-lane mapping is unspecified. The load, store and mma are warp-collective:
// every lane of a full warp must call them with the same pointer, ldm and layout (checked: a
// partial warp, lanes that exited, lanes at different calls or with different arguments are
// errors naming the call site). load_matrix_sync reads memory when a lane arrives (before the
// warp rendezvous), so a tile read before the barrier that makes it complete shows as NaN/stale
// data; store_matrix_sync writes once, by lane 0, after the rendezvous. The pointer must be
// 32-byte aligned and ldm a multiple of 16 bytes, as the GPU requires. mma_sync multiplies
// exactly what tensor cores use: TF32 operands with their low 13 mantissa bits dropped (the
// hardware ignores them; round with __float_to_tf32 first, which is round-to-nearest, ties away
// from zero, cvt.rna.tf32.f32), BF16 operands exact, products summed into the fp32 accumulator
// in k order with fused multiply-adds (the GPU's summation order differs: compare with tolerances).
//
// Checking builds (KILN_EMU_CHECK): the whole-tile copies are left uninstrumented (a noinline
// helper outside the allowlist) and every lane instead reports the accesses nvcc's code for the
// same call makes in that lane (lane_accesses below, read off the sm_90 SASS of nvcc 13), to the
// race/init checks and the traffic counters; mma_sync counts its HMMA instructions and FLOPs.
#include "kiln/gpu/bfloat16.hpp"
#include "kiln/gpu/config.hpp"

#if KILN_GPU_REAL

#include <mma.h>

namespace kiln::gpu {
namespace wmma = nvcuda::wmma;
}  // namespace kiln::gpu

#else

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "kiln/gpu/emu_state.hpp"
#if KILN_EMU_CHECK
#include "kiln/gpu/emu_check.hpp"
#endif
#include "kiln/gpu/error.hpp"
#include "kiln/gpu/intrinsics.hpp"

// In checking builds the tile copies must stay out of the kernel functions that clang instruments.
#if KILN_EMU_CHECK
#define KILN_WMMA_UNINSTRUMENTED __attribute__((noinline))
#else
#define KILN_WMMA_UNINSTRUMENTED
#endif

namespace kiln::gpu::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

// Round to TF32 (10 explicit mantissa bits): to nearest, ties away from zero, like cvt.rna.tf32.f32.
// The result is a float whose low 13 mantissa bits are zero. NaN and infinity are returned unchanged.
inline float __float_to_tf32(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;
  u = (u + 0x1000u) & 0xffffe000u;  // adding half an ulp to the magnitude: ties go away from zero
  return std::bit_cast<float>(u);
}

namespace detail {

template <class T>
struct storage {
  using type = T;
};
template <>
struct storage<precision::tf32> {
  using type = float;
};

// The tile a fragment holds: matrix_a is M x K, matrix_b K x N, the accumulator M x N.
template <class Use, int M, int N, int K>
struct tile_dims;
template <int M, int N, int K>
struct tile_dims<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct tile_dims<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct tile_dims<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <class Use, int M, int N, int K, class T>
constexpr bool supported() {
  if constexpr (std::is_same_v<Use, accumulator>)
    return std::is_same_v<T, float> && M == 16 && N == 16 && (K == 8 || K == 16);
  else
    return (std::is_same_v<T, precision::tf32> && M == 16 && N == 16 && K == 8) ||
           (std::is_same_v<T, __nv_bfloat16> && M == 16 && N == 16 && K == 16);
}

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// The value a tensor core multiplies: TF32 drops the low 13 mantissa bits, BF16 is exact.
inline float tf32_operand(float v) { return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) & 0xffffe000u); }

// Checks that the whole warp calls `name` with the same arguments (one rendezvous of the warp).
inline void warp_uniform(const char* name, const void* pointer, std::uint64_t arguments, const emu::CallSite& where) {
  emu::EmulatedThread& self = emu::current(name);
  const emu::BlockContext& b = *self.block;
  const unsigned warp = self.linear_id / 32;
  if (emu::lanes_present(b, warp) != ~0u)
    throw Error(std::string("kiln::gpu::") + name + " at " + where.file + ":" + std::to_string(where.line) +
                ": wmma operations need a whole warp, but warp " + std::to_string(warp) + " of this " +
                std::to_string(b.thread_count) + "-thread block is partial");
  // One rendezvous: lane 0's (pointer, arguments) folded into 64 bits (a mismatch that folds to the
  // same bits is astronomically unlikely; the point is to catch lane-dependent arguments).
  const std::uint64_t key = reinterpret_cast<std::uint64_t>(pointer) ^ (arguments * 0x9e3779b97f4a7c15ull);
  if (emu::shuffle(name, emu::WarpOp::shfl_idx, ~0u, key, 0, 32, where) != key)
    throw Error(std::string("kiln::gpu::") + name + " at " + where.file + ":" + std::to_string(where.line) + ": lane " +
                std::to_string(self.linear_id % 32) + " of warp " + std::to_string(warp) +
                " passes a different pointer, ldm or layout than lane 0: the arguments of a wmma operation must be "
                "the same in every lane");
}

template <class E>
void check_memory(const char* name, const void* pointer, unsigned ldm, const emu::CallSite& where) {
  if (reinterpret_cast<std::uintptr_t>(pointer) % 32 != 0 || (ldm * sizeof(E)) % 16 != 0)
    throw Error(std::string("kiln::gpu::") + name + " at " + where.file + ":" + std::to_string(where.line) +
                ": the pointer must be 32-byte aligned and ldm a multiple of " + std::to_string(16 / sizeof(E)) +
                " elements (got address " + std::to_string(reinterpret_cast<std::uintptr_t>(pointer)) + ", ldm " +
                std::to_string(ldm) + ")");
}

// Copies between a tile in memory (element (r, c) at p[r * ldm + c], or p[c * ldm + r] when
// !row) and a whole-tile fragment array (x[r * cols + c]).
template <class E>
KILN_WMMA_UNINSTRUMENTED void tile_to_fragment(E* x, const E* p, unsigned ldm, int rows, int cols, bool row) {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) x[r * cols + c] = row ? p[r * ldm + c] : p[c * ldm + r];
}
KILN_WMMA_UNINSTRUMENTED inline void fragment_to_tile(float* p, const float* x, unsigned ldm, int rows, int cols,
                                                      bool row) {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) (row ? p[r * ldm + c] : p[c * ldm + r]) = x[r * cols + c];
}

// One memory access of a lane in a fragment load or store, in memory coordinates: `count`
// consecutive elements from element `element` of memory line `line` (address p + line * ldm +
// element; a line is a row of a row-major tile, a column of a col-major one).
struct LaneAccess {
  unsigned line, element, count;
};

// The accesses nvcc 13 emits for lane `lane` (g = lane / 4, t = lane % 4), one warp-level
// instruction per index i < accesses (sm_90 SASS of load/store_matrix_sync; the same sets of
// elements as the mma.m16n8k8 / m16n8k16 fragments):
//   TF32 16x8 A row-major / 8x16 B col-major (16 lines of 8): 4 x LD.32 at (g + 8a, t + 4b);
//   TF32 A col-major / B row-major (8 lines of 16):           4 x LD.32 at (t + 4a, g + 8b);
//   BF16 16x16 A or B, either layout (16 lines of 16):         4 x LD.32 of the pair (g + 8a, 2t + 8b ..+1)
//                                                              (then transposed in registers where needed);
//   accumulator 16x16 mem_row_major load and store:           4 x LD/ST.64 of the pair (g + 8a, 2t + 8b ..+1);
//   accumulator mem_col_major:                                 8 x LD/ST.32 at (2t + e + 8b, g + 8a).
// Verified in SASS: TF32 A/B in both layouts, accumulator row-major load/store and col-major store,
// BF16 row-major A/B; the others follow the same pattern by symmetry (an assumption).
enum class FragmentKind { tf32_16_lines, tf32_8_lines, bf16, accumulator_row, accumulator_col };

inline unsigned lane_accesses(FragmentKind kind, unsigned lane, LaneAccess (&out)[8]) {
  const unsigned g = lane / 4, t = lane % 4;
  switch (kind) {
    case FragmentKind::tf32_16_lines:
      for (unsigned i = 0; i < 4; ++i) out[i] = {g + 8 * (i % 2), t + 4 * (i / 2), 1};
      return 4;
    case FragmentKind::tf32_8_lines:
      for (unsigned i = 0; i < 4; ++i) out[i] = {t + 4 * (i % 2), g + 8 * (i / 2), 1};
      return 4;
    case FragmentKind::bf16:
    case FragmentKind::accumulator_row:
      for (unsigned i = 0; i < 4; ++i) out[i] = {g + 8 * (i % 2), 2 * t + 8 * (i / 2), 2};
      return 4;
    case FragmentKind::accumulator_col:
      for (unsigned i = 0; i < 8; ++i) out[i] = {2 * t + i % 2 + 8 * (i / 4), g + 8 * (i / 2 % 2), 1};
      return 8;
  }
  return 0;
}

template <class Use, class T, class Layout>
constexpr FragmentKind operand_kind() {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return FragmentKind::bf16;
  else if constexpr (std::is_same_v<Use, matrix_a> == std::is_same_v<Layout, row_major>)
    return FragmentKind::tf32_16_lines;
  else
    return FragmentKind::tf32_8_lines;
}

#if KILN_EMU_CHECK
// Reports this lane's accesses of a fragment load or store to the checker and the counters: access
// i is one warp-level instruction (its site: the call site and i).
template <class E>
void report_lane_accesses(FragmentKind kind, const E* p, unsigned ldm, bool store, const emu::CallSite& where) {
  LaneAccess accesses[8];
  const unsigned n = lane_accesses(kind, emu::current("wmma").linear_id % 32, accesses);
  // Tagged with the top bit: never an instruction address, nor a cp.async site (emu_check.hpp).
  const std::uintptr_t site =
      (std::uintptr_t{1} << 63) | (reinterpret_cast<std::uintptr_t>(where.file) * 31 + where.line) << 4;
  for (unsigned i = 0; i < n; ++i)
    emu::on_kernel_access(reinterpret_cast<std::uintptr_t>(p + accesses[i].line * ldm + accesses[i].element),
                          static_cast<unsigned>(accesses[i].count * sizeof(E)), store,
                          reinterpret_cast<const void*>(site + i));
}
#endif

}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(detail::supported<Use, M, N, K, T>(),
                "kiln's wmma emulation supports tf32 m16n16k8 and __nv_bfloat16 m16n16k16 with float accumulators");
  static_assert(std::is_same_v<Use, accumulator>
                    ? std::is_void_v<Layout>
                    : (std::is_same_v<Layout, row_major> || std::is_same_v<Layout, col_major>),
                "matrix_a / matrix_b fragments take row_major or col_major; accumulators take no layout");
  using element_type = T;
  using storage_element_type = typename detail::storage<T>::type;
  static constexpr int rows = detail::tile_dims<Use, M, N, K>::rows;
  static constexpr int cols = detail::tile_dims<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;  // row-major: x[r * cols + c]
  storage_element_type x[num_elements];
};

template <class Use, int M, int N, int K, class T, class Layout, class V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& value) {
  using S = typename fragment<Use, M, N, K, T, Layout>::storage_element_type;
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = static_cast<S>(value);
}

// matrix_a / matrix_b: element (r, c) of the tile is p[r * ldm + c] (row_major) or p[c * ldm + r].
template <class Use, int M, int N, int K, class T, class Layout, class P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm,
                      emu::CallSite where = emu::CallSite::current()) {
  static_assert(!std::is_same_v<Use, accumulator>,
                "accumulator loads take a layout_t: load_matrix_sync(f, p, ldm, layout)");
  using S = typename fragment<Use, M, N, K, T, Layout>::storage_element_type;
  static_assert(std::is_same_v<std::remove_cv_t<P>, S>,
                "load_matrix_sync: the pointer's type must be the fragment's storage type");
  detail::check_memory<S>("wmma::load_matrix_sync", p, ldm, where);
  constexpr bool row = std::is_same_v<Layout, row_major>;
#if KILN_EMU_CHECK
  detail::report_lane_accesses(detail::operand_kind<Use, T, Layout>(), p, ldm, false, where);
#endif
  detail::tile_to_fragment<S>(f.x, p, ldm, f.rows, f.cols, row);
  detail::warp_uniform("wmma::load_matrix_sync", p, std::uint64_t{ldm} << 8 | (row ? 1 : 2), where);
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t layout,
                      emu::CallSite where = emu::CallSite::current()) {
  detail::check_memory<float>("wmma::load_matrix_sync", p, ldm, where);
  const bool row = layout == mem_row_major;
#if KILN_EMU_CHECK
  detail::report_lane_accesses(row ? detail::FragmentKind::accumulator_row : detail::FragmentKind::accumulator_col, p,
                               ldm, false, where);
#endif
  detail::tile_to_fragment<float>(f.x, p, ldm, f.rows, f.cols, row);
  detail::warp_uniform("wmma::load_matrix_sync", p, std::uint64_t{ldm} << 8 | (row ? 3 : 4), where);
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout,
                       emu::CallSite where = emu::CallSite::current()) {
  detail::check_memory<float>("wmma::store_matrix_sync", p, ldm, where);
  const bool row = layout == mem_row_major;
  detail::warp_uniform("wmma::store_matrix_sync", p, std::uint64_t{ldm} << 8 | (row ? 5 : 6), where);
#if KILN_EMU_CHECK
  detail::report_lane_accesses(row ? detail::FragmentKind::accumulator_row : detail::FragmentKind::accumulator_col, p,
                               ldm, true, where);
#endif
  if (emu::current("wmma::store_matrix_sync").linear_id % 32 != 0) return;  // lane 0 writes the tile once
  detail::fragment_to_tile(p, f.x, ldm, f.rows, f.cols, row);
}

// d = a * b + c (d may be c).
template <int M, int N, int K, class T, class LayoutA, class LayoutB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LayoutA>& a,
              const fragment<matrix_b, M, N, K, T, LayoutB>& b, const fragment<accumulator, M, N, K, float>& c,
              bool satf = false, emu::CallSite where = emu::CallSite::current()) {
  (void)satf;
  detail::warp_uniform("wmma::mma_sync", nullptr, 7, where);
#if KILN_EMU_CHECK  // nvcc: 4 HMMA.1684 (TF32 m16n16k8) or 2 HMMA.16816 (BF16 m16n16k16) per call
  if (emu::current("wmma::mma_sync").linear_id % 32 == 0)
    emu::profile_tensor_op(std::is_same_v<T, precision::tf32> ? 4 : 2, 2.0 * M * N * K);
#endif
  float av[M * K], bv[K * N];
  for (int i = 0; i < M * K; ++i) {
    const float v = detail::to_float(a.x[i]);
    av[i] = std::is_same_v<T, precision::tf32> ? detail::tf32_operand(v) : v;
  }
  for (int i = 0; i < K * N; ++i) {
    const float v = detail::to_float(b.x[i]);
    bv[i] = std::is_same_v<T, precision::tf32> ? detail::tf32_operand(v) : v;
  }
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float sum = c.x[i * N + j];
      for (int k = 0; k < K; ++k) sum = std::fma(av[i * K + k], bv[k * N + j], sum);
      out[i * N + j] = sum;
    }
  for (int i = 0; i < M * N; ++i) d.x[i] = out[i];
}

}  // namespace kiln::gpu::wmma

#undef KILN_WMMA_UNINSTRUMENTED

#endif
