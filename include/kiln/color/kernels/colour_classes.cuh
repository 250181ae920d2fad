#pragma once
// Colour as classification on the device (kiln::color::AbEncodeArgs, AnnealedMeanArgs). CPU
// oracle: kiln/color/cpu/colour_classes.hpp; launched by ColourOps<Cuda> (kiln/color/cuda.hpp).
// One thread per pixel: the channel loop strides by H*W, so the threads of a warp read consecutive
// pixels of one channel plane (coalesced). Bin centres are read by every thread at the same
// address (a broadcast through the cache).
//   ab_soft_encode_{forward,backward}_kernel, annealed_mean_{forward,backward}_kernel: per pixel, on
//   pixel_grid(HW, N) (kernels/spatial_grid.cuh: image and pixel from the block and thread indices,
//   no division per pixel).
#include <cstdint>
#include <math.h>

#include "kiln/color/ops/colour_classes.hpp"
#include "kiln/gpu/gpu.hpp"
#include "softmax_xent.cuh"  // channel_max
#include "spatial_grid.cuh"

namespace kiln::color::kernels {

template <class Float>
__global__ void ab_soft_encode_forward_kernel(AbEncodeArgs a, const Float* ab, const Float* centres,
                                              const Float* bin_weights, Float* targets, Float* pixel_weights) {
  const double inv2s2 = 1.0 / (2.0 * static_cast<double>(a.sigma) * a.sigma);
  const std::int64_t s = kiln::cuda::kernels::grid_pixel();
  if (s >= a.hw) return;
  for (std::int64_t i = blockIdx.y; i < a.n; i += gridDim.y) {
    int index[AbEncodeArgs::kMaxNeighbours];
    float dist2[AbEncodeArgs::kMaxNeighbours];
    const int found = kiln::color::detail::nearest_bins(ab[i * 2 * a.hw + s], ab[i * 2 * a.hw + a.hw + s], centres,
                                                        a.classes, a.neighbours, index, dist2);
    float* t = targets + i * a.channels * a.hw + s;
    for (std::int64_t k = 0; k < a.channels; ++k) t[k * a.hw] = 0.0f;
    // Two passes over the list with fixed indices (no array of weights: it would go to local memory).
    double total = 0.0;
    KILN_NEIGHBOURS_UNROLL
    for (int j = 0; j < AbEncodeArgs::kMaxNeighbours; ++j)
      if (j < found) total += exp(-(static_cast<double>(dist2[j]) - dist2[0]) * inv2s2);
    KILN_NEIGHBOURS_UNROLL
    for (int j = 0; j < AbEncodeArgs::kMaxNeighbours; ++j)
      if (j < found)
        t[index[j] * a.hw] = static_cast<float>(exp(-(static_cast<double>(dist2[j]) - dist2[0]) * inv2s2) / total);
    if (pixel_weights) pixel_weights[i * a.hw + s] = found && bin_weights ? bin_weights[index[0]] : 1.0f;
  }
}

template <class Float>
__global__ void ab_soft_encode_backward_kernel(AbEncodeArgs a, const Float* centres, const Float* targets,
                                               const Float* dtargets, Float* dab) {
  const double inv_s2 = 1.0 / (static_cast<double>(a.sigma) * a.sigma);
  const std::int64_t s = kiln::cuda::kernels::grid_pixel();
  if (s >= a.hw) return;
  for (std::int64_t i = blockIdx.y; i < a.n; i += gridDim.y) {
    const std::int64_t base = i * a.channels * a.hw + s;
    double ma = 0.0, mb = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double t = targets[base + k * a.hw];
      ma += t * centres[2 * k];
      mb += t * centres[2 * k + 1];
    }
    double ga = 0.0, gb = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double tg = static_cast<double>(targets[base + k * a.hw]) * dtargets[base + k * a.hw];
      ga += tg * (centres[2 * k] - ma);
      gb += tg * (centres[2 * k + 1] - mb);
    }
    dab[i * 2 * a.hw + s] = static_cast<float>(ga * inv_s2);
    dab[i * 2 * a.hw + a.hw + s] = static_cast<float>(gb * inv_s2);
  }
}

template <class Float>
__global__ void annealed_mean_forward_kernel(AnnealedMeanArgs a, const Float* logits, const Float* centres, Float* ab) {
  const double invT = 1.0 / a.temperature;
  const std::int64_t s = kiln::cuda::kernels::grid_pixel();
  if (s >= a.hw) return;
  for (std::int64_t i = blockIdx.y; i < a.n; i += gridDim.y) {
    const float* z = logits + i * a.channels * a.hw + s;
    const float m = kiln::cuda::kernels::channel_max(z, a.classes, a.hw);
    double e = 0.0, sa = 0.0, sb = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double q = exp((static_cast<double>(z[k * a.hw]) - m) * invT);
      e += q;
      sa += q * centres[2 * k];
      sb += q * centres[2 * k + 1];
    }
    ab[i * 2 * a.hw + s] = static_cast<float>(sa / e);
    ab[i * 2 * a.hw + a.hw + s] = static_cast<float>(sb / e);
  }
}

template <class Float>
__global__ void annealed_mean_backward_kernel(AnnealedMeanArgs a, const Float* logits, const Float* centres,
                                              const Float* ab, const Float* dab, Float* dlogits) {
  const double invT = 1.0 / a.temperature;
  const std::int64_t s = kiln::cuda::kernels::grid_pixel();
  if (s >= a.hw) return;
  for (std::int64_t i = blockIdx.y; i < a.n; i += gridDim.y) {
    const std::int64_t base = i * a.channels * a.hw + s;
    const float* z = logits + base;
    const float m = kiln::cuda::kernels::channel_max(z, a.classes, a.hw);
    double e = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) e += exp((static_cast<double>(z[k * a.hw]) - m) * invT);
    const double ya = ab[i * 2 * a.hw + s], yb = ab[i * 2 * a.hw + a.hw + s];
    const double ga = dab[i * 2 * a.hw + s], gb = dab[i * 2 * a.hw + a.hw + s];
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double q = exp((static_cast<double>(z[k * a.hw]) - m) * invT) / e;
      dlogits[base + k * a.hw] =
          static_cast<float>(q * ((centres[2 * k] - ya) * ga + (centres[2 * k + 1] - yb) * gb) * invT);
    }
    for (std::int64_t k = a.classes; k < a.channels; ++k) dlogits[base + k * a.hw] = 0.0f;
  }
}

}  // namespace kiln::color::kernels
