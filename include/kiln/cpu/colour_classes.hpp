#pragma once
// Colour as classification (Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016) on the
// CPU: plain per-pixel loops, the reference and the version used.
//
//   softmax_xent:   per-pixel softmax cross-entropy over the channels of NCHW logits with soft
//                   targets and optional per-pixel weights, mean over the N*H*W pixels:
//                     L = 1/P sum_p w_p sum_k -t_pk log softmax(z_p)_k
//                   computed as w_p (sum_k t_pk * lse(z_p) - sum_k t_pk z_pk), lse with the max
//                   subtracted (stable for any logits). dL/dz_pk = w_p/P (softmax_k * sum_j t_pj - t_pk).
//   ab_soft_encode: ab [N,2,H,W] -> soft targets [N,C,H,W]: a Gaussian (sigma) over the `neighbours`
//                   nearest bin centres, normalised to sum 1, zero elsewhere; and the pixel's class
//                   rebalancing weight (the weight of its nearest bin). Backward (for a fixed set of
//                   nearest bins): dab = sum_k dt_k t_k (c_k - m) / sigma^2, m = sum_k t_k c_k.
//   annealed_mean:  logits [N,C,H,W] -> ab [N,2,H,W] = sum_k softmax(z / T)_k c_k (T: temperature);
//                   backward dz_k = p_k ((c_k - ab) . dab) / T.
// Only the first `classes` channels take part (the head may have more channels than the data has
// bins); the others get zero targets, zero gradient and no say in the decoding.
// Bin centres are interleaved (a0, b0, a1, b1, ...), in the same units as ab and sigma.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kiln/ops/colour_classes.hpp"

namespace kiln::cpu {

namespace colour_detail {
// Pixels per chunk: the loops run channel-outer, pixel-inner over a chunk of one image, so every
// read is contiguous (a plane row) and the per-pixel sums stay in L1. (The per-pixel loop of the
// CUDA kernels would stride by H*W here: one cache line per channel and pixel.)
inline constexpr std::int64_t kChunk = 256;

// exp(x) for x <= 0 in float (Cephes' expf: Cody-Waite reduction and a degree-6 polynomial,
// relative error ~1e-7), written so that GCC vectorises the loops that call it: the per-pixel
// softmax over 313 classes is an exp per logit, and libm's scalar exp dominated a training step.
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(x / ln 2) (1.5 * 2^23 trick)
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * std::bit_cast<float>((static_cast<std::int32_t>(n) + 127) << 23);
}

// For pixels [s0, s0 + len) of one image (z: its first channel plane): m = max_k z_k and
// e = sum_k exp((z_k - m) * inv_t) over the first `classes` channels; with q (not null) also
// q_k = exp((z_k - m) * inv_t) into q's planes (same layout as z).
inline void chunk_softmax_sums(const float* z, std::int64_t classes, std::int64_t hw, std::int64_t s0, std::int64_t len,
                               float inv_t, float* m, double* e, float* q = nullptr) {
  // float sums (a double accumulator stops GCC from vectorising the loop); the largest term is 1.
  float sum[kChunk];
  for (std::int64_t j = 0; j < len; ++j) m[j] = -std::numeric_limits<float>::infinity(), sum[j] = 0.0f;
  for (std::int64_t k = 0; k < classes; ++k) {
    const float* zk = z + k * hw + s0;
#pragma omp simd
    for (std::int64_t j = 0; j < len; ++j) m[j] = std::max(m[j], zk[j]);
  }
  for (std::int64_t k = 0; k < classes; ++k) {
    const float* __restrict zk = z + k * hw + s0;
    if (q) {
      float* __restrict qk = q + k * hw + s0;
#pragma omp simd
      for (std::int64_t j = 0; j < len; ++j) {
        const float v = exp_nonpositive((zk[j] - m[j]) * inv_t);
        sum[j] += v;
        qk[j] = v;
      }
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < len; ++j) sum[j] += exp_nonpositive((zk[j] - m[j]) * inv_t);
    }
  }
  for (std::int64_t j = 0; j < len; ++j) e[j] = sum[j];
}
}  // namespace colour_detail

