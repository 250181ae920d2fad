#pragma once
// Warpgroup-level tensor-core instructions of sm_90a (Hopper's wgmma), with both operands in shared
// memory: wgmma.mma_async m64nNk8 TF32 and m64nNk16 BF16 (K-major A and B, f32 accumulators,
// N = 64, 128 or 256), wgmma.fence / commit_group / wait_group, and fence.proxy.async.shared::cta.
// The four warps of a warpgroup (warps 4i..4i+3 of the block) issue one instruction together; it
// reads its operands from shared memory through matrix descriptors, asynchronously:
//
//   namespace wg = kiln::gpu::wgmma;
//   // cp.async A (64 x 8 floats per k step) and B (N x 8) into the canonical layout, wait, then:
//   wg::fence_proxy_async();           // this thread's shared writes visible to the tensor cores
//   __syncthreads();
//   wg::fence();                       // before the first mma_async after touching the accumulators
//   wg::mma_tf32<128>(d, wg::descriptor(a_tile, 0, 1024, wg::Swizzle::bytes128),
//                     wg::descriptor(b_tile, 0, 1024, wg::Swizzle::bytes128), accumulate);
//   wg::commit_group();
//   wg::wait_group<0>(d);              // the group has completed: d holds A * B (+ d)
//
// Shared-memory layouts (PTX ISA "Matrix Descriptor Format" and the canonical K-major layouts; CUTLASS's
// GmmaDescriptor). A descriptor holds the start address, the leading and stride byte offsets (LBO,
// SBO) and the swizzle mode. Each operand row (A: m, B: n) holds the instruction's 32 bytes of K
// (8 TF32 or 16 BF16 values) as two 16-byte chunks; rows come in groups of 8, SBO bytes apart:
//   Swizzle::none      row r's chunk c at start + (r/8)*SBO + c*LBO + (r%8)*16
//   Swizzle::bytes32   at start + (r/8)*SBO + (r%8)*32  + c*16, then address bit 4 ^= bit 7
//   Swizzle::bytes64   at start + (r/8)*SBO + (r%8)*64  + c*16, then bits 4-5 ^= bits 7-8
//   Swizzle::bytes128  at start + (r/8)*SBO + (r%8)*128 + c*16, then bits 4-6 ^= bits 7-9
// (the XOR is on the shared-memory address: a swizzled tile starts 256/512/1024-byte aligned, and a
// k step inside one 64- or 128-byte row advances the start by 32 bytes: advance()). LBO is unused by
// the swizzled K-major layouts. The base-offset field stays 0.
// Accumulators: warp w of the warpgroup holds rows 16w..16w+15; its lane (g = lane/4, t = lane%4)
// holds d[4j] = (16w+g, 8j+2t), d[4j+1] = (16w+g, 8j+2t+1), d[4j+2] = (16w+g+8, 8j+2t),
// d[4j+3] = (16w+g+8, 8j+2t+1) for j < N/8 (CUTLASS's CLayout_64xN).
//
// Under nvcc these are inline PTX, compiled only for sm_90a (arch-specific: -arch=sm_90a,
// __CUDA_ARCH_FEAT_SM90_ALL); any other target compiles them to a trap, so a kernel using them must
// only be launched where sm_90a code runs. In the emulator each thread's part of the product is
// computed by the wait_group that covers it (like cp.async's copies), from shared memory as it is
// then, and checked: the whole warp must issue it with the same descriptors, after a wgmma.fence
// since its last wait (or the start), in dynamic shared memory, from a swizzled start aligned to its
// pattern; the shared words it reads must not change between the issue and the wait; a thread must
// not return with operations not waited for. Checking builds (KILN_EMU_CHECK) also race-check the
// reads as the issuing warp's and require every byte read to have been written before a
// fence.proxy.async of its writer (emu_check.hpp), and count them (one conflict-free request per
// warp: its 16 A rows and a quarter of B) with the tensor FLOPs and one tensor-core instruction (an
// HGMMA, in the counters' hmma) per warp. The emulator places dynamic shared
// memory at shared address 16, not 1024-aligned, so a kernel that does not align its swizzled tiles
// itself (as it must where static __shared__ variables come first) fails there too.
// Sums: c + a(k=0)b(k=0) + ... in k order with fused multiply-adds (as mma.hpp; compare with
// tolerances, or with operands exact in TF32/BF16 and small sums, exactly). TF32 operands: the low 13
// bits of each 32-bit value are ignored (truncation), as in mma.sync.
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "kiln/gpu/config.hpp"
#include "kiln/gpu/device.hpp"
#include "kiln/gpu/dynamic_shared.hpp"
#include "kiln/gpu/keywords.hpp"
#include "kiln/gpu/launch.hpp"
#include "kiln/gpu/memory.hpp"

