#pragma once
// Conv2d forward (TF32, stride 1, zero padding K/2, NCHW, K = 1 or 3, Cin >= 16) as an implicit
// GEMM on sm_90a's warpgroup MMAs (kiln/gpu/wgmma.hpp): the GEMM of the mma.sync forward
// (conv2d_mma.cuh: the same weights packed by its kernels, wp[o][t][c] rounded to TF32, the same
// k order, k = tap * cin_pad + packed channel, the same channel tails), with the tensor cores
// reading both operands from shared memory instead of every warp loading fragments: the mma.sync
// kernels move 1.5-1.75 shared wavefronts per HMMA (fragment loads + copies), which bounds them
// near 66 % of the H100's TF32 peak; here a warpgroup instruction reads A (64 pixels x 8 k) and B
// (BN channels x 8 k) once for its four warps: with the copies, 1.0-1.25 wavefronts per
// m16n8k8-equivalent (docs/kernels.md, "wgmma").
// Backend<Cuda>'s TF32 forward and input gradient where tf32_forward::plan takes it
// (conv2d_tf32_plan.cuh: 3 x 3, Cout >= 128, a device that runs sm_90a code, and the model's
// preference). No GPU has run it yet: tests/emu/test_conv_wgmma.cpp checks it bit for bit against
// the mma.sync forward on the emulator, kiln_bench_gpu times it beside that kernel and cuDNN
// (conv*_fwd/cuda/wgmma_tf32/).
//
// Tiling: a block of 2 warpgroups (256 threads) computes 128 pixels x BN output channels (BN = 64,
// 128 or 256), warpgroup q the pixels [64q, 64q + 64) with one m64nBNk8 instruction per 8 k (BN / 2
// accumulators per thread); the short tile (BM = 64) is one warpgroup, 64 x 128: twice the tiles of
// half the bytes, so a split tile's last block adds half as many partial tiles of half the size.
// Split-K as the mma.sync forward (gridDim.z slices added by the tile's last block,
// mma_pipeline::reduce_split_k), planned by splits() where the tiles fill few SMs. k steps of 16
// (one tap, 16 packed channels) through a 4-stage cp.async pipeline, two steps ahead, one group of
// instructions in flight:
//   step i: wait for step i's copies, fence.proxy.async, __syncthreads; copy step i + 2 into the
//   stage step i - 2 used (every warpgroup waited for its instructions of step i - 2 before the
//   barrier); wgmma.fence, the two k8 instructions of step i, commit, wait for step i - 1's.
// Stage operands are K-major rows of 64 bytes (16 floats) in the canonical 64-byte-swizzle layout:
// 16-byte chunk c of row r at (r / 8) * 512 + (r % 8) * 64 + (c ^ (r / 2 % 4)) * 16 (SBO 512; the
// second k8 instruction's descriptors start 32 bytes further).
//   A (128 pixel rows): 4-byte cp.async with zero fill (NCHW: channels are H*W apart, taps shift
//     pixels by v-P). A warp's copy covers 8 consecutive pixels x 4 channels (one 16-byte chunk of 8
//     rows): in the swizzle those 8 chunks fall in 8 different bank quartets, so the writes are
//     conflict-free, and the global reads are 4 runs of 32 bytes. Thread (warp w, lane l) copies
//     rows 16w + l % 8 and + 8, channels l / 8 + 4c of the step, c = 0..3.
//   B (BN channel rows): 16-byte cp.async of wp's rows (zero fill past Cout).
// Operands: B rounded to TF32 by the packing; A passed as fp32 bits, which the tensor core truncates
// (as the mma.sync kernels). Offsets are 32-bit (mma_conv::supports).
#include <cstddef>
#include <cstdint>

#include "conv2d_mma.cuh"
#include "conv2d_mma_pipeline.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

