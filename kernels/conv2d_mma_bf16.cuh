#pragma once
// BF16 storage of the activations for the BF16 mma.sync forward convolution (MathMode::bf16;
// issue 20 item 4, step two). conv2d_mma.cuh's BF16 kernels stage the fp32 NCHW activations with
// 4-byte cp.async and round them in registers; here the activation is first written once as an
// NHWC (channels-last) BF16 copy, so the forward stages 16-bit data with 16-byte cp.async along
// channels and loads A fragments with ldmatrix, with no conversion in the k loop:
//
//   conv2d_nhwc_bf16_kernel           xh[p][c] = bf16(x[img][c][hw]) (to nearest even), p = img*H*W + hw,
//                                     channels padded with zeros to cin_pad = Cin rounded up to 16
//   conv2d_mma_pack_weights_bf16_kernel  wp[o][t][c] = bf16(w[o][c][t]), c < cin_pad (zeros past Cin),
//                                     channels in their natural order (in a training forward with
//                                     the input gradient's packing too: ..._both_bf16_kernel, or
//                                     every convolution's at once: conv2d_mma_pack_batch_bf16_kernel)
//   conv2d_mma_bf16_forward_kernel    y = conv(xh, wp) + b on mma.sync m16n8k16
//
// The input gradient is the same kernel on the transposed shape (conv2d_mma.cuh says why): dy's
// NHWC BF16 copy (Cout channels, padded to 16) and the weights transposed in (Cin, Cout) and
// rotated in (u, v) by conv2d_mma_pack_weights_dgrad_bf16_kernel (backward_data below).
//
// The GEMM is conv2d_mma.cuh's: M = N*H*W pixels, N = Cout, k = tap * cin_pad + c, a 16-wide k step
// is one filter tap and 16 channels. In NHWC a step's A row of one pixel is 16 consecutive BF16
// (32 bytes, two 16-byte chunks), and a tap only moves the pixel, so every A copy is one aligned
// 16-byte cp.async (zero-filled outside the image and past the last pixel, src-size 0). The channel
// tails are zeros in the copy itself, so the k loop has no channel predicate and no ChannelTail
// variant: 4 kernels, K in {1, 3} x block tile 128 x {64, 128}.
//
// Shared memory, per stage: A [128 pixels][16 k] and B [BN][16 k], BF16, rows of 32 bytes, the
// chunk of row r at chunk ^ ((r >> 2) & 1) (index()): an ldmatrix phase reads 8 consecutive rows of
// one chunk, which then hit 8 different 16-byte bank groups; a warp's 32 cp.async writes are 4
// consecutive rows x 2 chunks per quarter-warp, 128 contiguous bytes (conflict-free). Fragments:
// one ldmatrix.x4 per m-tile (A: matrices rows 0-7 / 8-15 x k 0-7 / 8-15 are exactly m16n8k16's
// a0..a3) and one per two n-tiles (B), 8 per warp and k step for 32 HMMA. 4 stages of cp.async
// (mma_pipeline::run; 32 KiB for the 128 x 128 tile). Offsets 32-bit (supports()); the taps a
// pixel sees inside the image are a 9-bit mask computed once, so a copy's predicate is one bit test.
// Tests: tests/emu/test_conv_mma_bf16_nhwc.cpp; SASS and predicted times: docs/kernels.md "BF16".
#include <cstdint>

#include "conv2d_mma.cuh"
#include "conv2d_mma_pipeline.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