#if !KILN_GPU_REAL
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kiln/gpu/emu_state.hpp"
#if KILN_EMU_CHECK
#include "kiln/gpu/emu_check.hpp"
#endif
#include "kiln/gpu/error.hpp"
#include "kiln/gpu/mma.hpp"
#endif

namespace kiln::gpu::wgmma {

enum class Swizzle : std::uint32_t { none = 0, bytes128 = 1, bytes64 = 2, bytes32 = 3 };

// The 64-bit matrix descriptor: start address, LBO and SBO in 16-byte units (14 bits each, at bits
// 0, 16 and 32), base offset 0 (bits 49-51), swizzle mode at bits 62-63.
__host__ __device__ constexpr std::uint64_t encode_descriptor(std::uint32_t start, std::uint32_t leading_bytes,
                                                              std::uint32_t stride_bytes, Swizzle swizzle) {
  return std::uint64_t{(start >> 4) & 0x3fffu} | std::uint64_t{(leading_bytes >> 4) & 0x3fffu} << 16 |
         std::uint64_t{(stride_bytes >> 4) & 0x3fffu} << 32 | std::uint64_t{static_cast<std::uint32_t>(swizzle)} << 62;
}
// The descriptor of the same layout `bytes` (a multiple of 16) further on: the next k step inside a
// swizzled row (32 bytes), or the next tile.
__host__ __device__ constexpr std::uint64_t advance(std::uint64_t descriptor, std::uint32_t bytes) {
  return descriptor + (bytes >> 4);
}

#if KILN_GPU_REAL

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KILN_WGMMA_SM90A 1
#else
#define KILN_WGMMA_SM90A 0
#endif

__device__ __forceinline__ std::uint32_t shared_address(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ std::uint64_t descriptor(const void* start, std::uint32_t leading_bytes,
                                                    std::uint32_t stride_bytes, Swizzle swizzle) {
  return encode_descriptor(shared_address(start), leading_bytes, stride_bytes, swizzle);
}

namespace detail {
template <class... T>
__device__ __forceinline__ void unavailable(T&&...) {
  __trap();  // wgmma exists on sm_90a only: this kernel was launched where it does not
}
}  // namespace detail

__device__ __forceinline__ void fence() {
#if KILN_WGMMA_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
  detail::unavailable();
#endif
}
__device__ __forceinline__ void commit_group() {
#if KILN_WGMMA_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
  detail::unavailable();
#endif
}
// Keeps the compiler from moving accesses of an accumulator register across a wgmma instruction
// (the asm of wait_group does not name the registers the completed operations wrote).
__device__ __forceinline__ void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }
template <int M>
__device__ __forceinline__ void fence_operands(float (&d)[M]) {
  KILN_UNROLL
  for (int i = 0; i < M; ++i) fence_operand(d[i]);
}
// wgmma.wait_group N: every committed group but the newest N has completed; then `d`, written by
// them, may be read.
template <int N, int M>
__device__ __forceinline__ void wait_group(float (&d)[M]) {
  static_assert(N >= 0 && N <= 7, "wgmma.wait_group takes 0..7");
#if KILN_WGMMA_SM90A
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
  fence_operands(d);
#else
  detail::unavailable(d);
#endif
}
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
  detail::unavailable();
#endif
}

