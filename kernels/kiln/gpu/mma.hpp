#pragma once
// Warp-level tensor-core instructions with the PTX ISA's per-lane fragment layouts (the level
// below wmma): mma.sync.aligned m16n8k8 TF32 and m16n8k16 BF16 (row.col, f32 accumulate),
// ldmatrix.sync.aligned.m8n8 .x1/.x2/.x4 [.trans] .shared.b16, cvt.rna.tf32.f32 and cvt.rn.bf16x2.f32.
//
//   namespace mma = kiln::gpu::mma;
//   std::uint32_t a[4], b[2];                 // this lane's registers, in the layouts below
//   float acc[4] = {};
//   mma::ldmatrix_x4(a, &tile[row][col]);     // lane l passes the address of one 16-byte row
//   mma::mma_tf32_m16n8k8(acc, a, b, acc);    // acc += A(16x8) * B(8x8)
//
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k8 / m16n8k16"), with
// g = lane / 4 (groupID) and t = lane % 4 (threadID_in_group):
//   TF32 m16n8k8   A 16x8:  a0 (g, t)  a1 (g+8, t)  a2 (g, t+4)  a3 (g+8, t+4)
//                  B 8x8:   b0 (t, g)  b1 (t+4, g)                      [row = k, col = n]
//   BF16 m16n8k16  A 16x16: reg i holds two bf16, low half first: reg0 (g, 2t..2t+1)
//                           reg1 (g+8, 2t..) reg2 (g, 2t+8..) reg3 (g+8, 2t+8..)
//                  B 16x8:  reg0 (2t..2t+1, g)  reg1 (2t+8..2t+9, g)   [row = k, col = n]
//   C/D (both)     16x8:    c0 (g, 2t)  c1 (g, 2t+1)  c2 (g+8, 2t)  c3 (g+8, 2t+1)
//   ldmatrix       lanes 8i..8i+7 give the row addresses of matrix i (8 rows of 16 bytes, 16-byte
//                  aligned; .x1 reads lanes 0-7's addresses, .x2 lanes 0-15, .x4 all); register i
//                  of lane l receives matrix i's 32-bit word l % 4 of row l / 4 (16-bit elements
//                  2(l%4), 2(l%4)+1). With .trans it receives the 16-bit elements (2(l%4), l/4) and
//                  (2(l%4)+1, l/4), i.e. the matrix transposed. For 32-bit data (TF32) the plain
//                  form gives lane l the float (l/4, l%4) of an 8x4 block: exactly the TF32 A
//                  (and col-major B) layout; there is no 32-bit .trans.
//
// TF32 operands: the tensor cores read only the sign, exponent and 10 high mantissa bits of each
// 32-bit register (the low 13 bits are ignored, i.e. truncation); round beforehand with
// float_to_tf32 (cvt.rna.tf32.f32: to nearest, ties away from zero) where that matters.
//
// Under nvcc these are inline PTX (sm_80+). In the emulator they are warp collectives: every
// lane of a whole warp must call them (checked, naming the call site); each lane publishes its
// registers (or, for ldmatrix, the 16 bytes at its row address, read when it arrives, like a
// load), the warp meets, and each lane computes its own result registers from all 32 lanes'
// operands per the layouts above; a second meeting keeps the operands alive until every lane
// has read them. The mma sums c + a(k=0)b(k=0) + ... in k order with fused multiply-adds
// (the hardware's order and intermediate precision differ: compare results with tolerances;
// operands exact in TF32/BF16 with small sums are exact in both).
// Checking builds (KILN_EMU_CHECK): ldmatrix reports each used lane's 16-byte row read (one
// warp-level request: 1, 2 or 4 wavefronts when conflict-free) and every mma one HMMA.
#include <cstdint>

#include "kiln/gpu/config.hpp"
#include "kiln/gpu/keywords.hpp"

#if !KILN_GPU_REAL
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#include "kiln/gpu/bfloat16.hpp"
#include "kiln/gpu/emu_state.hpp"
#if KILN_EMU_CHECK
#include "kiln/gpu/emu_check.hpp"
#endif
#include "kiln/gpu/error.hpp"
#include "kiln/gpu/intrinsics.hpp"
#endif

