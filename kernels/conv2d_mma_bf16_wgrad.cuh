#pragma once
// BF16 weight gradient from the NHWC BF16 copies of x and dy (MathMode::bf16; issue 20 item 4).
// conv2d_mma_wgrad.cuh's BF16 variant stages x and dy as fp32 (4- and 16-byte cp.async) and rounds
// both fragments in registers; here both operands are the NHWC (channels-last) BF16 copies that
// conv2d_nhwc_bf16_kernel writes (conv2d_mma_bf16.cuh): xh[p][c] (Cin padded to 16) and dyh[p][o]
// (Cout padded to 16), staged with 16-byte cp.async and loaded with ldmatrix.trans, no conversion
// in the k loop.
//
// The GEMM is conv2d_mma_wgrad.cuh's: per tap t = u*K + v (blockIdx.y),
//   D_t[m = Cout][n = Cin] = sum over pixels p of dyh[p][m] * xh[p + (u-P)*W + (v-P)][n],
// the pixels the reduction, split over blockIdx.z (split-K, partial sums [split][t][Cout][Cin]
// reduced in a fixed order by conv2d_mma_wgrad_reduce_kernel, or in the same launch by each tile's
// last split where mma_wgrad::Splits::one_launch: deterministic either way), same tiles (BT x BT,
// 64 x 64 per warp), same grid and splits as the TF32 kernel's one-tap tiles (mma_wgrad::single_tap,
// mma_wgrad::split_k: the grid's plan; the TF32 kernel's stream-K schedule has no BF16 instance).
//
// Shared memory, per stage: A (dy) and B (x), each [16 pixels][BT channels] BF16, pixel rows of BT*2
// bytes: exactly the NHWC layout, so a 16-byte copy is 8 channels of one pixel. The k dimension
// (pixels) is the row, so fragments come from ldmatrix.trans: an 8 x 8 matrix of 8 pixel rows x 8
// channels, transposed, gives lane (g, t) channel g of pixels 2t, 2t+1: m16n8k16's a0 (channels
// m..m+7, pixels 0-7), and a1..a3 (channels +8, pixels +8), and the B fragments of n-major storage.
// Chunk c of pixel row r lives at c ^ sw(r), sw(r) = 2 (r & 3) + ((r >> 2) & 1): an ldmatrix phase
// (8 consecutive rows of one chunk) hits 8 different 16-byte bank groups, and so does a quarter-warp
// of copies (4 rows x 2 adjacent chunks: sw(r) and sw(r) ^ 1 over r = 4j..4j+3 are 8 values).
// Copies: each thread keeps one pixel of the step (row (tid / 2) % 16) and copies 16-byte chunks
// tid % 2 + 2 * warp + 2 * warps * i of both operands: a lane pair reads one 32-byte sector whole.
// A tap shifts x's pixel: zero-filled (src-size 0) outside the image, past the last pixel and past
// the padded channel count. The pixel's (py, px) move by 16 per step, incrementally (no division
// in the k loop). 4 stages of cp.async (mma_pipeline::run), 32 KiB (128 x 128) / 16 KiB (64 x 64).
// Unlike the fp32-staged kernel, H*W need not be a multiple of 4 (every copy is one pixel's).
// Tests: tests/emu/test_conv_mma_bf16_wgrad.cpp; SASS and predicted times: docs/kernels.md "BF16".
#include <cstdint>

#include "conv2d_mma.cuh"
#include "conv2d_mma_bf16.cuh"
#include "conv2d_mma_pipeline.cuh"
#include "conv2d_mma_wgrad.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

