#pragma once
// Upsample kernels, integer scale (kiln::UpsampleArgs): nearest and bilinear (align_corners = false),
// forward and the adjoint. CPU oracle: kiln/cpu/upsample.hpp. Both backward kernels are gathers
// (one thread per input element summing the outputs that read it): deterministic, no atomics.
#include <cstdint>

#include "block_reduce.cuh"
#include "kiln/ops/upsample.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// The weight with which output row/column `dst` reads input index `in` (0 if it does not).
__device__ __forceinline__ float bilinear_weight(std::int64_t dst, std::int64_t in, std::int64_t in_size,
                                                 float inv_scale) {
  const BilinearTap t = bilinear_tap_inv(dst, in_size, inv_scale);
  return (t.i0 == in ? t.l0 : 0.0f) + (t.i1 == in ? t.l1 : 0.0f);
}

// y[i][j] = x[i / s][j / s]; one thread per output element.
template <class Float>
__global__ void upsample_nearest_forward_kernel(UpsampleArgs a, const Float* x, Float* y) {
  const std::int64_t oh = a.h * a.scale, ow = a.w * a.scale;
  KILN_GRID_STRIDE_LOOP(o, a.n * a.c * oh * ow) {
    const std::int64_t plane = o / (oh * ow), i = o % (oh * ow) / ow, j = o % ow;
    y[o] = x[plane * a.h * a.w + i / a.scale * a.w + j / a.scale];
  }
}

// dx[i][j] = sum of dy over its s x s block; one thread per input element (overwritten).
template <class Float>
__global__ void upsample_nearest_backward_kernel(UpsampleArgs a, const Float* dy, Float* dx) {
  const std::int64_t oh = a.h * a.scale, ow = a.w * a.scale;
  KILN_GRID_STRIDE_LOOP(e, a.n * a.c * a.h * a.w) {
    const std::int64_t plane = e / (a.h * a.w), i = e % (a.h * a.w) / a.w, j = e % a.w;
    const Float* gp = dy + plane * oh * ow;
    Float sum = 0;
    for (std::int64_t u = 0; u < a.scale; ++u)
      for (std::int64_t v = 0; v < a.scale; ++v) sum += gp[(i * a.scale + u) * ow + j * a.scale + v];
    dx[e] = sum;
  }
}

// y[i][j] = sum over the 2 x 2 taps of x; one thread per output element.
template <class Float>
__global__ void upsample_bilinear_forward_kernel(UpsampleArgs a, const Float* x, Float* y) {
  const std::int64_t oh = a.h * a.scale, ow = a.w * a.scale;
  const float inv = bilinear_inv_scale(a.scale);
  KILN_GRID_STRIDE_LOOP(o, a.n * a.c * oh * ow) {
    const std::int64_t plane = o / (oh * ow), i = o % (oh * ow) / ow, j = o % ow;
    const Float* xp = x + plane * a.h * a.w;
    const BilinearTap r = bilinear_tap_inv(i, a.h, inv), q = bilinear_tap_inv(j, a.w, inv);
    y[o] = r.l0 * (q.l0 * xp[r.i0 * a.w + q.i0] + q.l1 * xp[r.i0 * a.w + q.i1]) +
           r.l1 * (q.l0 * xp[r.i1 * a.w + q.i0] + q.l1 * xp[r.i1 * a.w + q.i1]);
  }
}

// The adjoint as a gather: dx[ii][jj] = sum_{i,j} wr(i, ii) * wc(j, jj) * dy[i][j], where w(dst, in)
// is the weight output dst gives input in. Only outputs i in [(ii-1)s, (ii+2)s) can read row ii
// (likewise for columns), so each input element visits at most 3s x 3s outputs.
template <class Float>
__global__ void upsample_bilinear_backward_kernel(UpsampleArgs a, const Float* dy, Float* dx) {
  const std::int64_t s = a.scale, oh = a.h * s, ow = a.w * s;
  const float inv = bilinear_inv_scale(s);
  KILN_GRID_STRIDE_LOOP(e, a.n * a.c * a.h * a.w) {
    const std::int64_t plane = e / (a.h * a.w), ii = e % (a.h * a.w) / a.w, jj = e % a.w;
    const Float* gp = dy + plane * oh * ow;
    const std::int64_t i_begin = ii > 0 ? (ii - 1) * s : 0, i_end = (ii + 2) * s < oh ? (ii + 2) * s : oh;
    const std::int64_t j_begin = jj > 0 ? (jj - 1) * s : 0, j_end = (jj + 2) * s < ow ? (jj + 2) * s : ow;
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
    dx[e] = sum;
  }
}

}  // namespace kiln::cuda::kernels