namespace wgmma_conv {

inline constexpr int bm = 128;       // pixels per block tile: two warpgroups of 64
inline constexpr int short_bm = 64;  // ... of the short tile: one warpgroup (split tiles: a quarter of the tail)
inline constexpr int bk = mma_conv::bk;
inline constexpr int stages = 4;
inline constexpr int threads = 256;       // (the 128-pixel tile's; Tile<BN, BM>::threads)
inline constexpr int row_bytes = bk * 4;  // one operand row of a stage: 64 bytes, one 64-byte-swizzle row

template <int BN, int BM = bm>
struct Tile {
  static_assert(BN == 64 || BN == 128 || BN == 256, "BN = 64, 128 or 256 (one instruction's N)");
  static_assert(BM == bm || BM == short_bm, "BM = 128 (two warpgroups) or 64 (one)");
  static constexpr int threads = 2 * BM;  // a warpgroup of 128 threads per 64 pixels
  static constexpr int a_bytes = BM * row_bytes, b_bytes = BN * row_bytes, stage_bytes = a_bytes + b_bytes;
  // + 1024: the stages start at the first 1024-byte shared address in the allocation.
  static constexpr std::size_t shared_bytes = static_cast<std::size_t>(stages) * stage_bytes + 1024;
  static constexpr int b_chunks_per_thread = BN * (row_bytes / 16) / threads;
  static_assert(stage_bytes % 512 == 0, "every stage starts on the swizzle pattern");
};

// Byte offset of 16-byte chunk c of row r in a stage operand (the canonical K-major 64-byte swizzle).
__device__ __forceinline__ int chunk_offset(int r, int c) {
  return (r >> 3) * 512 + (r & 7) * 64 + ((c ^ ((r >> 1) & 3)) << 4);
}

// y = conv(x, w) + b (b may be null) from mma_conv's packed weights wp. grid (ceil(N*H*W / BM),
// ceil(Cout / BN), S), block Tile<BN, BM>::threads, dynamic shared memory Tile<BN, BM>::shared_bytes.
// S > 1 splits the k steps into S slices as the mma.sync forward does (the same slices, the same
// mma_pipeline::reduce_split_k: the tile's last slice adds them in slice order; `partials` S x BM x
// BN floats per tile, `counters` one per tile, zero at launch: mma_conv's workspace for BM x BN
// tiles); S = 1 ignores both.
template <int K, int BN, int BM>
__device__ __forceinline__ void run_forward(ConvShape s, const float* x, const float* wp, const float* bias, float* y,
                                            float* partials, unsigned* counters) {
  namespace wg = kiln::gpu::wgmma;
  using T = Tile<BN, BM>;
  constexpr int KK = K * K, P = K / 2;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w), HW = H * W;
  const int cin = static_cast<int>(s.c_in), cout = static_cast<int>(s.c_out);
  const int pixels = static_cast<int>(s.n) * HW, cin_pad = mma_conv::channels_padded(s.c_in);
  const int steps_per_tap = cin_pad / bk, k_total = KK * steps_per_tap, slices = static_cast<int>(gridDim.z);
  const int k_begin = static_cast<int>(blockIdx.z) * k_total / slices;
  const int k_steps = (static_cast<int>(blockIdx.z) + 1) * k_total / slices - k_begin;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int m0 = static_cast<int>(blockIdx.x) * BM, n0 = static_cast<int>(blockIdx.y) * BN;
  unsigned char* raw = kiln::gpu::dynamic_shared<unsigned char>();
  unsigned char* shared = raw + (1024 - wg::shared_address(raw) % 1024) % 1024;