namespace mma_bf16 {

inline constexpr int bm = 128;  // pixels per block tile
inline constexpr int bk = 16;   // k per stage: 16 channels of one tap
inline constexpr int stages = 4;
inline constexpr int warp_tile = 64;

template <int BN>
struct Tile {
  static_assert(BN == 64 || BN == 128, "block tiles are 128 x 64 or 128 x 128");
  static constexpr int warps_m = bm / warp_tile, warps_n = BN / warp_tile;
  static constexpr int threads = 32 * warps_m * warps_n;
  static constexpr int row_floats = bk / 2;  // one 16-k BF16 row: 32 bytes
  static constexpr int a_floats = bm * row_floats, b_floats = BN * row_floats, stage_floats = a_floats + b_floats;
  static constexpr std::size_t shared_bytes = sizeof(float) * stages * stage_floats;
  static constexpr int a_chunks_per_thread = bm * 2 / threads;  // 16-byte copies per thread and step
  static constexpr int b_chunks_per_thread = BN * 2 / threads;
  static_assert(shared_bytes <= 48 * 1024, "fits the default dynamic shared memory limit");
  static_assert(shared_bytes >= sizeof(float) * 32 * threads, "room for mma_pipeline::reduce_split_k's stash");
};

// Where 16-byte chunk `chunk` (0: k 0-7, 1: k 8-15) of row r of a [rows][16] BF16 stage lives, in floats.
__host__ __device__ inline constexpr int index(int r, int chunk) { return r * 8 + ((chunk ^ ((r >> 2) & 1)) << 2); }

// Elements of the NHWC BF16 copy of an activation [n][c][h][w] (channels padded to 16).
inline std::int64_t nhwc_elements(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
  return n * h * w * mma_conv::channels_padded(c);
}
// ... in floats (two BF16 per float; cin_pad is even), as workspaces count them.
inline std::int64_t nhwc_floats(const ConvShape& s) { return nhwc_elements(s.n, s.c_in, s.h, s.w) / 2; }
// The natural-order BF16 packed weights (Cout x K*K x cin_pad BF16), in floats.
inline std::int64_t packed_weight_floats(const ConvShape& s) { return mma_conv::packed_weight_floats(s) / 2; }

// Whether the kernels take the shape: conv2d_mma's conditions, and the padded NHWC copy under 2^31 elements.
inline bool supports(const ConvShape& s) {
  return mma_conv::supports(s) && nhwc_elements(s.n, s.c_in, s.h, s.w) < (std::int64_t{1} << 31);
}

// Work items of the NHWC cast: one 16-byte chunk (8 channels of a pixel) per thread; a warp covers 8
// pixels x 4 chunks (reads: 4 channels x 8 consecutive pixels, whole 32-byte sectors; writes: 8
// pixels x 64 contiguous bytes).
inline std::int64_t nhwc_cast_items(std::int64_t pixels, std::int64_t c) {
  return (pixels + 7) / 8 * ((mma_conv::channels_padded(c) / 8 + 3) / 4) * 32;
}

}  // namespace mma_bf16

// xh[p][c] = bf16(x[img][c][hw]) (round to nearest, ties to even), 0 for C <= c < cin_pad; p = img*hw
// + pixel. Grid-stride over nhwc_cast_items(pixels, c) (32-bit: supports() bounds them).
template <class T>
__global__ void conv2d_nhwc_bf16_kernel(int pixels, int hw, int c, const T* x, __nv_bfloat16* xh) {
  const int cin_pad = mma_conv::channels_padded(c), chunks = cin_pad / 8;
  const unsigned pixel_groups = static_cast<unsigned>(pixels + 7) / 8;
  const unsigned items = pixel_groups * static_cast<unsigned>((chunks + 3) / 4) * 32;  // nhwc_cast_items
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < items; i += gridDim.x * blockDim.x) {
    const unsigned lane = i % 32, warp = i / 32;
    const int p = static_cast<int>(warp % pixel_groups * 8 + lane % 8);
    const int chunk = static_cast<int>(warp / pixel_groups * 4 + lane / 8);
    if (p >= pixels || chunk >= chunks) continue;
    const int img = p / hw, q = p - img * hw, c0 = chunk * 8;
    const T* src = x + (img * c + c0) * hw + q;
    float v[8];
    KILN_UNROLL
    for (int j = 0; j < 8; ++j) v[j] = c0 + j < c ? static_cast<float>(src[j * hw]) : 0.0f;
    uint4 out;
    out.x = kiln::gpu::mma::pack_bf16x2(v[0], v[1]);
    out.y = kiln::gpu::mma::pack_bf16x2(v[2], v[3]);
    out.z = kiln::gpu::mma::pack_bf16x2(v[4], v[5]);
    out.w = kiln::gpu::mma::pack_bf16x2(v[6], v[7]);
    *reinterpret_cast<uint4*>(xh + p * cin_pad + c0) = out;
  }
}