__device__ __forceinline__ void mma_tf32_m64n64k8(float (&d)[32], std::uint64_t a, std::uint64_t b, bool accumulate) {
#if KILN_WGMMA_SM90A
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)));
#else
  detail::unavailable(d, a, b, accumulate);
#endif
}

__device__ __forceinline__ void mma_tf32_m64n128k8(float (&d)[64], std::uint64_t a, std::uint64_t b, bool accumulate) {
#if KILN_WGMMA_SM90A
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)));
#else
  detail::unavailable(d, a, b, accumulate);
#endif
}

__device__ __forceinline__ void mma_tf32_m64n256k8(float (&d)[128], std::uint64_t a, std::uint64_t b, bool accumulate) {
#if KILN_WGMMA_SM90A
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63,"
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79,"
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95,"
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111,"
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, "
      "1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]),
        "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]),
        "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]),
        "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]),
        "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]),
        "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]),
        "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]),
        "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]),
        "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)));
#else
  detail::unavailable(d, a, b, accumulate);
#endif
}

__device__ __forceinline__ void mma_bf16_m64n64k16(float (&d)[32], std::uint64_t a, std::uint64_t b, bool accumulate) {
#if KILN_WGMMA_SM90A
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)));
#else
  detail::unavailable(d, a, b, accumulate);
#endif
}

__device__ __forceinline__ void mma_bf16_m64n128k16(float (&d)[64], std::uint64_t a, std::uint64_t b, bool accumulate) {
#if KILN_WGMMA_SM90A
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)));
#else
  detail::unavailable(d, a, b, accumulate);
#endif
}

__device__ __forceinline__ void mma_bf16_m64n256k16(float (&d)[128], std::uint64_t a, std::uint64_t b,
                                                    bool accumulate) {
#if KILN_WGMMA_SM90A
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63,"
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79,"
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95,"
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111,"
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, "
      "1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]),
        "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]),
        "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]),
        "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]),
        "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]),
        "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]),
        "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]),
        "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]),
        "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)));
#else
  detail::unavailable(d, a, b, accumulate);
#endif
}

// D (64 x N, this thread's N/2 values) = A * B (+ D where `accumulate`).
template <int N>
__device__ __forceinline__ void mma_tf32(float (&d)[N / 2], std::uint64_t a, std::uint64_t b, bool accumulate) {
  static_assert(N == 64 || N == 128 || N == 256, "N = 64, 128 or 256");
  if constexpr (N == 64)
    mma_tf32_m64n64k8(d, a, b, accumulate);
  else if constexpr (N == 128)
    mma_tf32_m64n128k8(d, a, b, accumulate);
  else
    mma_tf32_m64n256k8(d, a, b, accumulate);
}
template <int N>
__device__ __forceinline__ void mma_bf16(float (&d)[N / 2], std::uint64_t a, std::uint64_t b, bool accumulate) {
  static_assert(N == 64 || N == 128 || N == 256, "N = 64, 128 or 256");
  if constexpr (N == 64)
    mma_bf16_m64n64k16(d, a, b, accumulate);
  else if constexpr (N == 128)
    mma_bf16_m64n128k16(d, a, b, accumulate);
  else
    mma_bf16_m64n256k16(d, a, b, accumulate);
}

#else  // the emulator