namespace mma_bf16_wgrad {

inline constexpr int bk = mma_wgrad::bk;  // pixels per stage (the splits count steps of 16)
inline constexpr int stages = 4;
inline constexpr int warp_tile = 64;

template <int BT>
struct Tile {
  static_assert(BT == 64 || BT == 128, "block tiles are 64 x 64 or 128 x 128");
  static constexpr int warps_m = BT / warp_tile, warps_n = BT / warp_tile, warps = warps_m * warps_n;
  static constexpr int threads = 32 * warps;
  static constexpr int row_floats = BT / 2;  // a pixel row of BT BF16
  static constexpr int a_floats = bk * row_floats, stage_floats = 2 * a_floats;
  static constexpr std::size_t shared_bytes = sizeof(float) * stages * stage_floats;
  static constexpr int chunks_per_thread = BT / 8 / (2 * warps);  // 16-byte copies per operand and step
  static constexpr int chunk_stride = 2 * warps;                  // between a thread's chunks
  static_assert(shared_bytes <= 48 * 1024, "fits the default dynamic shared memory limit");
  static_assert(shared_bytes >= sizeof(float) * 32 * threads, "room for mma_pipeline::reduce_split_k's stash");
};

// Where 16-byte chunk c of pixel row r of a [16][BT] BF16 stage lives, in floats.
__host__ __device__ inline constexpr int index(int r, int c, int row_floats) {
  return r * row_floats + ((c ^ (((r & 3) << 1) | ((r >> 2) & 1))) << 2);
}

// Whether the kernel takes the shape: K = 1 or 3, both NHWC copies and the weights under 2^31 elements.
inline bool supports(const ConvShape& s) {
  const std::int64_t limit = std::int64_t{1} << 31;
  return (s.k == 1 || s.k == 3) && mma_bf16::nhwc_elements(s.n, s.c_in, s.h, s.w) < limit &&
         mma_bf16::nhwc_elements(s.n, s.c_out, s.h, s.w) < limit && s.c_out * s.c_in * s.k * s.k < limit;
}

// A layer's workspace under MathMode::bf16 (floats, every part 16-byte aligned), shared by its forward
// and its backward: x's NHWC copy first, where the forward writes it and the weight gradient of the
// same step reads it (ConvKept::x_bf16_copy: no second copy of x); then the forward's packed
// weights, or in the backward the input gradient's packed weights, dy's NHWC copy (where the input
// gradient leaves it, so the weight gradient reuses it) and the split-K partial sums. Only the
// forward's packed weights, dead by then, share bytes with the backward's parts. A training plan
// also keeps the input gradient's packed weights past all of that and past the forward's packing
// (kept_dgrad, up to kept_total): the forward packs both layouts in one launch (or a network's
// forward every convolution's at once) and the backward's input gradient runs on them
// (ConvKept::bf16_copy_and_dgrad_packing).
struct Layout {
  std::int64_t x_copy = 0, weights = 0, dy_copy = 0, partials = 0, total = 0, kept_dgrad = 0, kept_total = 0;
};
inline Layout layout(const ConvShape& s) {
  const ConvShape t = mma_conv::transposed(s);
  Layout l;
  l.weights = l.x_copy + mma_bf16::nhwc_floats(s);
  l.dy_copy = l.weights + mma_bf16::packed_weight_floats(t);
  l.partials = l.dy_copy + mma_bf16::nhwc_floats(t);
  l.total = l.partials + mma_wgrad::workspace_floats(s, mma_wgrad::single_tap(s));
  const std::int64_t forward_end = l.weights + mma_bf16::packed_weight_floats(s);  // may pass total (Cin < Cout)
  l.kept_dgrad = ((forward_end > l.total ? forward_end : l.total) + 3) / 4 * 4;
  l.kept_total = l.kept_dgrad + mma_bf16::packed_weight_floats(t);
  return l;
}

}  // namespace mma_bf16_wgrad