namespace mma_bf16 {
__device__ __forceinline__ __nv_bfloat16 bf16_packed(float v) { return __float2bfloat16_rn(v); }
// wp[o][t][c] = bf16(w[o][c][t]) for c < Cin, 0 for Cin <= c < cin_pad (natural channel order, as
// the NHWC copy), as block `block` of `blocks`. K = 3: tiles staged through shared memory
// (mma_conv::pack_staged); K = 1 (contiguous already): grid-stride.
template <int K>
__device__ __forceinline__ void pack_forward(const ConvShape& s, const float* w, __nv_bfloat16* wp, int block,
                                             int blocks) {
  if constexpr (K == 1) {
    const int cin = static_cast<int>(s.c_in), cin_pad = mma_conv::channels_padded(s.c_in);
    const int count = static_cast<int>(s.c_out) * cin_pad;
    for (int i = block * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x); i < count;
         i += blocks * static_cast<int>(blockDim.x)) {
      const int o = i / cin_pad, c = i - o * cin_pad;
      wp[i] = bf16_packed(c < cin ? w[o * cin + c] : 0.0f);
    }
  } else {
    mma_conv::pack_staged<K, false, true>(
        s, w, wp, [](float v) { return bf16_packed(v); }, block, blocks);
  }
}
// The input gradient's weights for the kernel on the transposed shape: wp[c][t][o] =
// bf16(w[o][c][KK-1-t]) for o < Cout, 0 for Cout <= o < cout_pad (natural order). Tiles staged
// through shared memory (mma_conv::pack_staged).
template <int K>
__device__ __forceinline__ void pack_dgrad(const ConvShape& s, const float* w, __nv_bfloat16* wp, int block,
                                           int blocks) {
  mma_conv::pack_staged<K, true, true>(
      s, w, wp, [](float v) { return bf16_packed(v); }, block, blocks);
}
// One convolution's training packings under BF16 (conv2d_mma_pack_weights_both_bf16_kernel below):
// blocks [0, forward_blocks) of its `blocks` pack the forward's layout into wp, the rest the input
// gradient's into wp_dgrad (kept for the backward: mma_bf16_wgrad::Layout::kept_dgrad).
struct PackBoth {
  ConvShape s;
  const float* w;
  __nv_bfloat16* wp;
  __nv_bfloat16* wp_dgrad;
  int forward_blocks;
  int first_block;  // in a batch (conv2d_mma_pack_batch_bf16_kernel): where this entry's blocks begin
};
template <int K>
__device__ __forceinline__ void pack_both(const PackBoth& p, int block, int blocks) {
  if (block < p.forward_blocks)
    pack_forward<K>(p.s, p.w, p.wp, block, p.forward_blocks);
  else
    pack_dgrad<K>(p.s, p.w, p.wp_dgrad, block - p.forward_blocks, blocks - p.forward_blocks);
}
}  // namespace mma_bf16

template <int K>
__global__ void conv2d_mma_pack_weights_bf16_kernel(ConvShape s, const float* w, __nv_bfloat16* wp) {
  mma_bf16::pack_forward<K>(s, w, wp, static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x));
}

template <int K>
__global__ void conv2d_mma_pack_weights_dgrad_bf16_kernel(ConvShape s, const float* w, __nv_bfloat16* wp) {
  mma_bf16::pack_dgrad<K>(s, w, wp, static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x));
}