namespace detail {

using emu::CallSite;

// Dynamic shared memory's emulated shared address: deliberately not 1024-aligned (header comment).
inline constexpr std::uint32_t dynamic_shared_address = 16;

[[noreturn]] inline void fail(const char* name, const CallSite& where, const std::string& what) {
  throw Error(std::string("kiln::gpu::wgmma::") + name + " at " + where.file + ":" + std::to_string(where.line) + ": " +
              what);
}

struct Layout {
  std::uint32_t start = 0, leading = 0, stride = 0, pitch = 16, mask = 0, swizzle = 0, base_offset = 0;
};
inline Layout layout_of(std::uint64_t d) {
  Layout l;
  l.start = static_cast<std::uint32_t>(d & 0x3fffu) << 4;
  l.leading = static_cast<std::uint32_t>(d >> 16 & 0x3fffu) << 4;
  l.stride = static_cast<std::uint32_t>(d >> 32 & 0x3fffu) << 4;
  l.base_offset = static_cast<std::uint32_t>(d >> 49 & 7u);
  l.swizzle = static_cast<std::uint32_t>(d >> 62);
  l.pitch = l.swizzle == 0 ? 16 : l.swizzle == 1 ? 128 : l.swizzle == 2 ? 64 : 32;
  l.mask = l.pitch / 16 - 1;
  return l;
}
// The shared address of byte `kb` (0..31) of operand row `row`.
inline std::uint32_t element_address(const Layout& l, unsigned row, unsigned kb) {
  if (l.swizzle == 0) return l.start + row / 8 * l.stride + kb / 16 * l.leading + row % 8 * 16 + kb % 16;
  const std::uint32_t a = l.start + row / 8 * l.stride + row % 8 * l.pitch + kb;
  return a ^ ((a >> 7 & l.mask) << 4);
}

inline void check_layout(const char* name, const char* which, std::uint64_t d, unsigned rows, std::size_t shared_bytes,
                         const CallSite& where) {
  const Layout l = layout_of(d);
  if (l.base_offset != 0)
    fail(name, where,
         std::string("the ") + which + " descriptor sets the base offset, which the emulator does not model");
  if (l.swizzle != 0 && (l.start >> 7 & l.mask) != 0)
    fail(name, where,
         std::string("the ") + which + " operand starts at shared address " + std::to_string(l.start) +
             ", not aligned to its swizzle pattern (" + std::to_string(l.pitch * 8) +
             " bytes, up to the k step inside a row): align the tile by its shared address (shared_address())");
  const std::uint32_t last = element_address(l, rows - 1, 31);
  std::uint32_t highest = last;
  for (unsigned r = 0; r < 8 && r < rows; ++r)
    for (unsigned kb = 0; kb < 32; kb += 16) {
      const std::uint32_t a = element_address(l, (rows - 1) / 8 * 8 + r, kb) + 15;
      if (a > highest) highest = a;
    }
  if (l.start < dynamic_shared_address || highest >= dynamic_shared_address + shared_bytes)
    fail(name, where,
         std::string("the ") + which + " operand (" + std::to_string(rows) + " rows from shared address " +
             std::to_string(l.start) + ") lies outside the block's " + std::to_string(shared_bytes) +
             " bytes of dynamic shared memory (at shared address " + std::to_string(dynamic_shared_address) + ")");
}

// The 8 words (32 bytes) of operand row `row` (out of line: inlined into a kernel, the reads would be
// instrumented as the kernel's own loads).
[[gnu::noinline]] inline void read_row(std::uint32_t* words, const unsigned char* shared, const Layout& l,
                                       unsigned row) {
  for (unsigned c = 0; c < 2; ++c)
    std::memcpy(words + 4 * c, shared + (element_address(l, row, 16 * c) - dynamic_shared_address), 16);
}

// The words this thread's fragment reads: A rows 16w+g and 16w+g+8, then B rows 8j+2t, 8j+2t+1 for j < N/8.
inline void read_operands(std::vector<std::uint32_t>& words, const unsigned char* shared, std::uint64_t a,
                          std::uint64_t b, int n, unsigned thread) {
  const unsigned w = thread / 32 % 4, lane = thread % 32, g = lane / 4, t = lane % 4;
  const Layout la = layout_of(a), lb = layout_of(b);
  words.resize(16 + static_cast<std::size_t>(n) / 8 * 16);
  read_row(words.data(), shared, la, 16 * w + g);
  read_row(words.data() + 8, shared, la, 16 * w + g + 8);
  for (int j = 0; j < n / 8; ++j) {
    read_row(words.data() + 16 + 16 * j, shared, lb, 8 * static_cast<unsigned>(j) + 2 * t);
    read_row(words.data() + 24 + 16 * j, shared, lb, 8 * static_cast<unsigned>(j) + 2 * t + 1);
  }
}

struct Issue {
  std::uint64_t a, b;
  int accumulate;
};

template <bool Bf16, int N>
void issue(const char* name, float (&d)[N / 2], std::uint64_t a, std::uint64_t b, bool accumulate,
           const CallSite& where) {
  emu::EmulatedThread& self = emu::current(name);
  emu::BlockContext& blk = *self.block;
  const unsigned warpgroup = self.linear_id / 128;
  if (blk.thread_count < 128 * (warpgroup + 1))
    fail(name, where,
         "the warpgroup of thread " + std::to_string(self.linear_id) + " (warps " + std::to_string(4 * warpgroup) +
             "-" + std::to_string(4 * warpgroup + 3) + ") is incomplete in this " + std::to_string(blk.thread_count) +
             "-thread block: wgmma needs four whole warps");
  if (!self.wgmma_fenced)
    fail(name, where,
         "no wgmma.fence (kiln::gpu::wgmma::fence) since this thread's last wait_group or the kernel's start: "
         "the accumulators' earlier accesses are not ordered before the tensor cores' use of them");
  const Issue mine{a, b, accumulate ? 1 : 0};
  mma::detail::warp_exchange(
      name, mine,
      [&](const Issue* const(&lanes)[32]) {
        for (unsigned l = 0; l < 32; ++l)
          if (lanes[l]->a != a || lanes[l]->b != b || lanes[l]->accumulate != mine.accumulate)
            fail(name, where,
                 "lane " + std::to_string(l) + " of warp " + std::to_string(self.linear_id / 32) +
                     " passes other descriptors or another accumulate flag than lane " +
                     std::to_string(self.linear_id % 32) + ": the warpgroup issues one instruction");
      },
      where);
  const std::size_t shared_bytes = blk.kernel->dynamic_shared_bytes;
  check_layout(name, "A", a, 64, shared_bytes, where);
  check_layout(name, "B", b, N, shared_bytes, where);
  emu::WarpgroupMma op;
  op.d = d;
  op.n = N;
  op.bf16 = Bf16;
  op.accumulate = accumulate;
  op.a = a;
  op.b = b;
  op.where = where;
  read_operands(op.operands, blk.dynamic_shared, a, b, N, self.linear_id);
#if KILN_EMU_CHECK
  if (self.linear_id % 32 == 0) {
    const Layout la = layout_of(a), lb = layout_of(b);
    const auto base = reinterpret_cast<std::uintptr_t>(blk.dynamic_shared) - dynamic_shared_address;
    const unsigned w = self.linear_id / 32 % 4;
    for (unsigned r = 16 * w; r < 16 * w + 16; ++r)
      for (unsigned kb = 0; kb < 32; kb += 16)
        emu::check_async_proxy_read(base + element_address(la, r, kb), 16, where);
    for (unsigned r = 0; r < static_cast<unsigned>(N); ++r)
      for (unsigned kb = 0; kb < 32; kb += 16)
        emu::check_async_proxy_read(base + element_address(lb, r, kb), 16, where);
    emu::profile_shared_operand_read(16.0 * 32 + N * 32.0 / 4);
    emu::profile_tensor_op(1, 2.0 * 16 * N * (Bf16 ? 16 : 8));  // one HGMMA of the warp
  }
#endif
  self.wgmma_ops.push_back(std::move(op));
}

inline float operand_value(const std::uint32_t* row, unsigned k, bool bf16) {
  if (bf16) {
    const std::uint32_t w = row[k / 2];
    return std::bit_cast<float>(k % 2 == 0 ? w << 16 : w & 0xffff0000u);
  }
  return std::bit_cast<float>(row[k] & 0xffffe000u);
}

// Performs an issued operation for this thread (its shared words unchanged since the issue).
inline void complete(const char* name, emu::EmulatedThread& self, emu::WarpgroupMma& op, const CallSite& wait_site) {
  std::vector<std::uint32_t> now;
  read_operands(now, self.block->dynamic_shared, op.a, op.b, op.n, self.linear_id);
  if (now != op.operands)
    fail(name, wait_site,
         "shared memory that the wgmma.mma_async at " + std::string(op.where.file) + ":" +
             std::to_string(op.where.line) +
             " reads changed before this wait_group: it was overwritten while the tensor cores may still read it");
  const unsigned depth = op.bf16 ? 16 : 8;
  const std::uint32_t* a_rows = op.operands.data();
  const std::uint32_t* b_rows = op.operands.data() + 16;
  for (int j = 0; j < op.n / 8; ++j)
    for (unsigned v = 0; v < 4; ++v) {
      const std::uint32_t* a_row = a_rows + 8 * (v / 2);
      const std::uint32_t* b_row = b_rows + 16 * j + 8 * (v % 2);
      float& out = op.d[4 * j + static_cast<int>(v)];
      float sum = op.accumulate ? out : 0.0f;
      for (unsigned k = 0; k < depth; ++k)
        sum = std::fma(operand_value(a_row, k, op.bf16), operand_value(b_row, k, op.bf16), sum);
      out = sum;
    }
}

}  // namespace detail