// grid mma_wgrad::grid(s, single_tap(s), splits), block Tile<BT>::threads, dynamic shared memory
// Tile<BT>::shared_bytes. Split z reduces k steps [z * steps_per_split, ...) and writes `out` =
// partial sums [splits][K*K][Cout][Cin] (splits > 1) or adds to `out` = dw (one split). With
// `counters` (splits > 1, one_launch; the 128 x 128 tile): out = dw, as conv2d_mma_wgrad_kernel's.
template <int K, int BT>
__global__ void __launch_bounds__(mma_bf16_wgrad::Tile<BT>::threads, 2)
    conv2d_mma_bf16_wgrad_kernel(ConvShape s, const __nv_bfloat16* xh, const __nv_bfloat16* dyh, float* out,
                                 int steps_per_split, float* partials, unsigned* counters) {
  namespace mma = kiln::gpu::mma;
  using T = mma_bf16_wgrad::Tile<BT>;
  using mma_bf16_wgrad::bk;
  constexpr int KK = K * K, P = K / 2, CC = T::chunks_per_thread;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w), HW = H * W;
  const int cin = static_cast<int>(s.c_in), cout = static_cast<int>(s.c_out), pixels = static_cast<int>(s.n) * HW;
  const int cin_pad = mma_conv::channels_padded(s.c_in), cout_pad = mma_conv::channels_padded(s.c_out);
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int wm = warp % T::warps_m, wn = warp / T::warps_m;
  const int tiles_m = (cout + BT - 1) / BT;
  const int tap = static_cast<int>(blockIdx.y) / tiles_m, u = tap / K, v = tap % K;
  const int m0 = (static_cast<int>(blockIdx.y) - tap * tiles_m) * BT, n0 = static_cast<int>(blockIdx.x) * BT;
  const int k_steps_total = (pixels + bk - 1) / bk;
  const int step_begin = static_cast<int>(blockIdx.z) * steps_per_split;
  const int step_end = step_begin + steps_per_split < k_steps_total ? step_begin + steps_per_split : k_steps_total;
  const int k_steps = step_end - step_begin;
  float* shared = kiln::gpu::dynamic_shared<float>();

  // ---- per-thread copy state, computed once ----
  // Pixel row r of the step; chunks c0 + i * chunk_stride of A (dy, channels m0 + 8c) and B (x, n0 + 8c).
  const int r = (tid / 2) % bk, c0 = tid % 2 + 2 * warp;
  unsigned a_valid = 0, b_valid = 0;  // bit i: chunk i lies inside the padded channels
  KILN_UNROLL
  for (int i = 0; i < CC; ++i) {
    const int c = 8 * (c0 + i * T::chunk_stride);
    a_valid |= (m0 + c < cout_pad ? 1u : 0u) << i;
    b_valid |= (n0 + c < cin_pad ? 1u : 0u) << i;
  }
  int pixel = step_begin * bk + r, px = 0, py = 0;
  {
    const int img = pixel / HW, hw = pixel - img * HW;
    py = hw / W;
    px = hw - py * W;
  }
  // Element offsets: a at the pixel, b at the pixel shifted by the tap (not read outside the image).
  int a_offset = pixel * cout_pad + m0 + 8 * c0;
  int b_offset = (pixel + (u - P) * W + (v - P)) * cin_pad + n0 + 8 * c0;
  int dst[CC];  // bytes: register + immediate addresses in the unrolled loop
  KILN_UNROLL
  for (int i = 0; i < CC; ++i) dst[i] = mma_bf16_wgrad::index(r, c0 + i * T::chunk_stride, T::row_floats) * 4;
  const int a_step = bk * cout_pad, b_step = bk * cin_pad;

  auto load_stage = [&](int stage) {
    float* as = shared + stage * T::stage_floats;
    float* bs = as + T::a_floats;
    const bool a_ok = pixel < pixels;
    bool b_ok = a_ok;
    if constexpr (K != 1)
      b_ok = b_ok && static_cast<unsigned>(py + u - P) < static_cast<unsigned>(H) &&
             static_cast<unsigned>(px + v - P) < static_cast<unsigned>(W);
    KILN_UNROLL
    for (int i = 0; i < CC; ++i) {
      kiln::gpu::cp_async<16>(mma_pipeline::at_byte(as, dst[i]), dyh + (a_offset + i * 8 * T::chunk_stride),
                              a_ok && ((a_valid >> i) & 1u));
      kiln::gpu::cp_async<16>(mma_pipeline::at_byte(bs, dst[i]), xh + (b_offset + i * 8 * T::chunk_stride),
                              b_ok && ((b_valid >> i) & 1u));
    }
    pixel += bk;
    a_offset += a_step;
    b_offset += b_step;
    if constexpr (K != 1) {
      px += bk;
      while (px >= W) {  // more than once only when W < 16
        px -= W;
        ++py;
      }
      while (py >= H) py -= H;  // into the next image (the offsets are in pixels, no skip)
    }
  };

  // ---- per-lane ldmatrix.trans row addresses inside a stage, computed once ----
  // Lane l gives row l % 8 of matrix l / 8. A m-tile i (channels wm*64 + 16i): matrices (pixels
  // 0-7, ch +0), (0-7, +8), (8-15, +0), (8-15, +8) = a0..a3. B n-tile pair jp (channels wn*64 +
  // 16jp): (0-7, +0), (8-15, +0), (0-7, +8), (8-15, +8) = b[2jp][0], b[2jp][1], b[2jp+1][0], b[2jp+1][1].
  const int mat = lane / 8;
  int a_lane[4], b_lane[4];
  KILN_UNROLL
  for (int i = 0; i < 4; ++i) {
    a_lane[i] = mma_bf16_wgrad::index(lane % 8 + 8 * (mat / 2), wm * 8 + 2 * i + mat % 2, T::row_floats);
    b_lane[i] = mma_bf16_wgrad::index(lane % 8 + 8 * (mat % 2), wn * 8 + 2 * i + mat / 2, T::row_floats);
  }

  float acc[4][8][4];
  mma_pipeline::zero(acc);
  mma_pipeline::run<mma_bf16_wgrad::stages>(k_steps, load_stage, [&](int stage) {
    const float* as = shared + stage * T::stage_floats;
    const float* bs = as + T::a_floats;
    std::uint32_t a[4][4], b[8][2];
    KILN_UNROLL
    for (int i = 0; i < 4; ++i) mma::ldmatrix_x4_trans(a[i], as + a_lane[i]);
    KILN_UNROLL
    for (int jp = 0; jp < 4; ++jp) {
      std::uint32_t q[4];
      mma::ldmatrix_x4_trans(q, bs + b_lane[jp]);
      b[2 * jp][0] = q[0];
      b[2 * jp][1] = q[1];
      b[2 * jp + 1][0] = q[2];
      b[2 * jp + 1][1] = q[3];
    }
    KILN_UNROLL
    for (int i = 0; i < 4; ++i) {
      KILN_UNROLL
      for (int j = 0; j < 8; ++j) mma::mma_bf16_m16n8k16(acc[i][j], a[i], b[j], acc[i][j]);
    }
  });

  bool split = false;
  if (!mma_pipeline::wgrad_stores<T::threads>(acc, partials, counters, tid, shared, split)) return;
  mma_pipeline::store_wgrad<KK>(acc, out, split, tap, m0 + wm * mma_bf16_wgrad::warp_tile,
                                n0 + wn * mma_bf16_wgrad::warp_tile, n0, cout, cin, lane);
}

