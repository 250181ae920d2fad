#pragma once
// Conv2d kernels: stride 1, zero padding K/2, NCHW, weight [Cout, Cin, K, K] (kiln::ConvShape).
// The CPU oracle is kiln::cpu::reference::conv2d_forward / conv2d_backward.
// Under strict fp32 Backend<Cuda> runs these only where the SIMT implicit GEMMs (conv2d_simt.cuh,
// conv2d_simt_wgrad.cuh) do not: K other than 1 and 3, no planned workspace (forward and input
// gradient), tensors past 32-bit offsets.
//
// Forward and input gradient are shared-memory tiled direct convolutions: a block of
// conv_tile x conv_tile threads computes one output tile for conv_channels_per_block output
// channels (forward) or input channels (input gradient). Per reduction channel it stages the
// input tile with its halo ((T+K-1)^2 floats) and the block's K*K weights in dynamic shared memory.
// The weight gradient is one block per (output, input) channel pair reducing over N*H*W
// (block_all_sum, deterministic). The bias gradient is reduce.cuh's per-channel sum (backend.hpp).
//
// KT is the kernel size when known at compile time (1 and 3 are instantiated by the launcher,
// with fully unrolled loops); KT = 0 reads it from s.k at run time (any odd K).
#include <cstdint>

#include "block_reduce.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

inline constexpr int conv_tile = 16;               // output tile side = block side (256 threads)
inline constexpr int conv_channels_per_block = 8;  // output (fwd) / input (bwd-data) channels per block

// Shared floats the tiled kernels need for kernel size k.
inline constexpr int conv_tile_shared_floats(int k) {
  return (conv_tile + k - 1) * (conv_tile + k - 1) + conv_channels_per_block * k * k;
}

// tile[i][j] = plane[top + i][left + j] for an S x S window, 0 outside the H x W plane
// (the halo the forward and data-gradient kernels need), loaded by `threads` threads.
__device__ __forceinline__ void load_halo_tile(float* tile, const float* plane, int top, int left, int S, int H, int W,
                                               int tid, int threads) {
  for (int i = tid; i < S * S; i += threads) {
    const int iy = top + i / S, ix = left + i % S;
    tile[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? plane[iy * W + ix] : 0.0f;
  }
}

// grid (tiles_h * tiles_w, ceil(Cout / CPB), N), block (T, T), shared conv_tile_shared_floats(K).
// y[n][o][i][j] = b[o] + sum_{c,u,v} x[n][c][i+u-p][j+v-p] * w[o][c][u][v]
template <int KT>
__global__ void conv2d_forward_kernel(ConvShape s, const float* x, const float* w, const float* b, float* y) {
  constexpr int T = conv_tile, CPB = conv_channels_per_block;
  const int K = KT > 0 ? KT : static_cast<int>(s.k), KK = K * K, P = K / 2, S = T + K - 1;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w);
  const int cin = static_cast<int>(s.c_in), cout = static_cast<int>(s.c_out);
  const int tiles_w = (W + T - 1) / T;
  const int y0 = static_cast<int>(blockIdx.x) / tiles_w * T, x0 = static_cast<int>(blockIdx.x) % tiles_w * T;
  const int o0 = static_cast<int>(blockIdx.y) * CPB;
  const std::int64_t n = blockIdx.z;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * T + tx;
  float* in_tile = kiln::gpu::dynamic_shared<float>();  // [S][S]: x rows y0-P .. y0+T-1+P
  float* w_tile = in_tile + S * S;                      // [CPB][K*K]

  float acc[CPB];
  KILN_UNROLL
  for (int j = 0; j < CPB; ++j) acc[j] = 0.0f;

  for (int c = 0; c < cin; ++c) {
    const float* plane = x + (n * cin + c) * H * W;
    load_halo_tile(in_tile, plane, y0 - P, x0 - P, S, H, W, tid, T * T);
    for (int i = tid; i < CPB * KK; i += T * T) {
      const int o = o0 + i / KK;
      w_tile[i] = o < cout ? w[(static_cast<std::int64_t>(o) * cin + c) * KK + i % KK] : 0.0f;
    }
    __syncthreads();
    for (int u = 0; u < K; ++u)
      for (int v = 0; v < K; ++v) {
        const float xv = in_tile[(ty + u) * S + tx + v];  // x[n][c][y0+ty+u-P][x0+tx+v-P]
        KILN_UNROLL
        for (int j = 0; j < CPB; ++j) acc[j] += xv * w_tile[j * KK + u * K + v];
      }
    __syncthreads();
  }
  const int oy = y0 + ty, ox = x0 + tx;
  if (oy < H && ox < W) {
    KILN_UNROLL
    for (int j = 0; j < CPB; ++j) {
      const int o = o0 + j;
      if (o < cout) y[((n * cout + o) * H + oy) * W + ox] = acc[j] + (b ? b[o] : 0.0f);
    }
  }
}