inline std::uint32_t shared_address(const void* p, emu::CallSite where = emu::CallSite::current()) {
  const emu::BlockContext& b = *emu::current("kiln::gpu::wgmma::shared_address").block;
  const auto* q = static_cast<const unsigned char*>(p);
  if (q < b.dynamic_shared || q > b.dynamic_shared + b.kernel->dynamic_shared_bytes)
    detail::fail("shared_address", where,
                 "the address is not in the block's dynamic shared memory (kiln::gpu::dynamic_shared), where the "
                 "emulator keeps wgmma operands");
  return detail::dynamic_shared_address + static_cast<std::uint32_t>(q - b.dynamic_shared);
}
inline std::uint64_t descriptor(const void* start, std::uint32_t leading_bytes, std::uint32_t stride_bytes,
                                Swizzle swizzle, emu::CallSite where = emu::CallSite::current()) {
  return encode_descriptor(shared_address(start, where), leading_bytes, stride_bytes, swizzle);
}

inline void fence() { emu::current("kiln::gpu::wgmma::fence").wgmma_fenced = true; }
inline void commit_group() {
  emu::EmulatedThread& t = emu::current("kiln::gpu::wgmma::commit_group");
  t.wgmma_group_ends.push_back(t.wgmma_ops.size());
}
inline void fence_operand(float&) {}
template <int M>
inline void fence_operands(float (&)[M]) {}
template <int N, int M>
inline void wait_group(float (&)[M], emu::CallSite where = emu::CallSite::current()) {
  static_assert(N >= 0 && N <= 7, "wgmma.wait_group takes 0..7");
  emu::EmulatedThread& t = emu::current("kiln::gpu::wgmma::wait_group");
  t.wgmma_fenced = false;  // the thread may touch its accumulators now
  const std::size_t groups = t.wgmma_group_ends.size();
  if (groups <= static_cast<std::size_t>(N)) return;
  const std::size_t done_groups = groups - static_cast<std::size_t>(N);
  const std::size_t ops = t.wgmma_group_ends[done_groups - 1];
  for (std::size_t i = 0; i < ops; ++i) detail::complete("wait_group", t, t.wgmma_ops[i], where);
  t.wgmma_ops.erase(t.wgmma_ops.begin(), t.wgmma_ops.begin() + static_cast<std::ptrdiff_t>(ops));
  t.wgmma_group_ends.erase(t.wgmma_group_ends.begin(),
                           t.wgmma_group_ends.begin() + static_cast<std::ptrdiff_t>(done_groups));
  for (std::size_t& end : t.wgmma_group_ends) end -= ops;
}
inline void fence_proxy_async() {
#if KILN_EMU_CHECK
  emu::check_proxy_fence();
#endif
}