// out[0] = mean over pixels of the weighted cross-entropy; weights may be null (all 1).
inline void softmax_xent_forward(const SoftmaxXentArgs& a, const float* logits, const float* targets,
                                 const float* weights, float* out) {
  const std::int64_t chunks = (a.hw + colour_detail::kChunk - 1) / colour_detail::kChunk;
  double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (std::int64_t c = 0; c < a.n * chunks; ++c) {
    const std::int64_t i = c / chunks, s0 = (c % chunks) * colour_detail::kChunk,
                       len = std::min(colour_detail::kChunk, a.hw - s0);
    const float* z = logits + i * a.channels * a.hw;
    const float* t = targets + i * a.channels * a.hw;
    float m[colour_detail::kChunk];
    double e[colour_detail::kChunk], tsum[colour_detail::kChunk] = {}, tz[colour_detail::kChunk] = {};
    colour_detail::chunk_softmax_sums(z, a.classes, a.hw, s0, len, 1.0f, m, e);
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const float* zk = z + k * a.hw + s0;
      const float* tk = t + k * a.hw + s0;
      for (std::int64_t j = 0; j < len; ++j) {
        tsum[j] += tk[j];
        tz[j] += static_cast<double>(tk[j]) * (static_cast<double>(zk[j]) - m[j]);
      }
    }
    for (std::int64_t j = 0; j < len; ++j)
      sum += (weights ? weights[i * a.hw + s0 + j] : 1.0) * (tsum[j] * std::log(e[j]) - tz[j]);
  }
  out[0] = a.pixels() ? static_cast<float>(sum / static_cast<double>(a.pixels())) : 0.0f;
}

// dlogits (overwritten) = w_p / P (softmax * sum(t) - t) on the first `classes` channels, 0 on the rest.
inline void softmax_xent_backward(const SoftmaxXentArgs& a, const float* logits, const float* targets,
                                  const float* weights, float* dlogits) {
  const std::int64_t chunks = (a.hw + colour_detail::kChunk - 1) / colour_detail::kChunk;
  const double inv = a.pixels() ? 1.0 / static_cast<double>(a.pixels()) : 0.0;
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.n * chunks; ++c) {
    const std::int64_t i = c / chunks, s0 = (c % chunks) * colour_detail::kChunk,
                       len = std::min(colour_detail::kChunk, a.hw - s0);
    const std::int64_t base = i * a.channels * a.hw;
    float m[colour_detail::kChunk];
    double e[colour_detail::kChunk], tsum[colour_detail::kChunk] = {}, scale[colour_detail::kChunk];
    // exp(z - m) goes into dlogits first, then becomes the gradient: one exp per logit.
    colour_detail::chunk_softmax_sums(logits + base, a.classes, a.hw, s0, len, 1.0f, m, e, dlogits + base);
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const float* tk = targets + base + k * a.hw + s0;
      for (std::int64_t j = 0; j < len; ++j) tsum[j] += tk[j];
    }
    float a_[colour_detail::kChunk], b_[colour_detail::kChunk];  // dz = a_ q - scale t
    for (std::int64_t j = 0; j < len; ++j) {
      scale[j] = (weights ? weights[i * a.hw + s0 + j] : 1.0) * inv;
      a_[j] = static_cast<float>(scale[j] * tsum[j] / e[j]);
      b_[j] = static_cast<float>(scale[j]);
    }
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const float* tk = targets + base + k * a.hw + s0;
      float* dk = dlogits + base + k * a.hw + s0;
      for (std::int64_t j = 0; j < len; ++j) dk[j] = a_[j] * dk[j] - b_[j] * tk[j];
    }
    for (std::int64_t k = a.classes; k < a.channels; ++k)
      std::fill(dlogits + base + k * a.hw + s0, dlogits + base + k * a.hw + s0 + len, 0.0f);
  }
}

// targets [N,C,H,W] (overwritten); pixel_weights [N,1,H,W] (may be null) = bin_weights[nearest]
// (1 when bin_weights is null).
inline void ab_soft_encode_forward(const AbEncodeArgs& a, const float* ab, const float* centres,
                                   const float* bin_weights, float* targets, float* pixel_weights) {
  const std::int64_t P = a.n * a.hw;
  const double inv2s2 = 1.0 / (2.0 * double(a.sigma) * a.sigma);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.n; ++i)
    std::fill(targets + i * a.channels * a.hw, targets + (i + 1) * a.channels * a.hw, 0.0f);
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < P; ++p) {
    const std::int64_t i = p / a.hw, s = p % a.hw;
    const float av = ab[i * 2 * a.hw + s], bv = ab[i * 2 * a.hw + a.hw + s];
    int index[AbEncodeArgs::kMaxNeighbours];
    float dist2[AbEncodeArgs::kMaxNeighbours];
    const int found = kiln::detail::nearest_bins(av, bv, centres, a.classes, a.neighbours, index, dist2);
    float* t = targets + i * a.channels * a.hw + s;
    // Relative to the nearest distance: exp never underflows to an all-zero row.
    double g[AbEncodeArgs::kMaxNeighbours], total = 0.0;
    for (int j = 0; j < found; ++j) total += g[j] = std::exp(-(double(dist2[j]) - dist2[0]) * inv2s2);
    for (int j = 0; j < found; ++j) t[index[j] * a.hw] = static_cast<float>(g[j] / total);
    if (pixel_weights) pixel_weights[p] = found && bin_weights ? bin_weights[index[0]] : 1.0f;
  }
}