// The input gradient, a convolution of dy with the flipped, transposed weights (overwrites dx):
// dx[n][c][i][j] = sum_{o,u,v} dy[n][o][i+p-u][j+p-v] * w[o][c][u][v]
// grid (tiles_h * tiles_w, ceil(Cin / CPB), N), block (T, T), shared conv_tile_shared_floats(K).
template <int KT>
__global__ void conv2d_backward_data_kernel(ConvShape s, const float* w, const float* dy, float* dx) {
  constexpr int T = conv_tile, CPB = conv_channels_per_block;
  const int K = KT > 0 ? KT : static_cast<int>(s.k), KK = K * K, P = K / 2, S = T + K - 1;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w);
  const int cin = static_cast<int>(s.c_in), cout = static_cast<int>(s.c_out);
  const int tiles_w = (W + T - 1) / T;
  const int y0 = static_cast<int>(blockIdx.x) / tiles_w * T, x0 = static_cast<int>(blockIdx.x) % tiles_w * T;
  const int c0 = static_cast<int>(blockIdx.y) * CPB;
  const std::int64_t n = blockIdx.z;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * T + tx;
  float* g_tile = kiln::gpu::dynamic_shared<float>();  // [S][S]: dy rows y0-P .. y0+T-1+P
  float* w_tile = g_tile + S * S;                      // [CPB][K*K]: w[o][c0+j][u][v]

  float acc[CPB];
  KILN_UNROLL
  for (int j = 0; j < CPB; ++j) acc[j] = 0.0f;

  for (int o = 0; o < cout; ++o) {
    const float* plane = dy + (n * cout + o) * H * W;
    load_halo_tile(g_tile, plane, y0 - P, x0 - P, S, H, W, tid, T * T);
    for (int i = tid; i < CPB * KK; i += T * T) {
      const int c = c0 + i / KK;
      w_tile[i] = c < cin ? w[(static_cast<std::int64_t>(o) * cin + c) * KK + i % KK] : 0.0f;
    }
    __syncthreads();
    for (int u = 0; u < K; ++u)
      for (int v = 0; v < K; ++v) {
        // dy row i+p-u sits at tile row (i - y0) + P + P - u = ty + (K-1-u)
        const float g = g_tile[(ty + K - 1 - u) * S + tx + K - 1 - v];
        KILN_UNROLL
        for (int j = 0; j < CPB; ++j) acc[j] += g * w_tile[j * KK + u * K + v];
      }
    __syncthreads();
  }
  const int iy = y0 + ty, ix = x0 + tx;
  if (iy < H && ix < W) {
    KILN_UNROLL
    for (int j = 0; j < CPB; ++j) {
      const int c = c0 + j;
      if (c < cin) dx[((n * cin + c) * H + iy) * W + ix] = acc[j];
    }
  }
}

// The weight gradient (accumulated): grid (Cin, Cout), 1-D block of 256 threads.
// dw[o][c][u][v] += sum_{n,i,j} dy[n][o][i][j] * x[n][c][i+u-p][j+v-p]
// With KT > 0 each thread keeps all K*K partial sums (one pass over the pixels); with KT = 0 the
// taps are reduced one after another.
template <int KT>
__global__ void conv2d_backward_weight_kernel(ConvShape s, const float* x, const float* dy, float* dw) {
  const int K = KT > 0 ? KT : static_cast<int>(s.k), KK = K * K, P = K / 2;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w);
  const std::int64_t cin = s.c_in, cout = s.c_out, hw = s.h * s.w, total = s.n * hw;
  const std::int64_t c = blockIdx.x, o = blockIdx.y;
  float* dwp = dw + (o * cin + c) * KK;
  if constexpr (KT > 0) {
    float acc[KT * KT];
    KILN_UNROLL
    for (int t = 0; t < KT * KT; ++t) acc[t] = 0.0f;
    for (std::int64_t q = threadIdx.x; q < total; q += blockDim.x) {  // q = n * hw + i * W + j
      const std::int64_t n = q / hw;
      const int i = static_cast<int>(q % hw) / W, j = static_cast<int>(q % hw) % W;
      const float g = dy[(n * cout + o) * hw + i * W + j];
      const float* plane = x + (n * cin + c) * hw;
      KILN_UNROLL
      for (int u = 0; u < KT; ++u) {
        KILN_UNROLL
        for (int v = 0; v < KT; ++v) {
          const int ii = i + u - P, jj = j + v - P;
          if (ii >= 0 && ii < H && jj >= 0 && jj < W) acc[u * KT + v] += g * plane[ii * W + jj];
        }
      }
    }
    KILN_UNROLL
    for (int t = 0; t < KT * KT; ++t) {
      const float sum = block_all_sum(acc[t]);
      if (threadIdx.x == 0) dwp[t] += sum;
    }
  } else {
    for (int t = 0; t < KK; ++t) {
      const int u = t / K, v = t % K;
      float acc = 0.0f;
      for (std::int64_t q = threadIdx.x; q < total; q += blockDim.x) {
        const std::int64_t n = q / hw;
        const int i = static_cast<int>(q % hw) / W, j = static_cast<int>(q % hw) % W;
        const int ii = i + u - P, jj = j + v - P;
        if (ii >= 0 && ii < H && jj >= 0 && jj < W)
          acc += dy[(n * cout + o) * hw + i * W + j] * x[(n * cin + c) * hw + ii * W + jj];
      }
      const float sum = block_all_sum(acc);
      if (threadIdx.x == 0) dwp[t] += sum;
    }
  }
}

}  // namespace kiln::cuda::kernels