template <int N>
inline void mma_tf32(float (&d)[N / 2], std::uint64_t a, std::uint64_t b, bool accumulate,
                     emu::CallSite where = emu::CallSite::current()) {
  static_assert(N == 64 || N == 128 || N == 256, "N = 64, 128 or 256");
  detail::issue<false, N>("mma_tf32", d, a, b, accumulate, where);
}
template <int N>
inline void mma_bf16(float (&d)[N / 2], std::uint64_t a, std::uint64_t b, bool accumulate,
                     emu::CallSite where = emu::CallSite::current()) {
  static_assert(N == 64 || N == 128 || N == 256, "N = 64, 128 or 256");
  detail::issue<true, N>("mma_bf16", d, a, b, accumulate, where);
}

#endif

namespace detail {
// Writes 1 where the device runs this binary's sm_90a code, 0 where it runs code without wgmma.
template <int = 0>
__global__ void probe_kernel(int* out) {
#if KILN_GPU_REAL
  *out = KILN_WGMMA_SM90A;
#else
  *out = 1;
#endif
}

// The layout self-test (self_test()): one warpgroup multiplies A (64 x 16 TF32) by B (64 x 16) from
// shared memory in the 64-byte swizzle (conv2d_wgmma.cuh's stages: row r's 16-byte chunk c at
// (r/8)*512 + (r%8)*64 + (c ^ (r/2 % 4))*16), two k8 instructions, and writes D (64 x 64) row-major
// by the accumulator layout. Small integers: the product is exact. `bug`: the B descriptor names the
// 32-byte swizzle, still inside the tile (the check must then fail).
__host__ __device__ inline float self_test_a(int m, int k) { return static_cast<float>((m * 5 + k * 3) % 7 - 3); }
__host__ __device__ inline float self_test_b(int n, int k) { return static_cast<float>((n * 3 + k * 7) % 5 - 2); }
inline constexpr unsigned self_test_shared = 1024 + 2 * 4096;
template <int = 0>
__global__ void self_test_kernel(float* out, int bug) {
  unsigned char* raw = kiln::gpu::dynamic_shared<unsigned char>();
  unsigned char* tile = raw + (1024 - shared_address(raw) % 1024) % 1024;
  for (int i = static_cast<int>(threadIdx.x); i < 2 * 64 * 16; i += 128) {
    const int which = i / 1024, r = i / 16 % 64, k = i % 16, c = k / 4;
    auto* p =
        reinterpret_cast<float*>(tile + which * 4096 + (r >> 3) * 512 + (r & 7) * 64 + ((c ^ ((r >> 1) & 3)) << 4));
    p[k % 4] = which == 0 ? self_test_a(r, k) : self_test_b(r, k);
  }
  fence_proxy_async();
  __syncthreads();
  float d[32];
  for (float& x : d) x = 0.0f;
  const std::uint64_t a = descriptor(tile, 16, 512, Swizzle::bytes64),
                      b = descriptor(tile + 4096, 16, 512, bug != 0 ? Swizzle::bytes32 : Swizzle::bytes64);
  fence();
  mma_tf32<64>(d, a, b, false);
  mma_tf32<64>(d, advance(a, 32), advance(b, 32), true);
  commit_group();
  wait_group<0>(d);
  const int lane = static_cast<int>(threadIdx.x) % 32, w = static_cast<int>(threadIdx.x) / 32, g = lane / 4,
            t = lane % 4;
  for (int j = 0; j < 8; ++j)
    for (int v = 0; v < 4; ++v) out[(16 * w + g + 8 * (v / 2)) * 64 + 8 * j + 2 * t + v % 2] = d[4 * j + v];
}
}  // namespace detail

