#pragma once
// The strict-fp32 weight gradient (stride 1, zero padding K/2, NCHW, K = 1 or 3) as a SIMT implicit
// GEMM with conv2d_simt.cuh's thread core (8 x 8 or 8 x 4 fp32 accumulators per thread, k steps
// of 8, two shared-memory stages, one barrier per step): Backend<Cuda>'s MathMode::strict_fp32
// weight gradient wherever simt_wgrad::supports() holds (else conv2d_backward_weight_kernel).
//
// The GEMM, with the filter taps as its M dimension (Cin*K*K is 9-4608 on the U-Net, Cout 32-512):
//   D[M = Cin*K*K][N = Cout] = X[M][Kg] * DY[Kg][Cout],  Kg = the N*H*W pixels,
//   row r = c*K*K + t (dw's own order), X(r, p) = x[img][c][py+u-P][px+v-P] (0 outside the image),
//   DY(p, o) = dy[img][o][py][px];  dw[o][r] += D[r][o].
// Split-K over the pixels: split z of S reduces pixel steps [z*steps/S, (z+1)*steps/S) of 8 pixels
// each; with S = 1 the block adds its sums to dw directly, else it writes them to
// partials[z][o][r] and conv2d_simt_wgrad_reduce_kernel adds the S partials to dw in split order:
// the result does not depend on the schedule.
// Stages: X [8][128 + 4] and DY [8][BN + 4] (pixel-major; the 4-float row padding makes the
// copies' scalar stores conflict-free: a warp stores 8 pixels x 4 rows). Thread copy roles: pixel
// q = tid % 8 of the step, X rows tid / 8 + 32 j (j < 4), DY columns tid / 8 + 32 j (j < BN/32).
// Each thread walks its pixel (img, py, px) with adds (no division in the k loop). Fragment reads
// as in the forward (simt_conv::fma_step): float4 of X rows tm*4 (+64), float4 of DY columns tn*4 (+64).
#include <cstddef>
#include <cstdint>

#include "conv2d_simt.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

namespace simt_wgrad {

inline constexpr int bm = 128, bk = 8, threads = 256;
static_assert(bk == simt_conv::bk, "the k step of simt_conv::fma_step");

template <int BN>
struct Tile {
  static_assert(BN == 64 || BN == 128, "block tiles are 128 x 64 or 128 x 128");
  static constexpr int tn = BN / 16;
  static constexpr int a_row = bm + 4, b_row = BN + 4;  // padded stage rows (floats)
  static constexpr int a_floats = bk * a_row, b_floats = bk * b_row, stage_floats = a_floats + b_floats;
  static constexpr std::size_t shared_bytes = sizeof(float) * 2 * stage_floats;
};

inline bool supports(const ConvShape& s) {
  const std::int64_t limit = std::int64_t{1} << 31;
  return (s.k == 1 || s.k == 3) && s.n * s.c_in * s.h * s.w < limit && s.n * s.c_out * s.h * s.w < limit &&
         s.c_out * s.c_in * s.k * s.k < limit / 64;
}
// 128 x 64 for every shape: the 128 x 128 variant needs more than the 128 registers of two blocks
// per SM (nvcc 13 spills 9-18 local accesses in <3, 128>).
inline int block_n(const ConvShape&) { return 64; }

inline std::int64_t pixel_steps(const ConvShape& s) { return (s.n * s.h * s.w + bk - 1) / bk; }
inline std::int64_t tiles(const ConvShape& s) {
  const int bn = block_n(s);
  return (s.c_in * s.k * s.k + bm - 1) / bm * ((s.c_out + bn - 1) / bn);
}
// Splits of the pixel range: enough blocks for two per SM of a 132-SM GPU, each split at least 32
// pixel steps (256 pixels), at most 64 splits.
inline int splits(const ConvShape& s) {
  const std::int64_t want = (264 + tiles(s) - 1) / tiles(s), most = pixel_steps(s) / 32;
  std::int64_t n = want < most ? want : most;
  if (n > 64) n = 64;
  return n < 1 ? 1 : static_cast<int>(n);
}
inline std::int64_t weights(const ConvShape& s) { return s.c_out * s.c_in * s.k * s.k; }
// The partial sums of a split launch (0 for an unsplit one).
inline std::int64_t workspace_floats(const ConvShape& s) { return splits(s) > 1 ? splits(s) * weights(s) : 0; }

}  // namespace simt_wgrad