// dab (overwritten) from dtargets, for the targets written by the forward pass.
inline void ab_soft_encode_backward(const AbEncodeArgs& a, const float* centres, const float* targets,
                                    const float* dtargets, float* dab) {
  const std::int64_t P = a.n * a.hw;
  const double inv_s2 = 1.0 / (double(a.sigma) * a.sigma);
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < P; ++p) {
    const std::int64_t i = p / a.hw, s = p % a.hw, base = i * a.channels * a.hw + s;
    double ma = 0.0, mb = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double t = targets[base + k * a.hw];
      ma += t * centres[2 * k], mb += t * centres[2 * k + 1];
    }
    double ga = 0.0, gb = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double tg = double(targets[base + k * a.hw]) * dtargets[base + k * a.hw];
      ga += tg * (centres[2 * k] - ma), gb += tg * (centres[2 * k + 1] - mb);
    }
    dab[i * 2 * a.hw + s] = static_cast<float>(ga * inv_s2);
    dab[i * 2 * a.hw + a.hw + s] = static_cast<float>(gb * inv_s2);
  }
}

// ab [N,2,H,W] (overwritten) = sum_k softmax(z/T)_k c_k over the first `classes` channels.
inline void annealed_mean_forward(const AnnealedMeanArgs& a, const float* logits, const float* centres, float* ab) {
  const std::int64_t chunks = (a.hw + colour_detail::kChunk - 1) / colour_detail::kChunk;
  const float invT = 1.0f / a.temperature;
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.n * chunks; ++c) {
    const std::int64_t i = c / chunks, s0 = (c % chunks) * colour_detail::kChunk,
                       len = std::min(colour_detail::kChunk, a.hw - s0);
    const float* z = logits + i * a.channels * a.hw;
    float m[colour_detail::kChunk];
    double e[colour_detail::kChunk], sa[colour_detail::kChunk] = {}, sb[colour_detail::kChunk] = {};
    for (std::int64_t j = 0; j < len; ++j) m[j] = -std::numeric_limits<float>::infinity(), e[j] = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k)
      for (std::int64_t j = 0; j < len; ++j) m[j] = std::fmax(m[j], z[k * a.hw + s0 + j]);
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const float* zk = z + k * a.hw + s0;
      for (std::int64_t j = 0; j < len; ++j) {
        const double q = colour_detail::exp_nonpositive((zk[j] - m[j]) * invT);
        e[j] += q, sa[j] += q * centres[2 * k], sb[j] += q * centres[2 * k + 1];
      }
    }
    for (std::int64_t j = 0; j < len; ++j) {
      ab[i * 2 * a.hw + s0 + j] = static_cast<float>(sa[j] / e[j]);
      ab[i * 2 * a.hw + a.hw + s0 + j] = static_cast<float>(sb[j] / e[j]);
    }
  }
}

// dlogits (overwritten) = p_k ((c_k - ab) . dab) / T; 0 on channels past `classes`.
inline void annealed_mean_backward(const AnnealedMeanArgs& a, const float* logits, const float* centres,
                                   const float* ab, const float* dab, float* dlogits) {
  const std::int64_t chunks = (a.hw + colour_detail::kChunk - 1) / colour_detail::kChunk;
  const float invT = 1.0f / a.temperature;
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.n * chunks; ++c) {
    const std::int64_t i = c / chunks, s0 = (c % chunks) * colour_detail::kChunk,
                       len = std::min(colour_detail::kChunk, a.hw - s0);
    const std::int64_t base = i * a.channels * a.hw;
    float m[colour_detail::kChunk];
    double e[colour_detail::kChunk];
    colour_detail::chunk_softmax_sums(logits + base, a.classes, a.hw, s0, len, invT, m, e);
    const float* ya = ab + i * 2 * a.hw + s0;
    const float* yb = ya + a.hw;
    const float* ga = dab + i * 2 * a.hw + s0;
    const float* gb = ga + a.hw;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const float* zk = logits + base + k * a.hw + s0;
      float* dk = dlogits + base + k * a.hw + s0;
      for (std::int64_t j = 0; j < len; ++j) {
        const double q = colour_detail::exp_nonpositive((zk[j] - m[j]) * invT) / e[j];
        dk[j] = static_cast<float>(
            q * ((centres[2 * k] - double(ya[j])) * ga[j] + (centres[2 * k + 1] - double(yb[j])) * gb[j]) * invT);
      }
    }
    for (std::int64_t k = a.classes; k < a.channels; ++k)
      std::fill(dlogits + base + k * a.hw + s0, dlogits + base + k * a.hw + s0 + len, 0.0f);
  }
}

}  // namespace kiln::cpu