  // ---- per-thread copy state, computed once ----
  // A: rows r_h = 16 * warp + lane % 8 + 8h (pixels m0 + r_h), channels lane / 8 + 4c of the step.
  int a_offset[2], a_py[2], a_px[2];
  KILN_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int p = m0 + 16 * warp + lane % 8 + 8 * h;
    const int img = p / HW, hw = p - img * HW;
    a_py[h] = p < pixels ? hw / W : -(1 << 20);  // a pixel past the end is outside every tap
    a_px[h] = hw % W;
    a_offset[h] = img * cin * HW + hw + (lane / 8) * HW;
  }
  int a_dst[4];  // chunk c of row 16 * warp + lane % 8, this lane's float in it (+ 512 for h = 1)
  KILN_UNROLL
  for (int c = 0; c < 4; ++c) a_dst[c] = chunk_offset(16 * warp + lane % 8, c) + (lane / 8) * 4;
  // B: chunk q = tid + i * T::threads of the [BN][16] stage: row q / 4, chunk q % 4.
  int b_offset[T::b_chunks_per_thread], b_dst[T::b_chunks_per_thread];
  bool b_valid[T::b_chunks_per_thread];
  KILN_UNROLL
  for (int i = 0; i < T::b_chunks_per_thread; ++i) {
    const int q = tid + i * T::threads, n = q / 4;
    b_valid[i] = n0 + n < cout;
    b_offset[i] = b_valid[i] ? (n0 + n) * KK * cin_pad + (q % 4) * 4 : 0;
    b_dst[i] = T::a_bytes + chunk_offset(n, q % 4);
  }
  // The k step being loaded: tap (u, v), first packed channel position c0.
  int load_step = k_begin, c0 = 0, u = 0, v = 0;
  {
    const int tap = k_begin / steps_per_tap;
    c0 = (k_begin - tap * steps_per_tap) * bk;
    u = tap / K;
    v = tap - u * K;
  }
  auto load_stage = [&](int stage) {
    unsigned char* st = shared + stage * T::stage_bytes;
    const int tap_offset = (u - P) * W + (v - P) + mma_conv::step_channel(c0, cin) * HW;
    KILN_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int iy = a_py[h] + u - P, ix = a_px[h] + v - P;
      const bool ok =
          static_cast<unsigned>(iy) < static_cast<unsigned>(H) && static_cast<unsigned>(ix) < static_cast<unsigned>(W);
      const float* src = x + (a_offset[h] + tap_offset);  // where !ok it is not read (zero fill)
      KILN_UNROLL
      for (int c = 0; c < 4; ++c) {
        kiln::gpu::cp_async<4>(st + a_dst[c] + 512 * h, src, ok);
        src += 4 * HW;
      }
    }
    KILN_UNROLL
    for (int i = 0; i < T::b_chunks_per_thread; ++i)
      kiln::gpu::cp_async<16>(st + b_dst[i], wp + b_offset[i] + load_step * bk, b_valid[i]);
    ++load_step;
    c0 += bk;
    if (c0 >= cin_pad) {  // next tap
      c0 = 0;
      if (++v == K) {
        v = 0;
        ++u;
      }
    }
  };

  // ---- the main loop ----
  const int q = warp / 4;  // this thread's warpgroup: pixels [64q, 64q + 64) of the tile
  float d[BN / 2];
  KILN_UNROLL
  for (int i = 0; i < BN / 2; ++i) d[i] = 0.0f;
  KILN_UNROLL
  for (int sp = 0; sp < stages - 2; ++sp) {
    if (sp < k_steps) load_stage(sp);
    kiln::gpu::cp_async_commit();
  }
  for (int step = 0; step < k_steps; ++step) {
    kiln::gpu::cp_async_wait<stages - 3>();  // this thread's copies of step `step` have landed
    wg::fence_proxy_async();                 // ... and are visible to the tensor cores
    __syncthreads();                         // every thread's; every warpgroup done with step - 2's stage
    if (step + stages - 2 < k_steps) load_stage((step + stages - 2) % stages);
    kiln::gpu::cp_async_commit();
    // (the descriptors from the stage's address each step: nvcc folds that into fewer instructions
    // than a 64-bit descriptor advanced by the stage offset, measured in the SASS: +1-3 per HGMMA)
    const unsigned char* st = shared + (step % stages) * T::stage_bytes;
    const std::uint64_t a = wg::descriptor(st + q * 64 * row_bytes, 16, 512, wg::Swizzle::bytes64);
    const std::uint64_t b = wg::descriptor(st + T::a_bytes, 16, 512, wg::Swizzle::bytes64);
    wg::fence();
    wg::mma_tf32<BN>(d, a, b, step > 0);
    wg::mma_tf32<BN>(d, wg::advance(a, 32), wg::advance(b, 32), true);
    wg::commit_group();
    wg::wait_group<1>(d);
  }
  wg::wait_group<0>(d);
  kiln::gpu::cp_async_wait<0>();  // (only empty groups are left: none may be pending at exit)
  if (slices > 1) {               // leaves d the sum of every slice's, or returns (not the tile's last slice)
    const int tile = static_cast<int>(blockIdx.y * gridDim.x + blockIdx.x);
    auto& groups = *reinterpret_cast<float(*)[BN / 64][8][4]>(d);  // d[4j + e]: group j / 8, float4 j % 8
    if (!mma_pipeline::reduce_split_k<T::threads>(groups, partials, counters, tile, slices, tid,
                                                  reinterpret_cast<float*>(shared)))
      return;
  }

  // ---- epilogue: warp w of warpgroup q holds pixels 64q + 16(w % 4) + g (+ 8), channels 8j + 2t (+ 1) ----
  const int g = lane / 4, t = lane % 4;
  KILN_UNROLL
  for (int hh = 0; hh < 2; ++hh) {
    const int p = m0 + 64 * q + 16 * (warp % 4) + g + 8 * hh;
    if (p >= pixels) continue;
    const int img = p / HW, hw = p - img * HW;
    float* out = y + img * cout * HW + hw;
    KILN_UNROLL
    for (int j = 0; j < BN / 8; ++j) {
      KILN_UNROLL
      for (int e = 0; e < 2; ++e) {
        const int o = n0 + 8 * j + 2 * t + e;
        if (o < cout) out[o * HW] = d[4 * j + 2 * hh + e] + (bias != nullptr ? bias[o] : 0.0f);
      }
    }
  }
}