// Runs the layout self-test on the current device (or the emulator) and compares D with the exact
// product: whether the device reads the canonical layout and writes the accumulators as this header
// (and the emulator) says. Only where the binary's sm_90a code runs (compiled_here()).
inline bool self_test(bool deliberate_bug = false) {
  float* out = static_cast<float*>(device_malloc(64 * 64 * sizeof(float)));
  std::vector<float> got(64 * 64);
  try {
    memset_device(out, 0, 64 * 64 * sizeof(float));
    KILN_LAUNCH(detail::self_test_kernel<0>, dim3(1), dim3(128), detail::self_test_shared, nullptr, out,
                deliberate_bug ? 1 : 0);
    memcpy_device_to_host(got.data(), out, got.size() * sizeof(float));
  } catch (...) {
    device_free(out);
    throw;
  }
  device_free(out);
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 64; ++n) {
      float want = 0.0f;
      for (int k = 0; k < 16; ++k) want += detail::self_test_a(m, k) * detail::self_test_b(n, k);
      if (got[static_cast<std::size_t>(m * 64 + n)] != want) return false;
    }
  return true;
}

namespace detail {
// ask() once per device (the first 64), remembered: 0 not asked yet, 1 true, 2 false.
template <class Ask>
bool per_device(std::array<std::atomic<int>, 64>& known, Ask&& ask) {
  const int device = current_device();
  const bool cached = device >= 0 && device < 64;
  if (cached) {
    const int k = known[static_cast<std::size_t>(device)].load(std::memory_order_acquire);
    if (k != 0) return k == 1;
  }
  const bool answer = ask(device);
  if (cached) known[static_cast<std::size_t>(device)].store(answer ? 1 : 2, std::memory_order_release);
  return answer;
}
}  // namespace detail

