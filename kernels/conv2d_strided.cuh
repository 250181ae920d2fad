#pragma once
// Conv2d with a stride > 1 (kiln::StridedConvShape: zero padding K/2, NCHW, weight [Cout, Cin, K, K]):
// simple, correct kernels for the general case; the stride-1 convolutions keep their tiled and
// tensor-core kernels (conv2d.cuh, conv2d_igemm.cuh). CPU oracle: kiln/cpu/conv2d_strided.hpp.
//   forward:      one thread per output element (grid-stride)
//   input grad:   one thread per input element, gathering the outputs whose window covers it
//   weight grad:  one block per (input, output) channel pair, each tap reduced over N*Ho*Wo with
//                 block_all_sum (deterministic); accumulated
//   bias grad:    reduce.cuh's per-channel sum (Backend<Cuda>::bias_gradient) over the Ho x Wo output
#include <cstdint>

#include "block_reduce.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// y[n][o][i][j] = b[o] + sum_{c,u,v} x[n][c][i*S+u-P][j*S+v-P] * w[o][c][u][v]
template <class Float>
__global__ void conv2d_strided_forward_kernel(StridedConvShape s, const Float* x, const Float* w, const Float* b,
                                              Float* y) {
  // (P, Ho, Wo spelled out: StridedConvShape's members are host functions)
  const std::int64_t K = s.k, P = s.k / 2, S = s.stride, H = s.h, W = s.w, Ho = (H + 2 * P - K) / S + 1,
                     Wo = (W + 2 * P - K) / S + 1;
  KILN_GRID_STRIDE_LOOP(q, s.n * s.c_out * Ho * Wo) {  // q = ((n * Cout + o) * Ho + i) * Wo + j
    const std::int64_t j = q % Wo, i = q / Wo % Ho, o = q / (Wo * Ho) % s.c_out, n = q / (Wo * Ho * s.c_out);
    Float acc = 0;
    for (std::int64_t c = 0; c < s.c_in; ++c) {
      const Float* xp = x + (n * s.c_in + c) * H * W;
      const Float* wp = w + (o * s.c_in + c) * K * K;
      for (std::int64_t u = 0; u < K; ++u) {
        const std::int64_t ii = i * S + u - P;
        if (ii < 0 || ii >= H) continue;
        for (std::int64_t v = 0; v < K; ++v) {
          const std::int64_t jj = j * S + v - P;
          if (jj >= 0 && jj < W) acc += xp[ii * W + jj] * wp[u * K + v];
        }
      }
    }
    y[q] = acc + (b ? b[o] : Float(0));
  }
}

// dx[n][c][ii][jj] = sum over (o, u, v) with (ii + P - u) = i*S, (jj + P - v) = j*S inside the output
// of dy[n][o][i][j] * w[o][c][u][v] (overwritten).
template <class Float>
__global__ void conv2d_strided_backward_data_kernel(StridedConvShape s, const Float* w, const Float* dy, Float* dx) {
  // (P, Ho, Wo spelled out: StridedConvShape's members are host functions)
  const std::int64_t K = s.k, P = s.k / 2, S = s.stride, H = s.h, W = s.w, Ho = (H + 2 * P - K) / S + 1,
                     Wo = (W + 2 * P - K) / S + 1;
  KILN_GRID_STRIDE_LOOP(q, s.n * s.c_in * H * W) {  // q = ((n * Cin + c) * H + ii) * W + jj
    const std::int64_t jj = q % W, ii = q / W % H, c = q / (W * H) % s.c_in, n = q / (W * H * s.c_in);
    Float acc = 0;
    for (std::int64_t o = 0; o < s.c_out; ++o) {
      const Float* g = dy + (n * s.c_out + o) * Ho * Wo;
      const Float* wp = w + (o * s.c_in + c) * K * K;
      for (std::int64_t u = 0; u < K; ++u) {
        const std::int64_t ti = ii + P - u;  // = i * S
        if (ti < 0 || ti % S != 0 || ti / S >= Ho) continue;
        for (std::int64_t v = 0; v < K; ++v) {
          const std::int64_t tj = jj + P - v;  // = j * S
          if (tj < 0 || tj % S != 0 || tj / S >= Wo) continue;
          acc += g[(ti / S) * Wo + tj / S] * wp[u * K + v];
        }
      }
    }
    dx[q] = acc;
  }
}

// grid (Cin, Cout), 1-D block (multiple of 32). dw[o][c][u][v] += sum_{n,i,j} dy[n][o][i][j] *
// x[n][c][i*S+u-P][j*S+v-P]
template <class Float>
__global__ void conv2d_strided_backward_weight_kernel(StridedConvShape s, const Float* x, const Float* dy, Float* dw) {
  // (P, Ho, Wo spelled out: StridedConvShape's members are host functions)
  const std::int64_t K = s.k, P = s.k / 2, S = s.stride, H = s.h, W = s.w, Ho = (H + 2 * P - K) / S + 1,
                     Wo = (W + 2 * P - K) / S + 1;
  const std::int64_t c = blockIdx.x, o = blockIdx.y, total = s.n * Ho * Wo;
  for (std::int64_t t = 0; t < K * K; ++t) {
    const std::int64_t u = t / K, v = t % K;
    Float acc = 0;
    for (std::int64_t q = threadIdx.x; q < total; q += blockDim.x) {  // q = (n * Ho + i) * Wo + j
      const std::int64_t j = q % Wo, i = q / Wo % Ho, n = q / (Wo * Ho);
      const std::int64_t ii = i * S + u - P, jj = j * S + v - P;
      if (ii >= 0 && ii < H && jj >= 0 && jj < W)
        acc += dy[((n * s.c_out + o) * Ho + i) * Wo + j] * x[((n * s.c_in + c) * H + ii) * W + jj];
    }
    const Float sum = block_all_sum(acc);
    if (threadIdx.x == 0) dw[(o * s.c_in + c) * K * K + t] += sum;
  }
}

}  // namespace kiln::cuda::kernels
