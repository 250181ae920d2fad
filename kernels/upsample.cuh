#pragma once
// Upsample kernels, integer scale (kiln::UpsampleArgs): nearest and bilinear (align_corners = false),
// forward and the adjoint. CPU oracle: kiln/cpu/upsample.hpp. Both backward kernels are gathers
// (one thread per input element summing the outputs that read it): deterministic, no atomics.
#include <cstdint>

#include "block_reduce.cuh"
#include "spatial_grid.cuh"
#include "vector_access.cuh"
#include "kiln/ops/upsample.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// The weight with which output row/column `dst` reads input index `in` (0 if it does not).
__device__ __forceinline__ float bilinear_weight(std::int64_t dst, std::int64_t in, std::int64_t in_size,
                                                 float inv_scale) {
  const BilinearTap t = bilinear_tap_inv(dst, in_size, inv_scale);
  return (t.i0 == in ? t.l0 : 0.0f) + (t.i1 == in ? t.l1 : 0.0f);
}

// Nearest: one thread per INPUT element (ii, jj) of a 2-D grid (spatial_grid.cuh) writes
// its s x s block y[ii*s + u][jj*s + v] = x[ii][jj]; S = 2 writes each block row as one float2.
template <int S>
__global__ void upsample_nearest_forward_kernel(UpsampleArgs a, const float* x, float* y) {
  const std::int64_t s = S ? S : a.scale, ow = a.w * s, planes = a.n * a.c;
  const std::int64_t ii = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const std::int64_t jj = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ii >= a.h || jj >= a.w) return;
  for (std::int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const float v = x[(plane * a.h + ii) * a.w + jj];
    float* yp = y + plane * a.h * s * ow;
    for (std::int64_t u = 0; u < s; ++u) {
      float* row = yp + (ii * s + u) * ow + jj * s;
      if constexpr (S == 2)
        store_floats<2>(row, Floats<2>{{v, v}});
      else
        for (std::int64_t w = 0; w < s; ++w) row[w] = v;
    }
  }
}

// dx[ii][jj] = sum of dy over its s x s block (rows, then columns, as the CPU); one thread per input element.
template <int S>
__global__ void upsample_nearest_backward_kernel(UpsampleArgs a, const float* dy, float* dx) {
  const std::int64_t s = S ? S : a.scale, ow = a.w * s, planes = a.n * a.c;
  const std::int64_t ii = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const std::int64_t jj = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ii >= a.h || jj >= a.w) return;
  for (std::int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const float* gp = dy + plane * a.h * s * ow;
    float sum = 0.0f;
    for (std::int64_t u = 0; u < s; ++u) {
      const float* row = gp + (ii * s + u) * ow + jj * s;
      if constexpr (S == 2) {
        const Floats<2> r = load_floats<2>(row);
        sum += r.v[0];
        sum += r.v[1];
      } else {
        for (std::int64_t w = 0; w < s; ++w) sum += row[w];
      }
    }
    dx[(plane * a.h + ii) * a.w + jj] = sum;
  }
}

// y[i][j] = sum over the 2 x 2 taps of x; one thread per output (i, j) of a 2-D grid.
template <class Float>
__global__ void upsample_bilinear_forward_kernel(UpsampleArgs a, const Float* x, Float* y) {
  const std::int64_t oh = a.h * a.scale, ow = a.w * a.scale, planes = a.n * a.c;
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= oh || j >= ow) return;
  const float inv = bilinear_inv_scale(a.scale);
  const BilinearTap r = bilinear_tap_inv(i, a.h, inv), q = bilinear_tap_inv(j, a.w, inv);
  for (std::int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const Float* xp = x + plane * a.h * a.w;
    y[(plane * oh + i) * ow + j] = r.l0 * (q.l0 * xp[r.i0 * a.w + q.i0] + q.l1 * xp[r.i0 * a.w + q.i1]) +
                                   r.l1 * (q.l0 * xp[r.i1 * a.w + q.i0] + q.l1 * xp[r.i1 * a.w + q.i1]);
  }
}

// The adjoint as a gather: dx[ii][jj] = sum_{i,j} wr(i, ii) * wc(j, jj) * dy[i][j], where w(dst, in)
// is the weight output dst gives input in. Only outputs i in [(ii-1)s, (ii+2)s) can read row ii
// (likewise for columns), so each input element visits at most 3s x 3s outputs. One thread per
// input (ii, jj) of a 2-D grid.
template <class Float>
__global__ void upsample_bilinear_backward_kernel(UpsampleArgs a, const Float* dy, Float* dx) {
  const std::int64_t s = a.scale, oh = a.h * s, ow = a.w * s, planes = a.n * a.c;
  const std::int64_t ii = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const std::int64_t jj = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ii >= a.h || jj >= a.w) return;
  const float inv = bilinear_inv_scale(s);
  const std::int64_t i_begin = ii > 0 ? (ii - 1) * s : 0, i_end = (ii + 2) * s < oh ? (ii + 2) * s : oh;
  const std::int64_t j_begin = jj > 0 ? (jj - 1) * s : 0, j_end = (jj + 2) * s < ow ? (jj + 2) * s : ow;
  for (std::int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const Float* gp = dy + plane * oh * ow;
    Float sum = 0;
    for (std::int64_t i = i_begin; i < i_end; ++i) {
      const float wr = bilinear_weight(i, ii, a.h, inv);
      if (wr == 0.0f) continue;
      Float row = 0;
      for (std::int64_t j = j_begin; j < j_end; ++j) {
        const float wc = bilinear_weight(j, jj, a.w, inv);
        if (wc != 0.0f) row += wc * gp[i * ow + j];
      }
      sum += wr * row;
    }
    dx[(plane * a.h + ii) * a.w + jj] = sum;
  }
}

}  // namespace kiln::cuda::kernels