// Both BF16 packings in one launch (a training forward with the planned workspace: the input
// gradient's is kept for the backward); the branch is uniform per block.
template <int K>
__global__ void conv2d_mma_pack_weights_both_bf16_kernel(ConvShape s, const float* w, __nv_bfloat16* wp,
                                                         __nv_bfloat16* wp_dgrad, int forward_blocks) {
  const mma_bf16::PackBoth p{s, w, wp, wp_dgrad, forward_blocks, 0};
  mma_bf16::pack_both<K>(p, static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x));
}

// Up to Entries convolutions' BF16 training packings in one launch (conv2d_mma_pack_batch_kernel's
// BF16 twin: Backend<Cuda>::conv2d_pack_forwards under MathMode::bf16).
template <int Entries>
__global__ void conv2d_mma_pack_batch_bf16_kernel(mma_conv::PackBatch<Entries, mma_bf16::PackBoth> batch) {
  int local = 0, blocks = 0;
  const mma_bf16::PackBoth p = mma_conv::batch_entry(batch, static_cast<int>(blockIdx.x), local, blocks);
  if (p.s.k == 3)
    mma_bf16::pack_both<3>(p, local, blocks);
  else
    mma_bf16::pack_both<1>(p, local, blocks);
}

// y = conv(x, w) + b (b may be null) from the NHWC BF16 copy xh of x and the packed weights wp.
// grid (ceil(N*H*W / 128), ceil(Cout / BN), S), block Tile<BN>::threads, dynamic shared memory
// Tile<BN>::shared_bytes. S > 1 splits the k steps into S slices, reduced in the launch by the
// tile's last slice in slice order as the TF32 forward does (mma_pipeline::reduce_split_k:
// `partials` S * 128 * BN floats per tile, `counters` one per tile, zero at launch and left zero);
// S = 1 ignores both.
template <int K, int BN>
__global__ void __launch_bounds__(mma_bf16::Tile<BN>::threads, 2)
    conv2d_mma_bf16_forward_kernel(ConvShape s, const __nv_bfloat16* xh, const __nv_bfloat16* wp, const float* bias,
                                   float* y, float* partials, unsigned* counters) {
  namespace mma = kiln::gpu::mma;
  using T = mma_bf16::Tile<BN>;
  using mma_bf16::bk;
  using mma_bf16::bm;
  using mma_bf16::index;
  constexpr int KK = K * K, P = K / 2, AC = T::a_chunks_per_thread, BC = T::b_chunks_per_thread;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w), HW = H * W;
  const int cout = static_cast<int>(s.c_out), pixels = static_cast<int>(s.n) * HW;
  const int cin_pad = mma_conv::channels_padded(s.c_in), steps_per_tap = cin_pad / bk, k_total = KK * steps_per_tap;
  // Split-K (gridDim.z slices): slice z runs k steps [k_begin, k_begin + k_steps) of k_total.
  const int slices = static_cast<int>(gridDim.z), k_begin = static_cast<int>(blockIdx.z) * k_total / slices;
  const int k_steps = (static_cast<int>(blockIdx.z) + 1) * k_total / slices - k_begin;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int wm = warp % T::warps_m, wn = warp / T::warps_m;
  const int m0 = static_cast<int>(blockIdx.x) * bm, n0 = static_cast<int>(blockIdx.y) * BN;
  float* shared = kiln::gpu::dynamic_shared<float>();

  // ---- per-thread copy state, computed once ----
  // A: chunk q = tid + i * threads of the stage: pixel row q / 2, channels 8 (q % 2) .. +7 of the step.
  // a_src: its element offset in xh at tap (P, P) (the centre); a_taps bit t: tap t is inside the image.
  int a_src[AC], a_dst[AC];
  unsigned a_taps[AC];
  KILN_UNROLL
  for (int i = 0; i < AC; ++i) {
    const int q = tid + i * T::threads, m = q / 2, p = m0 + m;
    a_src[i] = p * cin_pad + (q % 2) * 8;
    a_dst[i] = index(m, q % 2) * 4;
    unsigned taps = 0;
    if (p < pixels) {
      const int hw = p % HW, py = hw / W, px = hw % W;
      KILN_UNROLL
      for (int u = 0; u < K; ++u) {
        KILN_UNROLL
        for (int v = 0; v < K; ++v) {
          const bool inside = static_cast<unsigned>(py + u - P) < static_cast<unsigned>(H) &&
                              static_cast<unsigned>(px + v - P) < static_cast<unsigned>(W);
          taps |= (inside ? 1u : 0u) << (u * K + v);
        }
      }
    }
    a_taps[i] = taps;
  }
  // B: chunk q of the [BN][16] stage: row n = q / 2, chunk q % 2; a packed row holds KK * cin_pad BF16.
  int b_src[BC], b_dst[BC];
  bool b_valid[BC];
  KILN_UNROLL
  for (int i = 0; i < BC; ++i) {
    const int q = tid + i * T::threads, n = q / 2;
    b_valid[i] = n0 + n < cout;
    b_src[i] = b_valid[i] ? (n0 + n) * KK * cin_pad + (q % 2) * 8 : 0;
    b_dst[i] = index(n, q % 2) * 4;
  }
  // The k step being loaded: tap (u, v) = tap / K, tap % K; its element shift in xh (channel c0 included).
  int tap = k_begin / steps_per_tap, u = tap / K, v = tap % K, c0 = (k_begin - tap * steps_per_tap) * bk;
  int b_step = k_begin * bk, shift = ((u - P) * W + (v - P)) * cin_pad + c0;

  auto load_stage = [&](int stage) {
    float* as = shared + stage * T::stage_floats;
    float* bs = as + T::a_floats;
    KILN_UNROLL
    for (int i = 0; i < AC; ++i)  // where the tap leaves the image the address is not read (zero fill)
      kiln::gpu::cp_async<16>(mma_pipeline::at_byte(as, a_dst[i]), xh + (a_src[i] + shift), (a_taps[i] >> tap) & 1u);
    KILN_UNROLL
    for (int i = 0; i < BC; ++i)
      kiln::gpu::cp_async<16>(mma_pipeline::at_byte(bs, b_dst[i]), wp + (b_src[i] + b_step), b_valid[i]);
    b_step += bk;
    c0 += bk;
    shift += bk;
    if (c0 == cin_pad) {  // next tap
      c0 = 0;
      ++tap;
      if (++v == K) {
        v = 0;
        ++u;
      }
      shift = ((u - P) * W + (v - P)) * cin_pad;
    }
  };

  // ---- per-lane ldmatrix row addresses inside a stage, computed once ----
  // A, m-tile i: lane l gives row wm*64 + i*16 + l%8 + 8 ((l/8) % 2) of chunk l/16 (matrices: rows
  // 0-7 / 8-15 x k 0-7, then x k 8-15 = a0, a1, a2, a3). B, n-tile pair jp: row wn*64 + jp*16 +
  // (l/16)*8 + l%8 of chunk (l/8) % 2 (b[2jp][0], b[2jp][1], b[2jp+1][0], b[2jp+1][1]). Moving 16
  // rows keeps the swizzle bit: +128 floats.
  const int a_lane = index(wm * mma_bf16::warp_tile + lane % 8 + 8 * ((lane / 8) % 2), lane / 16);
  const int b_lane = index(wn * mma_bf16::warp_tile + (lane / 16) * 8 + lane % 8, (lane / 8) % 2);

  float acc[4][8][4];
  mma_pipeline::zero(acc);
  mma_pipeline::run<mma_bf16::stages>(k_steps, load_stage, [&](int stage) {
    const float* as = shared + stage * T::stage_floats;
    const float* bs = as + T::a_floats;
    std::uint32_t a[4][4], b[8][2];
    KILN_UNROLL
    for (int i = 0; i < 4; ++i) mma::ldmatrix_x4(a[i], as + a_lane + i * 16 * T::row_floats);
    mma_pipeline::load_b_fragments(b, bs + b_lane, 16 * T::row_floats);
    KILN_UNROLL
    for (int i = 0; i < 4; ++i) {
      KILN_UNROLL
      for (int j = 0; j < 8; ++j) mma::mma_bf16_m16n8k16(acc[i][j], a[i], b[j], acc[i][j]);
    }
  });

  if (slices > 1) {  // leaves the block's acc the sum of every slice's, or returns (not the tile's last slice)
    const int tile = static_cast<int>(blockIdx.y * gridDim.x + blockIdx.x);
    if (!mma_pipeline::reduce_split_k<T::threads>(acc, partials, counters, tile, slices, tid, shared)) return;
  }
  mma_pipeline::store_nchw(acc, y, bias, m0 + wm * mma_bf16::warp_tile, n0 + wn * mma_bf16::warp_tile, pixels, HW, cout,
                           lane);
}