namespace mma_bf16_wgrad {

// The kernel of a shape: K and the block tile (mma_wgrad::block_tile); no channel-tail variant (the
// copies are padded with zeros).
template <class Run>
void dispatch(const ConvShape& s, Run&& run) {
  const bool wide = mma_wgrad::block_tile(s) == 128;
  if (s.k == 3)
    wide ? run.template operator()<3, 128>() : run.template operator()<3, 64>();
  else
    wide ? run.template operator()<1, 128>() : run.template operator()<1, 64>();
}

// dw += the weight gradient of y = conv(x, w) from dy. `workspace`: layout(s).total floats,
// 16-byte aligned; with dy_copied, dy's NHWC copy is already at layout(s).dy_copy (the input
// gradient's). With `unsplit` the kernel adds to dw itself. `counters`: as mma_wgrad::backward_weight's.
inline void backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw, float* workspace,
                            bool dy_copied = false, bool unsplit = false, kiln::gpu::stream_handle stream = nullptr,
                            unsigned* counters = nullptr) {
  if (!supports(s))
    throw kiln::gpu::Error("conv2d_mma_bf16_wgrad: unsupported shape (K must be 1 or 3, tensors under 2^31 elements)");
  if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_in == 0 || s.c_out == 0) return;
  const Layout l = layout(s);
  auto* dyh = reinterpret_cast<__nv_bfloat16*>(workspace + l.dy_copy);
  auto* xh = reinterpret_cast<__nv_bfloat16*>(workspace + l.x_copy);
  if (!dy_copied) mma_bf16::to_nhwc(s.n, s.c_out, s.h * s.w, dy, dyh, stream);
  mma_bf16::to_nhwc(s.n, s.c_in, s.h * s.w, x, xh, stream);
  mma_wgrad::Splits sp = mma_wgrad::split_k(s, mma_wgrad::single_tap(s));  // (no stream-K schedule here)
  if (sp.stream_k) throw kiln::gpu::Error("conv2d_mma_bf16_wgrad: no stream-K schedule (mma_wgrad::split_k)");
  if (unsplit) sp = mma_wgrad::Splits{1, static_cast<int>((s.n * s.h * s.w + bk - 1) / bk)};
  float* partials = workspace + l.partials;
  const bool one = sp.count > 1 && sp.one_launch && counters != nullptr;
  float* out = sp.count > 1 && !one ? partials : dw;
  dispatch(s, [&]<int K, int BT>() {
    KILN_LAUNCH((conv2d_mma_bf16_wgrad_kernel<K, BT>), mma_wgrad::grid(s, mma_wgrad::single_tap(s), sp.count),
                dim3(Tile<BT>::threads), Tile<BT>::shared_bytes, stream, s, static_cast<const __nv_bfloat16*>(xh),
                static_cast<const __nv_bfloat16*>(dyh), out, sp.steps_per_split, one ? partials : nullptr,
                one ? counters : nullptr);
    if (sp.count > 1 && !one)
      KILN_LAUNCH(conv2d_mma_wgrad_reduce_kernel<K>, dim3(mma_wgrad::reduce_blocks(s)),
                  dim3(mma_wgrad::reduce_block_threads(K)), 0, stream, s, static_cast<const float*>(partials), sp.count,
                  dw);
  });
}

}  // namespace mma_bf16_wgrad

}  // namespace kiln::cuda::kernels