// Whether the current device runs this binary's sm_90a code (an H100/H200 with a 90a build; always in
// the emulator; false without a device). One small launch per device, remembered.
inline bool compiled_here() {
  if constexpr (emulated) return true;
  if (!device_available()) return false;
  static std::array<std::atomic<int>, 64> known{};
  return detail::per_device(known, [](int) {
    int* flag = static_cast<int*>(device_malloc(sizeof(int)));
    int value = 0;
    try {
      memset_device(flag, 0, sizeof(int));
      KILN_LAUNCH(detail::probe_kernel<0>, dim3(1), dim3(1), 0, nullptr, flag);
      memcpy_device_to_host(&value, flag, sizeof(int));
    } catch (...) {
      device_free(flag);
      throw;
    }
    device_free(flag);
    return value == 1;
  });
}

// Whether wgmma kernels may run on the current device: its sm_90a code runs (compiled_here) and the
// layout self-test passes there (once per device; a failure is reported once on stderr: the
// emulator's model of the layouts, which the kernels are written to, would then be wrong for this
// GPU). Launchers of wgmma kernels ask it first. Always true in the emulator.
inline bool runs_here() {
  if constexpr (emulated) return true;
  static std::array<std::atomic<int>, 64> tested{};
  return detail::per_device(tested, [](int device) {
    if (!compiled_here()) return false;
    if (self_test()) return true;
    std::fprintf(stderr,
                 "kiln: the wgmma layout self-test failed on device %d: its wgmma kernels stay off (please report; "
                 "tests/gpu/test_gpu_wgmma.cpp shows which layout differs)\n",
                 device);
    return false;
  });
}

}  // namespace kiln::gpu::wgmma
