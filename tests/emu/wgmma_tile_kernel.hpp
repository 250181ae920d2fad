#pragma once
// A test kernel for kiln::gpu::wgmma (kernels/kiln/gpu/wgmma.hpp): one or two warpgroups multiply
// A (64 rows per warpgroup) by B (N rows), both K-major, over k_steps instructions of 32 bytes of K,
// from shared memory in one of the canonical layouts, and store D row-major. The placement below is
// written from CUTLASS's canonical K-major atoms in 16-byte-chunk form (chunk q of row r of an atom
// lands at chunk q ^ f(r)), independently of the emulator's address formula; tests/emu/
// test_emulator_wgmma.cpp runs it on the emulator, tests/gpu/test_gpu_wgmma.cpp on a GPU (the check
// of the emulator's layouts against the hardware), tests/nvcc/wgmma_check.cu compiles it for sm_90a.
// `flags` switch on deliberate bugs, each of which the emulator must report (never on a GPU).
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kiln/gpu/gpu.hpp"
#include "kiln/gpu/wgmma.hpp"
#include "test_emulator_support.hpp"

namespace kiln_wgmma_test {

// Layouts: no swizzle with core matrices 8 rows x 16 bytes, LBO (between the two 16-byte chunks of
// K) 128 and SBO (between 8-row groups) 256, or the chunks in planes (LBO = rows x 16, SBO = 128);
// the swizzled layouts with 32-, 64- and 128-byte rows (1, 2 or 4 instructions' K per row).
enum Mode : int { plain_groups = 0, plain_planes = 1, swizzle32 = 2, swizzle64 = 3, swizzle128 = 4 };
enum Flag : int {
  accumulate_init = 1,  // the first instruction adds to D's initial value
  group_per_step = 2,   // a group per instruction, waited with wait_group<1> as the next is issued
  no_fence = 4,         // bug: no wgmma.fence before the first instruction
  overwrite = 8,        // bug: thread 0 overwrites A's first word before the wait
  no_wait = 16,         // bug: return without wait_group
  lane_differs = 32,    // bug: lane 5 passes another B descriptor
  misaligned = 64,      // bug: the tiles start a row (128 bytes) past a 1024-byte boundary
  wrong_swizzle = 128,  // bug: 128-byte placement read through a 64-byte-swizzle descriptor
  no_proxy_fence = 256  // bug: no fence.proxy.async after the shared stores (checking builds report it)
};

struct Params {
  const std::uint32_t* a;  // [m][k_steps * 8] words
  const std::uint32_t* b;  // [n][k_steps * 8] words
  float* d;                // [m][n]
  int m, k_steps, mode, flags;
  float init;
};

__host__ __device__ inline int pitch_of(int mode) { return mode == swizzle32 ? 32 : mode == swizzle64 ? 64 : 128; }

// Byte offset, from the operand's 1024-aligned base, of byte `kb` of row r's K (rows rows in all).
__host__ __device__ inline int place(int mode, int rows, int r, int kb) {
  const int step = kb / 32, within = kb % 32, chunk = within / 16, byte = within % 16;
  if (mode == plain_groups) return step * rows * 32 + r / 8 * 256 + chunk * 128 + r % 8 * 16 + byte;
  if (mode == plain_planes) return step * rows * 32 + chunk * rows * 16 + r / 8 * 128 + r % 8 * 16 + byte;
  const int pitch = pitch_of(mode), steps_per_row = pitch / 32, block = step / steps_per_row;
  const int q = (step % steps_per_row) * 2 + chunk;  // 16-byte chunk of the row, before the swizzle
  const int a = r % 8;
  const int f = mode == swizzle128 ? a : mode == swizzle64 ? (a >> 1) & 3 : (a >> 2) & 1;
  return block * rows * pitch + r / 8 * 8 * pitch + a * pitch + (q ^ f) * 16 + byte;
}

__device__ inline std::uint64_t descriptor_of(int mode, unsigned char* tile, int rows, int step, int first_row,
                                              bool wrong_swizzle) {
  namespace wg = kiln::gpu::wgmma;
  if (mode == plain_groups)
    return wg::descriptor(tile + step * rows * 32 + first_row / 8 * 256, 128, 256, wg::Swizzle::none);
  if (mode == plain_planes)
    return wg::descriptor(tile + step * rows * 32 + first_row / 8 * 128, static_cast<std::uint32_t>(rows * 16), 128,
                          wg::Swizzle::none);
  const int pitch = pitch_of(mode), steps_per_row = pitch / 32;
  const wg::Swizzle s = wrong_swizzle        ? wg::Swizzle::bytes64
                        : mode == swizzle128 ? wg::Swizzle::bytes128
                        : mode == swizzle64  ? wg::Swizzle::bytes64
                                             : wg::Swizzle::bytes32;
  unsigned char* atom = tile + step / steps_per_row * rows * pitch + first_row / 8 * 8 * pitch;
  return wg::advance(wg::descriptor(atom, 16, static_cast<std::uint32_t>(8 * pitch), s),
                     static_cast<std::uint32_t>(step % steps_per_row * 32));
}

// Dynamic shared memory the kernel needs.
inline std::size_t shared_bytes(int m, int n, int k_steps) {
  return 1024 + 128 + static_cast<std::size_t>(m + n) * static_cast<std::size_t>(k_steps) * 32;
}

template <int N, bool Bf16>
__global__ void wgmma_tile_kernel(Params p) {
  namespace wg = kiln::gpu::wgmma;
  unsigned char* raw = kiln::gpu::dynamic_shared<unsigned char>();
  const std::uint32_t at = wg::shared_address(raw);
  unsigned char* a_tile = raw + (1024 - at % 1024) % 1024 + ((p.flags & misaligned) != 0 ? 128 : 0);
  unsigned char* b_tile = a_tile + p.m * p.k_steps * 32;
  const int words = p.k_steps * 8;
  for (int i = static_cast<int>(threadIdx.x); i < p.m * words; i += static_cast<int>(blockDim.x))
    *reinterpret_cast<std::uint32_t*>(a_tile + place(p.mode, p.m, i / words, i % words * 4)) = p.a[i];
  for (int i = static_cast<int>(threadIdx.x); i < N * words; i += static_cast<int>(blockDim.x))
    *reinterpret_cast<std::uint32_t*>(b_tile + place(p.mode, N, i / words, i % words * 4)) = p.b[i];
  if ((p.flags & no_proxy_fence) == 0) wg::fence_proxy_async();
  __syncthreads();

  float d[N / 2];
  KILN_UNROLL
  for (int i = 0; i < N / 2; ++i) d[i] = p.init;
  const int q = static_cast<int>(threadIdx.x) / 128;
  const bool wrong = (p.flags & wrong_swizzle) != 0;
  if ((p.flags & no_fence) == 0) wg::fence();
  for (int s = 0; s < p.k_steps; ++s) {
    const std::uint64_t da = descriptor_of(p.mode, a_tile, p.m, s, 64 * q, wrong);
    std::uint64_t db = descriptor_of(p.mode, b_tile, N, s, 0, wrong);
    if ((p.flags & lane_differs) != 0 && threadIdx.x == 5) db = wg::advance(db, 16);
    const bool accumulate = s > 0 || (p.flags & accumulate_init) != 0;
    if constexpr (Bf16)
      wg::mma_bf16<N>(d, da, db, accumulate);
    else
      wg::mma_tf32<N>(d, da, db, accumulate);
    if ((p.flags & group_per_step) != 0) {
      wg::commit_group();
      if (s + 1 < p.k_steps) {
        wg::wait_group<1>(d);
        wg::fence();
      }
    }
  }
  if ((p.flags & group_per_step) == 0) wg::commit_group();
  if ((p.flags & overwrite) != 0 && threadIdx.x == 0) *reinterpret_cast<std::uint32_t*>(a_tile) ^= 0x40000000u;
  if ((p.flags & no_wait) == 0) wg::wait_group<0>(d);

  // D: warp w of the warpgroup holds rows 16w + g (+ 8), lane (g, t) columns 8j + 2t (+ 1).
  const int lane = static_cast<int>(threadIdx.x) % 32, w = static_cast<int>(threadIdx.x) / 32 % 4;
  const int g = lane / 4, t = lane % 4;
  KILN_UNROLL
  for (int j = 0; j < N / 8; ++j) KILN_UNROLL
  for (int v = 0; v < 4; ++v) {
    const int row = 64 * q + 16 * w + g + 8 * (v / 2), col = 8 * j + 2 * t + v % 2;
    p.d[row * N + col] = d[4 * j + v];
  }
}

// ---- host side: exact operands, the CPU product, one launch ----

// Rows of `k` values as the instruction's words: a float each (TF32), or two BF16, the even k low.
inline std::vector<std::uint32_t> words_of(const std::vector<float>& values, bool bf16) {
  if (!bf16) {
    std::vector<std::uint32_t> w(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) w[i] = std::bit_cast<std::uint32_t>(values[i]);
    return w;
  }
  std::vector<std::uint32_t> w(values.size() / 2);
  for (std::size_t i = 0; i < w.size(); ++i)
    w[i] = std::bit_cast<std::uint32_t>(values[2 * i]) >> 16 |
           (std::bit_cast<std::uint32_t>(values[2 * i + 1]) & 0xffff0000u);
  return w;
}

struct Run {
  std::vector<float> d, expected;
  std::string error;
};

template <int N, bool Bf16>
Run run(int warpgroups, int k_steps, int mode, int flags, int threads = 0) {
  const int m = 64 * warpgroups, k = k_steps * (Bf16 ? 16 : 8);
  const std::vector<float> a = kiln_emu_test::exact_values(static_cast<std::size_t>(m * k), 1 + mode);
  const std::vector<float> b = kiln_emu_test::exact_values(static_cast<std::size_t>(N * k), 7 + mode);
  const float init = (flags & accumulate_init) != 0 ? 1.5f : -100.0f;
  Run r;
  r.expected.resize(static_cast<std::size_t>(m * N));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < N; ++j) {
      double sum = (flags & accumulate_init) != 0 ? init : 0.0;
      for (int q = 0; q < k; ++q) sum += double(a[i * k + q]) * b[j * k + q];
      r.expected[static_cast<std::size_t>(i * N + j)] = static_cast<float>(sum);
    }
  kiln_emu_test::DeviceBuffer<std::uint32_t> da(words_of(a, Bf16)), db(words_of(b, Bf16));
  kiln_emu_test::DeviceBuffer<float> dd(static_cast<std::size_t>(m * N));
  dd.zero();
  const Params p{da.get(), db.get(), dd.get(), m, k_steps, mode, flags, init};
  const std::size_t shared = shared_bytes(m, N, k_steps);
  auto* kernel = &wgmma_tile_kernel<N, Bf16>;
  try {
    kiln::gpu::set_max_dynamic_shared(kernel, shared);
    KILN_LAUNCH(wgmma_tile_kernel<N, Bf16>, dim3(1), dim3(threads > 0 ? threads : 128 * warpgroups), shared, nullptr,
                p);
    r.d = dd.download();
  } catch (const kiln::gpu::Error& e) {
    r.error = e.what();
  }
  return r;
}

// Elements of D that differ from the CPU product (-1: the launch failed, no D).
inline int mismatches(const Run& r) {
  if (r.d.size() != r.expected.size()) return -1;
  int bad = 0;
  for (std::size_t i = 0; i < r.expected.size(); ++i) bad += r.d[i] != r.expected[i] ? 1 : 0;
  return bad;
}

}  // namespace kiln_wgmma_test