namespace kiln::gpu::mma {

#if KILN_GPU_REAL

// cvt.rna.tf32.f32: the TF32 value of x (to nearest, ties away from zero) as the 32-bit register
// the mma takes.
__device__ __forceinline__ std::uint32_t float_to_tf32(float x) {
  std::uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

// cvt.rn.bf16x2.f32: lo and hi rounded to BF16 (to nearest, ties to even), lo in the low half:
// one register of a BF16 mma operand.
__device__ __forceinline__ std::uint32_t pack_bf16x2(float lo, float hi) {
  std::uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// d = a * b + c, A 16x8 row-major, B 8x8 col-major, TF32 operands, f32 accumulators.
__device__ __forceinline__ void mma_tf32_m16n8k8(float (&d)[4], const std::uint32_t (&a)[4],
                                                 const std::uint32_t (&b)[2], const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

// d = a * b + c, A 16x16 row-major, B 16x8 col-major, BF16 operands (two per register), f32 accumulators.
__device__ __forceinline__ void mma_bf16_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4],
                                                  const std::uint32_t (&b)[2], const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x1(std::uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x2(std::uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(std::uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(std::uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}

#else               // the emulator

inline std::uint32_t float_to_tf32(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return u;  // NaN and infinity unchanged
  return (u + 0x1000u) & 0xffffe000u;              // half an ulp added to the magnitude: ties away from zero
}

inline std::uint32_t pack_bf16x2(float lo, float hi) {
  return static_cast<std::uint32_t>(__float2bfloat16_rn(lo).bits) |
         static_cast<std::uint32_t>(__float2bfloat16_rn(hi).bits) << 16;
}

namespace detail {

using emu::CallSite;

// The value a tensor core multiplies: the low 13 bits of a TF32 register are ignored.
inline float tf32_operand(std::uint32_t r) { return std::bit_cast<float>(r & 0xffffe000u); }
inline float bf16_low(std::uint32_t r) { return std::bit_cast<float>(r << 16); }
inline float bf16_high(std::uint32_t r) { return std::bit_cast<float>(r & 0xffff0000u); }

[[noreturn]] inline void fail(const char* name, const CallSite& where, const std::string& what) {
  throw Error(std::string("kiln::gpu::mma::") + name + " at " + where.file + ":" + std::to_string(where.line) + ": " +
              what);
}

// One warp-collective exchange: every lane of the (whole) warp publishes `mine`; `compute` then
// runs in each lane with the 32 lanes' published values (indexed by lane). The first meeting
// makes every value visible, the second keeps them alive (they live on each lane's stack) until
// every lane has computed. Both meetings carry the address of the lane's value, so a lane that
// arrives at the second meeting does not change what slower lanes read.
template <class T, class Compute>
void warp_exchange(const char* name, const T& mine, Compute&& compute, const CallSite& where) {
  emu::EmulatedThread& self = emu::current(name);
  emu::BlockContext& b = *self.block;
  const unsigned warp = self.linear_id / 32;
  if (emu::lanes_present(b, warp) != ~0u)
    fail(name, where,
         "mma.sync and ldmatrix need a whole warp, but warp " + std::to_string(warp) + " of this " +
             std::to_string(b.thread_count) + "-thread block is partial");
  const auto address = reinterpret_cast<std::uint64_t>(&mine);
  const int lane = static_cast<int>(self.linear_id % 32);
  emu::shuffle(name, emu::WarpOp::shfl_idx, ~0u, address, lane, 32, where);
  const T* lanes[32];
  {
    [[maybe_unused]] emu::BlockLock lock =
        emu::lock_block(b);  // the requests are guarded by the block in OS-thread mode
    for (unsigned l = 0; l < 32; ++l) lanes[l] = reinterpret_cast<const T*>(b.threads[warp * 32 + l].request.value);
  }
  compute(lanes);
  emu::shuffle(name, emu::WarpOp::shfl_idx, ~0u, address, lane, 32, where);
}

struct MmaOperands {
  std::uint32_t a[4], b[2];
};

// D = A * B + C for one lane: element (row, col) of A, B from the lanes that hold them.
template <bool Bf16>
void mma_lane(const char* name, float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
              const float (&c)[4], const CallSite& where) {
#if KILN_EMU_CHECK  // one HMMA.1688.F32.TF32 or HMMA.16816.F32.BF16 per warp
  if (emu::current(name).linear_id % 32 == 0) emu::profile_tensor_op(1, Bf16 ? 2.0 * 16 * 8 * 16 : 2.0 * 16 * 8 * 8);
#endif
  const MmaOperands mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
  const float c_in[4] = {c[0], c[1], c[2], c[3]};  // d may alias c
  warp_exchange(
      name, mine,
      [&](const MmaOperands* const(&lanes)[32]) {
        const unsigned lane = emu::current(name).linear_id % 32, g = lane / 4, t = lane % 4;
        // A(row, k) and B(k, col) by the layouts in the header comment.
        auto a_at = [&](unsigned row, unsigned k) -> float {
          if constexpr (Bf16) {
            const unsigned reg = (row >= 8 ? 1u : 0u) + (k >= 8 ? 2u : 0u), kk = k % 8;
            const std::uint32_t r = lanes[(row % 8) * 4 + kk / 2]->a[reg];
            return kk % 2 == 0 ? bf16_low(r) : bf16_high(r);
          } else {
            const unsigned reg = (row >= 8 ? 1u : 0u) + (k >= 4 ? 2u : 0u);
            return tf32_operand(lanes[(row % 8) * 4 + k % 4]->a[reg]);
          }
        };
        auto b_at = [&](unsigned k, unsigned col) -> float {
          if constexpr (Bf16) {
            const unsigned reg = k >= 8 ? 1u : 0u, kk = k % 8;
            const std::uint32_t r = lanes[col * 4 + kk / 2]->b[reg];
            return kk % 2 == 0 ? bf16_low(r) : bf16_high(r);
          } else {
            return tf32_operand(lanes[col * 4 + k % 4]->b[k >= 4 ? 1 : 0]);
          }
        };
        constexpr unsigned depth = Bf16 ? 16 : 8;
        for (unsigned i = 0; i < 4; ++i) {
          const unsigned row = g + (i >= 2 ? 8 : 0), col = 2 * t + i % 2;
          float sum = c_in[i];
          for (unsigned k = 0; k < depth; ++k) sum = std::fma(a_at(row, k), b_at(k, col), sum);
          d[i] = sum;
        }
      },
      where);
}

struct MatrixRow {
  std::uint32_t words[4];  // the 16 bytes at the lane's row address (unused lanes: zero)
};

// A lane's 16-byte row, read out of line: inlined into a kernel, the read would be instrumented
// as the kernel's own load (clang's trace-loads runs after inlining) and counted beside the row
// read reported below (as cp.async's poisoning was: async_copy.hpp).
[[gnu::noinline]] inline void read_matrix_row(std::uint32_t (&words)[4], const void* row_address) {
  std::memcpy(words, row_address, 16);
}

template <int Count, bool Trans>
void ldmatrix_lane(const char* name, std::uint32_t (&r)[Count], const void* row_address, const CallSite& where) {
  static_assert(Count == 1 || Count == 2 || Count == 4, "ldmatrix loads 1, 2 or 4 matrices");
  const unsigned lane = emu::current(name).linear_id % 32;
  MatrixRow mine{};
  if (lane < 8u * Count) {  // only these lanes' addresses are read
    if (reinterpret_cast<std::uintptr_t>(row_address) % 16 != 0)
      fail(name, where,
           "lane " + std::to_string(lane) + " passes row address " +
               std::to_string(reinterpret_cast<std::uintptr_t>(row_address)) +
               ", which is not 16-byte aligned (misaligned shared address on the GPU)");
#if KILN_EMU_CHECK  // the row's 16 bytes, for the checker and the counters
    const std::uintptr_t site =
        (std::uintptr_t{1} << 63) | (reinterpret_cast<std::uintptr_t>(where.file) * 31 + where.line) << 4;
    emu::on_kernel_access(reinterpret_cast<std::uintptr_t>(row_address), 16, false,
                          reinterpret_cast<const void*>(site));
#endif
    read_matrix_row(mine.words, row_address);  // read on arrival, like a load
  }
  warp_exchange(
      name, mine,
      [&](const MatrixRow* const(&lanes)[32]) {
        for (int i = 0; i < Count; ++i) {
          const MatrixRow* const* matrix = lanes + 8 * i;  // matrix i's rows come from lanes 8i..8i+7
          if constexpr (!Trans) {
            r[i] = matrix[lane / 4]->words[lane % 4];
          } else {
            // 16-bit element (row, col) of the matrix: halfword col of row `row`.
            auto half = [&](unsigned row, unsigned col) -> std::uint32_t {
              return (matrix[row]->words[col / 2] >> (16 * (col % 2))) & 0xffffu;
            };
            r[i] = half(2 * (lane % 4), lane / 4) | half(2 * (lane % 4) + 1, lane / 4) << 16;
          }
        }
      },
      where);
}

}  // namespace detail

inline void mma_tf32_m16n8k8(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
                             const float (&c)[4], emu::CallSite where = emu::CallSite::current()) {
  detail::mma_lane<false>("mma_tf32_m16n8k8", d, a, b, c, where);
}
inline void mma_bf16_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
                              const float (&c)[4], emu::CallSite where = emu::CallSite::current()) {
  detail::mma_lane<true>("mma_bf16_m16n8k16", d, a, b, c, where);
}

inline void ldmatrix_x1(std::uint32_t (&r)[1], const void* row, emu::CallSite where = emu::CallSite::current()) {
  detail::ldmatrix_lane<1, false>("ldmatrix_x1", r, row, where);
}
inline void ldmatrix_x2(std::uint32_t (&r)[2], const void* row, emu::CallSite where = emu::CallSite::current()) {
  detail::ldmatrix_lane<2, false>("ldmatrix_x2", r, row, where);
}
inline void ldmatrix_x4(std::uint32_t (&r)[4], const void* row, emu::CallSite where = emu::CallSite::current()) {
  detail::ldmatrix_lane<4, false>("ldmatrix_x4", r, row, where);
}
inline void ldmatrix_x1_trans(std::uint32_t (&r)[1], const void* row, emu::CallSite where = emu::CallSite::current()) {
  detail::ldmatrix_lane<1, true>("ldmatrix_x1_trans", r, row, where);
}
inline void ldmatrix_x2_trans(std::uint32_t (&r)[2], const void* row, emu::CallSite where = emu::CallSite::current()) {
  detail::ldmatrix_lane<2, true>("ldmatrix_x2_trans", r, row, where);
}
inline void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* row, emu::CallSite where = emu::CallSite::current()) {
  detail::ldmatrix_lane<4, true>("ldmatrix_x4_trans", r, row, where);
}

#endif

}  // namespace kiln::gpu::mma
