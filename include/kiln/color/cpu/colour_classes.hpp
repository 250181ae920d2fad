#pragma once
// Colour as classification (Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016) on the
// CPU: plain per-pixel loops, the reference and the version ColourOps<Cpu> runs.
//   ab_soft_encode: ab [N,2,H,W] -> soft targets [N,C,H,W]: a Gaussian (sigma) over the `neighbours`
//                   nearest bin centres, normalised to sum 1, zero elsewhere; and the pixel's class
//                   rebalancing weight (the weight of its nearest bin). Backward (for a fixed set of
//                   nearest bins): dab = sum_k dt_k t_k (c_k - m) / sigma^2, m = sum_k t_k c_k.
//   annealed_mean:  logits [N,C,H,W] -> ab [N,2,H,W] = sum_k softmax(z / T)_k c_k (T: temperature);
//                   backward dz_k = p_k ((c_k - ab) . dab) / T.
// Only the first `classes` channels take part (the head may have more channels than the data has
// bins); the others get zero targets, zero gradient and no say in the decoding.
// Bin centres are interleaved (a0, b0, a1, b1, ...), in the same units as ab and sigma.
// (The softmax cross-entropy they are trained with is the library's: kiln/cpu/softmax_xent.hpp.)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kiln/color/ops/colour_classes.hpp"
#include "kiln/cpu/separate.hpp"
#include "kiln/cpu/softmax_xent.hpp"

namespace kiln::color::cpu {

namespace chunk = kiln::cpu::softmax_chunk;  // the library's chunked softmax sums

// Declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) defined in one unit of the program only.
void ab_soft_encode_forward(const AbEncodeArgs& a, const float* ab, const float* centres, const float* bin_weights,
                            float* targets, float* pixel_weights);
void ab_soft_encode_backward(const AbEncodeArgs& a, const float* centres, const float* targets, const float* dtargets,
                             float* dab);
void annealed_mean_forward(const AnnealedMeanArgs& a, const float* logits, const float* centres, float* ab);
void annealed_mean_backward(const AnnealedMeanArgs& a, const float* logits, const float* centres, const float* ab,
                            const float* dab, float* dlogits);

#if KILN_CPU_ENTRY_DEFINITIONS
// targets [N,C,H,W] (overwritten); pixel_weights [N,1,H,W] (may be null) = bin_weights[nearest]
// (1 when bin_weights is null).
KILN_CPU_ENTRY void ab_soft_encode_forward(const AbEncodeArgs& a, const float* ab, const float* centres,
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
    const int found = detail::nearest_bins(av, bv, centres, a.classes, a.neighbours, index, dist2);
    float* t = targets + i * a.channels * a.hw + s;
    // Relative to the nearest distance: exp never underflows to an all-zero row.
    double g[AbEncodeArgs::kMaxNeighbours], total = 0.0;
    for (int j = 0; j < found; ++j) total += g[j] = std::exp(-(double(dist2[j]) - dist2[0]) * inv2s2);
    for (int j = 0; j < found; ++j) t[index[j] * a.hw] = static_cast<float>(g[j] / total);
    if (pixel_weights) pixel_weights[p] = found && bin_weights ? bin_weights[index[0]] : 1.0f;
  }
}

// dab (overwritten) from dtargets, for the targets written by the forward pass.
KILN_CPU_ENTRY void ab_soft_encode_backward(const AbEncodeArgs& a, const float* centres, const float* targets,
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
KILN_CPU_ENTRY void annealed_mean_forward(const AnnealedMeanArgs& a, const float* logits, const float* centres,
                                          float* ab) {
  const std::int64_t chunks = (a.hw + chunk::kChunk - 1) / chunk::kChunk;
  const float invT = 1.0f / a.temperature;
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.n * chunks; ++c) {
    const std::int64_t i = c / chunks, s0 = (c % chunks) * chunk::kChunk, len = std::min(chunk::kChunk, a.hw - s0);
    const float* z = logits + i * a.channels * a.hw;
    float m[chunk::kChunk];
    double e[chunk::kChunk], sa[chunk::kChunk] = {}, sb[chunk::kChunk] = {};
    for (std::int64_t j = 0; j < len; ++j) m[j] = -std::numeric_limits<float>::infinity(), e[j] = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k)
      for (std::int64_t j = 0; j < len; ++j) m[j] = std::fmax(m[j], z[k * a.hw + s0 + j]);
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const float* zk = z + k * a.hw + s0;
      for (std::int64_t j = 0; j < len; ++j) {
        const double q = chunk::exp_nonpositive((zk[j] - m[j]) * invT);
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
KILN_CPU_ENTRY void annealed_mean_backward(const AnnealedMeanArgs& a, const float* logits, const float* centres,
                                           const float* ab, const float* dab, float* dlogits) {
  const std::int64_t chunks = (a.hw + chunk::kChunk - 1) / chunk::kChunk;
  const float invT = 1.0f / a.temperature;
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.n * chunks; ++c) {
    const std::int64_t i = c / chunks, s0 = (c % chunks) * chunk::kChunk, len = std::min(chunk::kChunk, a.hw - s0);
    const std::int64_t base = i * a.channels * a.hw;
    float m[chunk::kChunk];
    double e[chunk::kChunk];
    chunk::chunk_softmax_sums(logits + base, a.classes, a.hw, s0, len, invT, m, e);
    const float* ya = ab + i * 2 * a.hw + s0;
    const float* yb = ya + a.hw;
    const float* ga = dab + i * 2 * a.hw + s0;
    const float* gb = ga + a.hw;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const float* zk = logits + base + k * a.hw + s0;
      float* dk = dlogits + base + k * a.hw + s0;
      for (std::int64_t j = 0; j < len; ++j) {
        const double q = chunk::exp_nonpositive((zk[j] - m[j]) * invT) / e[j];
        dk[j] = static_cast<float>(
            q * ((centres[2 * k] - double(ya[j])) * ga[j] + (centres[2 * k + 1] - double(yb[j])) * gb[j]) * invT);
      }
    }
    for (std::int64_t k = a.classes; k < a.channels; ++k)
      std::fill(dlogits + base + k * a.hw + s0, dlogits + base + k * a.hw + s0 + len, 0.0f);
  }
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::color::cpu