namespace mma_bf16 {

// The NHWC copy of x (n images of shape c x hw) into xh: nhwc_elements(...) BF16, 16-byte aligned.
inline void to_nhwc(std::int64_t n, std::int64_t c, std::int64_t hw, const float* x, __nv_bfloat16* xh,
                    kiln::gpu::stream_handle stream = nullptr) {
  const std::int64_t items = nhwc_cast_items(n * hw, c);
  if (items == 0) return;
  const dim3 blocks(mma_conv::pack_blocks(items));
  KILN_LAUNCH((conv2d_nhwc_bf16_kernel<float>), blocks, dim3(256), 0, stream, static_cast<int>(n * hw),
              static_cast<int>(hw), static_cast<int>(c), x, xh);
}

// The forward kernel's block tile width for a shape (fs: the shape it convolves): the TF32 forward's
// (mma_conv::block_n): 128 x 64 where Cout <= 64 and on the deep levels, whose split-K tail then
// reads half the bytes.
inline int block_n(const ConvShape& fs) { return mma_conv::block_n(fs); }
inline std::int64_t tiles(const ConvShape& fs, int bn = 0) { return mma_conv::tiles(fs, bn ? bn : block_n(fs)); }
// Split-K where the tiles alone leave SMs idle (the deep levels): the TF32 forward's rule
// (mma_conv::splits_for; a k step is 16 channels of a tap in both), with the tail's bound at
// floor(sqrt(k steps / 4)) instead of / 2: a BF16 k step is one m16n8k16 where TF32 takes two
// m16n8k8, about half the main-loop time per step against the same fp32 partial tiles, so
// k / S * a + S * b is least at a smaller S (by predict.py at 64^2 crops: 162 -> 150 us H100 for
// the 3x3 forwards and input gradients; docs/kernels.md "Split-K for the BF16 forward"). Not the
// TF32 rule's split of half-idle waves (not profiled under BF16).
inline int splits(const ConvShape& fs) { return mma_conv::splits_for(fs, block_n(fs), 4, false); }
// The partial tiles of `splits` slices on 128 x bn tiles (0: block_n(fs)), none for one slice.
inline std::int64_t partial_floats(const ConvShape& fs, int splits, int bn = 0) {
  if (bn == 0) bn = block_n(fs);
  return splits > 1 ? splits * tiles(fs, bn) * bm * bn : 0;
}

// The forward kernel of a shape on the NHWC copy and natural-order packed weights, on 128 x bn
// block tiles (0: block_n(s); the tests run both), the k steps in `splits` slices: then `partials`
// (partial_floats(s, splits, bn)) and `counters` (tiles(s, bn), zero; the launch leaves them zero)
// are device scratch.
inline void launch_packed(const ConvShape& s, const __nv_bfloat16* xh, const __nv_bfloat16* wp, const float* b,
                          float* y, kiln::gpu::stream_handle stream = nullptr, int splits = 1,
                          float* partials = nullptr, unsigned* counters = nullptr, int bn = 0) {
  static_assert(bm == mma_conv::bm, "the TF32 forward's grid");
  auto run = [&]<int K, int BN>() {
    KILN_LAUNCH((conv2d_mma_bf16_forward_kernel<K, BN>), mma_conv::grid(s, splits, BN), dim3(Tile<BN>::threads),
                Tile<BN>::shared_bytes, stream, s, xh, wp, b, y, partials, counters);
  };
  const bool wide = (bn ? bn : block_n(s)) == 128;
  if (s.k == 3)
    wide ? run.template operator()<3, 128>() : run.template operator()<3, 64>();
  else
    wide ? run.template operator()<1, 128>() : run.template operator()<1, 64>();
}

// y = conv(x, w) + b (b may be null), unsplit on 128 x bn tiles (0: block_n(s)). `workspace`:
// packed_weight_floats(s) + nhwc_floats(s) floats, 16-byte aligned: the packed weights, then the
// NHWC copy of x.
inline void forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, float* workspace,
                    kiln::gpu::stream_handle stream = nullptr, int bn = 0) {
  if (!supports(s))
    throw kiln::gpu::Error("conv2d_mma_bf16: unsupported shape (K must be 1 or 3, tensors under 2^31 elements)");
  if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_out == 0) return;
  auto* wp = reinterpret_cast<__nv_bfloat16*>(workspace);
  auto* xh = reinterpret_cast<__nv_bfloat16*>(workspace + packed_weight_floats(s));
  if (s.k == 3)
    KILN_LAUNCH((conv2d_mma_pack_weights_bf16_kernel<3>), dim3(mma_conv::pack_weight_blocks<3, false>(s)),
                dim3(mma_conv::pack_threads), 0, stream, s, w, wp);
  else
    KILN_LAUNCH((conv2d_mma_pack_weights_bf16_kernel<1>), dim3(mma_conv::pack_weight_blocks<1, false>(s)),
                dim3(mma_conv::pack_threads), 0, stream, s, w, wp);
  to_nhwc(s.n, s.c_in, s.h * s.w, x, xh, stream);
  launch_packed(s, xh, wp, b, y, stream, 1, nullptr, nullptr, bn);
}

