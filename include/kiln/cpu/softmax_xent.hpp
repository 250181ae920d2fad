#pragma once
// The per-pixel softmax cross-entropy over the channels of NCHW logits with soft targets and
// optional per-pixel weights, mean over the N*H*W pixels, on the CPU: plain per-pixel loops, the
// reference and the version used.
//   L = 1/P sum_p w_p sum_k -t_pk log softmax(z_p)_k
// computed as w_p (sum_k t_pk * lse(z_p) - sum_k t_pk z_pk), lse with the max subtracted (stable
// for any logits). dL/dz_pk = w_p/P (softmax_k * sum_j t_pj - t_pk). Only the first `classes`
// channels take part; the others get zero gradient. The chunked softmax sums below are also what
// kiln/color's annealed-mean decoding runs on (color/cpu/colour_classes.hpp).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kiln/cpu/separate.hpp"
#include "kiln/ops/softmax_xent.hpp"

namespace kiln::cpu {

namespace softmax_chunk {
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
}  // namespace softmax_chunk

// What the layer calls, declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) defined in
// one unit of the program only.
void softmax_xent_forward(const SoftmaxXentArgs& a, const float* logits, const float* targets, const float* weights,
                          float* out);
void softmax_xent_backward(const SoftmaxXentArgs& a, const float* logits, const float* targets, const float* weights,
                           float* dlogits);

#if KILN_CPU_ENTRY_DEFINITIONS
// out[0] = mean over pixels of the weighted cross-entropy; weights may be null (all 1).
KILN_CPU_ENTRY void softmax_xent_forward(const SoftmaxXentArgs& a, const float* logits, const float* targets,
                                         const float* weights, float* out) {
  const std::int64_t chunks = (a.hw + softmax_chunk::kChunk - 1) / softmax_chunk::kChunk;
  double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (std::int64_t c = 0; c < a.n * chunks; ++c) {
    const std::int64_t i = c / chunks, s0 = (c % chunks) * softmax_chunk::kChunk,
                       len = std::min(softmax_chunk::kChunk, a.hw - s0);
    const float* z = logits + i * a.channels * a.hw;
    const float* t = targets + i * a.channels * a.hw;
    float m[softmax_chunk::kChunk];
    double e[softmax_chunk::kChunk], tsum[softmax_chunk::kChunk] = {}, tz[softmax_chunk::kChunk] = {};
    softmax_chunk::chunk_softmax_sums(z, a.classes, a.hw, s0, len, 1.0f, m, e);
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
KILN_CPU_ENTRY void softmax_xent_backward(const SoftmaxXentArgs& a, const float* logits, const float* targets,
                                          const float* weights, float* dlogits) {
  const std::int64_t chunks = (a.hw + softmax_chunk::kChunk - 1) / softmax_chunk::kChunk;
  const double inv = a.pixels() ? 1.0 / static_cast<double>(a.pixels()) : 0.0;
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.n * chunks; ++c) {
    const std::int64_t i = c / chunks, s0 = (c % chunks) * softmax_chunk::kChunk,
                       len = std::min(softmax_chunk::kChunk, a.hw - s0);
    const std::int64_t base = i * a.channels * a.hw;
    float m[softmax_chunk::kChunk];
    double e[softmax_chunk::kChunk], tsum[softmax_chunk::kChunk] = {}, scale[softmax_chunk::kChunk];
    // exp(z - m) goes into dlogits first, then becomes the gradient: one exp per logit.
    softmax_chunk::chunk_softmax_sums(logits + base, a.classes, a.hw, s0, len, 1.0f, m, e, dlogits + base);
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const float* tk = targets + base + k * a.hw + s0;
      for (std::int64_t j = 0; j < len; ++j) tsum[j] += tk[j];
    }
    float a_[softmax_chunk::kChunk], b_[softmax_chunk::kChunk];  // dz = a_ q - scale t
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
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::cpu