// Whether the kernel takes this shape: mma_conv's shapes with Cin >= 16 (a k step is 16 channels).
inline bool supports(const ConvShape& s) { return mma_conv::supports(s) && s.c_in >= bk; }
inline dim3 grid(const ConvShape& s, int bn, int splits = 1, int rows = bm) {
  return mma_conv::grid(s, splits, bn, rows);
}
// The plan: 128 x 256 tiles where Cout > 128 and they give 100 or more blocks, else 128 x 128; split-K
// where the tiles fill fewer than half the SMs, as many slices as fill them (132 / tiles), at most
// floor(sqrt(k steps / 2)) (the tail: the tile's last block adds S partial tiles alone, as mma_conv's
// rule), k steps / stages and 32. The mma.sync forward's rule (mma_conv::splits_for) with this
// kernel's tiles (rows 128, or 64 for the short tile). (No GPU has measured it.)
inline int block_n(const ConvShape& s) { return s.c_out > 128 && mma_conv::tiles(s, 256) >= 100 ? 256 : 128; }
inline int splits(const ConvShape& s, int bn, int rows = bm) {
  const std::int64_t tiles = mma_conv::tiles(s, bn, rows);
  if (tiles == 0 || 2 * tiles > mma_conv::fill_blocks) return 1;
  return mma_conv::capped_splits(mma_conv::fill_blocks / tiles, mma_conv::k_steps(s), 2, stages);
}

}  // namespace wgmma_conv

template <int K, int BN>
__global__ void __launch_bounds__(wgmma_conv::threads, 1)
    conv2d_wgmma_forward_kernel(ConvShape s, const float* x, const float* wp, const float* bias, float* y,
                                float* partials, unsigned* counters) {
  wgmma_conv::run_forward<K, BN, wgmma_conv::bm>(s, x, wp, bias, y, partials, counters);
}
// The short tile: 64 pixels x 128 channels, one warpgroup (wgmma_conv::short_bm).
template <int K>
__global__ void __launch_bounds__(wgmma_conv::Tile<128, wgmma_conv::short_bm>::threads, 1)
    conv2d_wgmma_forward_short_kernel(ConvShape s, const float* x, const float* wp, const float* bias, float* y,
                                      float* partials, unsigned* counters) {
  wgmma_conv::run_forward<K, 128, wgmma_conv::short_bm>(s, x, wp, bias, y, partials, counters);
}