// The input gradient's workspace: its packed weights, then the NHWC copy of dy (in floats).
inline std::int64_t dgrad_workspace_floats(const ConvShape& s) {
  const ConvShape t = mma_conv::transposed(s);
  return packed_weight_floats(t) + nhwc_floats(t);
}

// dx = the input gradient of y = conv(x, w) (overwritten) from dy, unsplit on 128 x bn tiles (0:
// block_n of the transposed shape). `workspace`: dgrad_workspace_floats(s) floats, 16-byte aligned:
// the packed weights, then dy's NHWC copy.
inline void backward_data(const ConvShape& s, const float* w, const float* dy, float* dx, float* workspace,
                          kiln::gpu::stream_handle stream = nullptr, int bn = 0) {
  const ConvShape t = mma_conv::transposed(s);
  if (!supports(t) || !mma_conv::supports(s))
    throw kiln::gpu::Error("conv2d_mma_bf16: unsupported shape (K must be 1 or 3, tensors under 2^31 elements)");
  if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_in == 0 || s.c_out == 0) return;
  auto* wp = reinterpret_cast<__nv_bfloat16*>(workspace);
  auto* dyh = reinterpret_cast<__nv_bfloat16*>(workspace + packed_weight_floats(t));
  if (s.k == 3)
    KILN_LAUNCH((conv2d_mma_pack_weights_dgrad_bf16_kernel<3>), dim3(mma_conv::pack_weight_blocks<3, true>(s)),
                dim3(mma_conv::pack_threads), 0, stream, s, w, wp);
  else
    KILN_LAUNCH((conv2d_mma_pack_weights_dgrad_bf16_kernel<1>), dim3(mma_conv::pack_weight_blocks<1, true>(s)),
                dim3(mma_conv::pack_threads), 0, stream, s, w, wp);
  to_nhwc(s.n, s.c_out, s.h * s.w, dy, dyh, stream);
  launch_packed(t, dyh, wp, nullptr, dx, stream, 1, nullptr, nullptr, bn);
}

}  // namespace mma_bf16

}  // namespace kiln::cuda::kernels
