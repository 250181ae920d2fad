#pragma once
// Conv2d with a stride > 1 (kiln::StridedConvShape: zero padding K/2, NCHW, weight [Cout, Cin, K, K]):
// simple, correct kernels for the general case; the stride-1 convolutions keep their tiled and
// tensor-core kernels (conv2d.cuh, conv2d_mma*.cuh). CPU oracle: kiln/cpu/conv2d_strided.hpp.
//   forward:      one thread per output element: spatial_grid(Ho, Wo, N*Cout) (spatial_grid.cuh)
//   input grad:   one thread per input element, spatial_grid(H, W, N*Cin), gathering the outputs
//                 whose window covers it: the taps that land on a whole output step are found once
//                 per thread (the divisions by the stride), then walked with adds
//   weight grad:  one block per (input, output) channel pair, each tap reduced over N*Ho*Wo with
//                 block_all_sum (deterministic; a thread's positions walked by a cursor); accumulated
//   bias grad:    reduce.cuh's per-channel sum (Backend<Cuda>::bias_gradient) over the Ho x Wo output
// Row and column come from the block and thread indices and the (image, channel) from PlaneCursor:
// no 64-bit division in any loop (tests/nvcc/sass_thresholds.json). The sums run in the CPU's order.
#include <cstdint>

#include "block_reduce.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"
#include "spatial_grid.cuh"

namespace kiln::cuda::kernels {

// The output extent of a strided convolution (StridedConvShape's members are host functions).
__device__ __forceinline__ std::int64_t strided_out(std::int64_t size, std::int64_t k, std::int64_t stride) {
  return (size + 2 * (k / 2) - k) / stride + 1;
}

// y[n][o][i][j] = b[o] + sum_{c,u,v} x[n][c][i*S+u-P][j*S+v-P] * w[o][c][u][v]
template <class Float>
__global__ void conv2d_strided_forward_kernel(StridedConvShape s, const Float* x, const Float* w, const Float* b,
                                              Float* y) {
  const std::int64_t K = s.k, P = s.k / 2, H = s.h, W = s.w, Ho = strided_out(H, K, s.stride),
                     Wo = strided_out(W, K, s.stride);
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= Ho || j >= Wo) return;
  // The window's taps inside the image: rows u in [u0, u1), columns v in [v0, v1).
  const std::int64_t top = i * s.stride - P, left = j * s.stride - P;
  const std::int64_t u0 = top < 0 ? -top : 0, u1 = H - top < K ? H - top : K;
  const std::int64_t v0 = left < 0 ? -left : 0, v1 = W - left < K ? W - left : K;
  const std::int64_t corner = top * W + left;  // the window's (0, 0) in its plane (may be outside)
  for (PlaneCursor p(s.c_out); p.n < s.n; p.next()) {
    const Float* xp = x + p.n * s.c_in * H * W;
    const Float* wp = w + p.c * s.c_in * K * K;
    Float acc = 0;
    for (std::int64_t c = 0; c < s.c_in; ++c, xp += H * W, wp += K * K)
      for (std::int64_t u = u0; u < u1; ++u)
        for (std::int64_t v = v0; v < v1; ++v) acc += xp[corner + u * W + v] * wp[u * K + v];
    y[((p.n * s.c_out + p.c) * Ho + i) * Wo + j] = acc + (b ? b[p.c] : Float(0));
  }
}

// dx[n][c][ii][jj] = sum over (o, u, v) with (ii + P - u) = i*S, (jj + P - v) = j*S inside the output
// of dy[n][o][i][j] * w[o][c][u][v] (overwritten).
template <class Float>
__global__ void conv2d_strided_backward_data_kernel(StridedConvShape s, const Float* w, const Float* dy, Float* dx) {
  const std::int64_t K = s.k, P = s.k / 2, S = s.stride, H = s.h, W = s.w, Ho = strided_out(H, K, S),
                     Wo = strided_out(W, K, S);
  const std::int64_t ii = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const std::int64_t jj = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ii >= H || jj >= W) return;
  // The first tap u whose output row i = (ii + P - u) / S is whole and < Ho; later taps: u += S, i -= 1
  // while u < K and i >= 0. The same for the columns.
  const auto first_tap = [&](std::int64_t t, std::int64_t out, std::int64_t& tap, std::int64_t& at) {
    tap = t % S;
    at = t / S;
    if (at >= out) {
      tap += (at - out + 1) * S;
      at = out - 1;
    }
  };
  std::int64_t u0, i0, v0, j0;
  first_tap(ii + P, Ho, u0, i0);
  first_tap(jj + P, Wo, v0, j0);
  for (PlaneCursor p(s.c_in); p.n < s.n; p.next()) {
    const Float* g = dy + p.n * s.c_out * Ho * Wo;
    const Float* wp = w + p.c * K * K;
    Float acc = 0;
    for (std::int64_t o = 0; o < s.c_out; ++o, g += Ho * Wo, wp += s.c_in * K * K)
      for (std::int64_t u = u0, i = i0; u < K && i >= 0; u += S, --i)
        for (std::int64_t v = v0, j = j0; v < K && j >= 0; v += S, --j) acc += g[i * Wo + j] * wp[u * K + v];
    dx[((p.n * s.c_in + p.c) * H + ii) * W + jj] = acc;
  }
}

// grid (Cin, Cout), 1-D block (multiple of 32). dw[o][c][u][v] += sum_{n,i,j} dy[n][o][i][j] *
// x[n][c][i*S+u-P][j*S+v-P]
template <class Float>
__global__ void conv2d_strided_backward_weight_kernel(StridedConvShape s, const Float* x, const Float* dy, Float* dw) {
  const std::int64_t K = s.k, P = s.k / 2, S = s.stride, H = s.h, W = s.w, Ho = strided_out(H, K, S),
                     Wo = strided_out(W, K, S);
  const std::int64_t c = blockIdx.x, o = blockIdx.y;
  // A thread's positions q = (n * Ho + i) * Wo + j: threadIdx.x, then steps of blockDim.x, as (n, i, j)
  // advanced by (dn, di, dj) with carries (the divisions once, outside the loops).
  const std::int64_t t0 = threadIdx.x, step = blockDim.x;
  const std::int64_t j0 = t0 % Wo, i0 = t0 / Wo % Ho, n0 = t0 / (Wo * Ho);
  const std::int64_t dj = step % Wo, di = step / Wo % Ho, dn = step / (Wo * Ho);
  for (std::int64_t u = 0; u < K; ++u)
    for (std::int64_t v = 0; v < K; ++v) {
      Float acc = 0;
      for (std::int64_t n = n0, i = i0, j = j0; n < s.n;) {
        const std::int64_t ii = i * S + u - P, jj = j * S + v - P;
        if (ii >= 0 && ii < H && jj >= 0 && jj < W)
          acc += dy[((n * s.c_out + o) * Ho + i) * Wo + j] * x[((n * s.c_in + c) * H + ii) * W + jj];
        j += dj;
        i += di;
        n += dn;
        if (j >= Wo) {
          j -= Wo;
          ++i;
        }
        if (i >= Ho) {
          i -= Ho;
          ++n;
        }
      }
      const Float sum = block_all_sum(acc);
      if (threadIdx.x == 0) dw[((o * s.c_in + c) * K + u) * K + v] += sum;
    }
}

}  // namespace kiln::cuda::kernels