namespace wgmma_conv {

// The kernel's dynamic shared memory (48-97 KiB), asked for once per device and variant (as
// mma_conv::allow_tall_shared), not on every launch.
template <int K, int BN, int BM = bm>
void allow_shared() {
  if constexpr (BM == short_bm)
    kiln::gpu::set_max_dynamic_shared_once<conv2d_wgmma_forward_short_kernel<K>>(Tile<BN, BM>::shared_bytes);
  else
    kiln::gpu::set_max_dynamic_shared_once<conv2d_wgmma_forward_kernel<K, BN>>(Tile<BN, BM>::shared_bytes);
}

// The kernel on weights packed by mma_conv into `work` (mma_conv::workspace_floats(s, splits, bn, rows)
// floats: the packed weights, then with splits > 1 the partial tiles and the counters, zeroed by the
// packing, mma_conv::pack_weights(s, w, work, stream, splits, bn, rows)), on 128 x bn block tiles (64,
// 128 or 256), or the short 64 x 128 tile (rows 64, K = 3). Throws where the shape is not supported or
// the device does not run sm_90a code (kiln::gpu::wgmma::runs_here).
inline void launch_packed(const ConvShape& s, const float* x, float* work, const float* b, float* y, int bn,
                          kiln::gpu::stream_handle stream = nullptr, int splits = 1, int rows = bm) {
  if (!supports(s)) throw kiln::gpu::Error("conv2d_wgmma: unsupported shape (K 1 or 3, Cin >= 16, 32-bit offsets)");
  if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_out == 0) return;
  if (!kiln::gpu::wgmma::runs_here())
    throw kiln::gpu::Error(
        "conv2d_wgmma: this device does not run the binary's sm_90a code (wgmma needs an "
        "H100/H200 and KILN_CUDA_ARCHITECTURES with 90a)");
  float* partials = splits > 1 ? work + mma_conv::partials_offset(s) : nullptr;
  unsigned* counters = mma_conv::counters(s, work, splits, bn, rows);
  if (rows == short_bm) {
    if (bn != 128 || s.k != 3) throw kiln::gpu::Error("conv2d_wgmma: the short tile is 64 x 128 and takes K = 3");
    using Short = Tile<128, short_bm>;
    allow_shared<3, 128, short_bm>();
    KILN_LAUNCH(conv2d_wgmma_forward_short_kernel<3>, grid(s, 128, splits, short_bm), dim3(Short::threads),
                Short::shared_bytes, stream, s, x, static_cast<const float*>(work), b, y, partials, counters);
    return;
  }
  if (rows != bm) throw kiln::gpu::Error("conv2d_wgmma: block tiles are 128 or 64 pixels tall");
  auto run = [&]<int K, int BN>() {
    allow_shared<K, BN>();
    KILN_LAUNCH((conv2d_wgmma_forward_kernel<K, BN>), grid(s, BN, splits), dim3(threads), Tile<BN>::shared_bytes,
                stream, s, x, static_cast<const float*>(work), b, y, partials, counters);
  };
  const bool k3 = s.k == 3;
  if (bn == 64) return k3 ? run.template operator()<3, 64>() : run.template operator()<1, 64>();
  if (bn == 128) return k3 ? run.template operator()<3, 128>() : run.template operator()<1, 128>();
  if (bn == 256) return k3 ? run.template operator()<3, 256>() : run.template operator()<1, 256>();
  throw kiln::gpu::Error("conv2d_wgmma: block tile width must be 64, 128 or 256");
}

}  // namespace wgmma_conv

}  // namespace kiln::cuda::kernels
