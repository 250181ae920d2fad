#pragma once
// The per-pixel softmax cross-entropy over channels (kiln::SoftmaxXentArgs). CPU oracle:
// kiln/cpu/softmax_xent.hpp. One thread per pixel, on pixel_grid(HW, N) (spatial_grid.cuh: image and
// pixel from the block and thread indices, no division per pixel): the channel loop strides by H*W,
// so the threads of a warp read consecutive pixels of one channel plane (coalesced).
//   softmax_xent_pixel_kernel  per-pixel weighted cross-entropy -> pixel_loss[P]
//   then the mean of pixel_loss: reduce.cuh's two-stage flat sum (flat_sum_partial_kernel,
//                              sum_partials_kernel): deterministic, like the regression losses
//   softmax_xent_backward_kernel: per pixel.
// channel_max is also what kiln/color's annealed-mean kernels use (color/kernels/colour_classes.cuh).
#include <cstdint>
#include <math.h>

#include "kiln/gpu/gpu.hpp"
#include "kiln/ops/softmax_xent.hpp"
#include "spatial_grid.cuh"

namespace kiln::cuda::kernels {

// The largest of z[k * hw], k < classes.
__device__ __forceinline__ float channel_max(const float* z, std::int64_t classes, std::int64_t hw) {
  float m = -INFINITY;
  for (std::int64_t k = 0; k < classes; ++k) m = fmaxf(m, z[k * hw]);
  return m;
}

// pixel_loss[p] = w_p (sum_k t_k * log sum_k exp(z_k - m) - sum_k t_k (z_k - m)).
// (a template, like every kernel here: a header included by many files defines it once)
template <class Float>
__global__ void softmax_xent_pixel_kernel(SoftmaxXentArgs a, const Float* logits, const Float* targets,
                                          const Float* weights, Float* pixel_loss) {
  const std::int64_t s = grid_pixel();
  if (s >= a.hw) return;
  for (std::int64_t i = blockIdx.y; i < a.n; i += gridDim.y) {
    const std::int64_t p = i * a.hw + s, base = i * a.channels * a.hw + s;
    const float* z = logits + base;
    const float* t = targets + base;
    const float m = channel_max(z, a.classes, a.hw);
    double e = 0.0, tsum = 0.0, tz = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double zk = static_cast<double>(z[k * a.hw]) - m;
      e += exp(zk);
      tsum += t[k * a.hw];
      tz += t[k * a.hw] * zk;
    }
    pixel_loss[p] = static_cast<float>((weights ? weights[p] : 1.0) * (tsum * log(e) - tz));
  }
}

template <class Float>
__global__ void softmax_xent_backward_kernel(SoftmaxXentArgs a, const Float* logits, const Float* targets,
                                             const Float* weights, Float* dlogits) {
  const double inv = a.pixels() ? 1.0 / static_cast<double>(a.pixels()) : 0.0;
  const std::int64_t s = grid_pixel();
  if (s >= a.hw) return;
  for (std::int64_t i = blockIdx.y; i < a.n; i += gridDim.y) {
    const std::int64_t p = i * a.hw + s, base = i * a.channels * a.hw + s;
    const float* z = logits + base;
    const float* t = targets + base;
    const float m = channel_max(z, a.classes, a.hw);
    double e = 0.0, tsum = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      e += exp(static_cast<double>(z[k * a.hw]) - m);
      tsum += t[k * a.hw];
    }
    const double scale = (weights ? weights[p] : 1.0) * inv;
    for (std::int64_t k = 0; k < a.classes; ++k)
      dlogits[base + k * a.hw] =
          static_cast<float>(scale * (exp(static_cast<double>(z[k * a.hw]) - m) / e * tsum - t[k * a.hw]));
    for (std::int64_t k = a.classes; k < a.channels; ++k) dlogits[base + k * a.hw] = 0.0f;
  }
}

}  // namespace kiln::cuda::kernels