// grid (ceil(Cin*K*K / 128), ceil(Cout / BN), splits), block simt_wgrad::threads, dynamic shared
// memory Tile<BN>::shared_bytes. partials == nullptr: dw += D; else partials[split] = D.
template <int K, int BN>
__global__ void __launch_bounds__(simt_wgrad::threads, 2)
    conv2d_simt_wgrad_kernel(ConvShape s, const float* x, const float* dy, float* dw, float* partials) {
  using Tl = simt_wgrad::Tile<BN>;
  using simt_wgrad::bk;
  using simt_wgrad::bm;
  constexpr int KK = K * K, P = K / 2, TN = Tl::tn, BJ = BN / 32;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w), HW = H * W;
  const int cin = static_cast<int>(s.c_in), cout = static_cast<int>(s.c_out), rows = cin * KK;
  const int pixels = static_cast<int>(s.n) * HW;
  const int steps = (pixels + bk - 1) / bk, split_count = static_cast<int>(gridDim.z), z = static_cast<int>(blockIdx.z);
  const int step_begin = static_cast<int>(static_cast<std::int64_t>(steps) * z / split_count);
  const int step_end = static_cast<int>(static_cast<std::int64_t>(steps) * (z + 1) / split_count);
  const int k_steps = step_end - step_begin;
  const int tid = static_cast<int>(threadIdx.x), tm = tid % 16, tn = tid / 16;
  const int r0 = static_cast<int>(blockIdx.x) * bm, n0 = static_cast<int>(blockIdx.y) * BN;
  float* shared = kiln::gpu::dynamic_shared<float>();

  // ---- per-thread copy state, computed once ----
  const int q = tid % bk, lane_row = tid / bk;  // this thread's pixel of a step; first row / column
  // X rows lane_row + 32 j: the offset of x[0][c][u - P][v - P] and the tap (du, dv) = (u - P, v - P);
  // a row past Cin*K*K gets du far outside every image (its offset stays 0: no overflow).
  int x_offset[4], x_du[4], x_dv[4];
  KILN_UNROLL
  for (int j = 0; j < 4; ++j) {
    const int r = r0 + lane_row + 32 * j, c = r / KK, t = r - c * KK;
    x_du[j] = r < rows ? t / K - P : -(1 << 30);
    x_dv[j] = t % K - P;
    x_offset[j] = r < rows ? c * HW + (t / K - P) * W + x_dv[j] : 0;
  }
  // DY columns lane_row + 32 j: the offset o * HW, -1 past Cout.
  int dy_channel[BJ];
  KILN_UNROLL
  for (int j = 0; j < BJ; ++j) {
    const int o = n0 + lane_row + 32 * j;
    dy_channel[j] = o < cout ? o * HW : -1;
  }
  // The pixel being loaded: p = (step_begin + step) * 8 + q, as (img, py, px).
  int p = step_begin * bk + q, img, py, px;
  {
    img = p / HW;
    const int hw = p - img * HW;
    py = hw / W;
    px = hw - py * W;
  }
  const int a_dst = q * Tl::a_row + lane_row, b_dst = Tl::a_floats + q * Tl::b_row + lane_row;

  float a_next[4], b_next[BJ];
  auto load_global = [&]() {
    const bool pixel_ok = p < pixels;
    const float* xi = x + (img * cin * HW + py * W + px);
    const float* dyi = dy + (img * cout * HW + py * W + px);
    KILN_UNROLL
    for (int j = 0; j < 4; ++j) {
      const int iy = py + x_du[j], ix = px + x_dv[j];
      const bool ok = pixel_ok && static_cast<unsigned>(iy) < static_cast<unsigned>(H) &&
                      static_cast<unsigned>(ix) < static_cast<unsigned>(W);
      a_next[j] = ok ? xi[x_offset[j]] : 0.0f;
    }
    KILN_UNROLL
    for (int j = 0; j < BJ; ++j) b_next[j] = pixel_ok && dy_channel[j] >= 0 ? dyi[dy_channel[j]] : 0.0f;
    // next pixel: 8 further on (W may be smaller than 8: at most 8 / W + 1 row wraps)
    p += bk;
    px += bk;
    while (px >= W) {
      px -= W;
      if (++py == H) {
        py = 0;
        ++img;
      }
    }
  };
  auto store_shared = [&](int stage) {
    float* st = shared + stage * Tl::stage_floats;
    KILN_UNROLL
    for (int j = 0; j < 4; ++j) st[a_dst + 32 * j] = a_next[j];
    KILN_UNROLL
    for (int j = 0; j < BJ; ++j) st[b_dst + 32 * j] = b_next[j];
  };

  float acc[8][TN];
  KILN_UNROLL
  for (int i = 0; i < 8; ++i) {
    KILN_UNROLL
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
  }
  auto compute = [&](int stage) {
    simt_conv::fma_step<TN, Tl::a_row, Tl::b_row>(shared + stage * Tl::stage_floats + tm * 4,
                                                  shared + stage * Tl::stage_floats + Tl::a_floats + tn * 4, acc);
  };
  auto step = [&](int stage, int k_step) {
    const bool more = k_step + 1 < k_steps;
    if (more) load_global();
    compute(stage);
    if (more) {
      store_shared(stage ^ 1);
      __syncthreads();
    }
  };

  if (k_steps > 0) {
    load_global();
    store_shared(0);
    __syncthreads();
    for (int k_step = 0; k_step < k_steps; k_step += 2) {
      step(0, k_step);
      if (k_step + 1 < k_steps) step(1, k_step + 1);
    }
  }

  // ---- epilogue: dw[o][r] (+)= D[r][o] ----
  float* out = partials != nullptr ? partials + static_cast<std::int64_t>(z) * cout * rows : dw;
  KILN_UNROLL
  for (int i = 0; i < 8; ++i) {
    const int r = r0 + (i / 4) * 64 + tm * 4 + i % 4;
    if (r >= rows) continue;
    KILN_UNROLL
    for (int j = 0; j < TN; ++j) {
      const int o = n0 + (j / 4) * 64 + tn * 4 + j % 4;
      if (o >= cout) continue;
      if (partials != nullptr)
        out[o * rows + r] = acc[i][j];
      else
        out[o * rows + r] += acc[i][j];
    }
  }
}

// dw[i] += partials[0][i] + partials[1][i] + ... (split order). Grid-stride, 32-bit indices.
template <class T>
__global__ void conv2d_simt_wgrad_reduce_kernel(int weights, int split_count, const T* partials, T* dw) {
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < weights;
       i += static_cast<int>(gridDim.x * blockDim.x)) {
    T sum = partials[i];
    for (int z = 1; z < split_count; ++z) sum += partials[z * weights + i];
    dw[i] += sum;
  }
}

}  // namespace kiln::cuda::kernels
