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
//
// The argument structs are device-neutral (Backend<Cuda> takes the same ones).
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__CUDACC__) && !defined(KILN_HOST_DEVICE)
#define KILN_HOST_DEVICE __host__ __device__
#elif !defined(KILN_HOST_DEVICE)
#define KILN_HOST_DEVICE
#endif

namespace kiln {

// Per-pixel softmax cross-entropy over channels.
struct SoftmaxXentArgs {
  std::int64_t n = 0, channels = 0, classes = 0, hw = 0;  // classes <= channels take part
  std::int64_t pixels() const { return n * hw; }
};

// ab -> soft targets. neighbours <= kMaxNeighbours.
struct AbEncodeArgs {
  static constexpr int kMaxNeighbours = 8;
  std::int64_t n = 0, channels = 0, classes = 0, hw = 0;
  int neighbours = 5;
  float sigma = 5.0f;
};

// Annealed-mean decoding.
struct AnnealedMeanArgs {
  std::int64_t n = 0, channels = 0, classes = 0, hw = 0;
  float temperature = 0.38f;
};

namespace detail {
// The `count` nearest of `classes` centres to (a, b), nearest first (insertion into a short list;
// ties keep the lower index). Returns how many were found (min(count, classes)).
KILN_HOST_DEVICE inline int nearest_bins(float a, float b, const float* centres, std::int64_t classes, int count, int* index,
                        float* dist2) {
  int found = 0;
  for (std::int64_t k = 0; k < classes; ++k) {
    const float da = a - centres[2 * k], db = b - centres[2 * k + 1];
    const float d = da * da + db * db;
    if (found == count && d >= dist2[found - 1]) continue;
    int at = found < count ? found++ : count - 1;
    while (at > 0 && dist2[at - 1] > d) {
      dist2[at] = dist2[at - 1];
      index[at] = index[at - 1];
      --at;
    }
    dist2[at] = d;
    index[at] = static_cast<int>(k);
  }
  return found;
}
}  // namespace detail

}  // namespace kiln

namespace kiln::cpu {

// out[0] = mean over pixels of the weighted cross-entropy; weights may be null (all 1).
inline void softmax_xent_forward(const SoftmaxXentArgs& a, const float* logits, const float* targets,
                                 const float* weights, float* out) {
  const std::int64_t P = a.pixels();
  double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (std::int64_t p = 0; p < P; ++p) {
    const std::int64_t i = p / a.hw, s = p % a.hw;
    const float* z = logits + i * a.channels * a.hw + s;
    const float* t = targets + i * a.channels * a.hw + s;
    float m = -std::numeric_limits<float>::infinity();
    for (std::int64_t k = 0; k < a.classes; ++k) m = std::fmax(m, z[k * a.hw]);
    double e = 0.0, tsum = 0.0, tz = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      e += std::exp(static_cast<double>(z[k * a.hw]) - m);
      tsum += t[k * a.hw];
      tz += static_cast<double>(t[k * a.hw]) * (static_cast<double>(z[k * a.hw]) - m);
    }
    const double w = weights ? weights[p] : 1.0;
    sum += w * (tsum * std::log(e) - tz);
  }
  out[0] = P ? static_cast<float>(sum / static_cast<double>(P)) : 0.0f;
}

// dlogits (overwritten) = w_p / P (softmax * sum(t) - t) on the first `classes` channels, 0 on the rest.
inline void softmax_xent_backward(const SoftmaxXentArgs& a, const float* logits, const float* targets,
                                  const float* weights, float* dlogits) {
  const std::int64_t P = a.pixels();
  const double inv = P ? 1.0 / static_cast<double>(P) : 0.0;
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < P; ++p) {
    const std::int64_t i = p / a.hw, s = p % a.hw, base = i * a.channels * a.hw + s;
    const float* z = logits + base;
    const float* t = targets + base;
    float* dz = dlogits + base;
    float m = -std::numeric_limits<float>::infinity();
    for (std::int64_t k = 0; k < a.classes; ++k) m = std::fmax(m, z[k * a.hw]);
    double e = 0.0, tsum = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      e += std::exp(static_cast<double>(z[k * a.hw]) - m);
      tsum += t[k * a.hw];
    }
    const double scale = (weights ? weights[p] : 1.0) * inv;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double softmax = std::exp(static_cast<double>(z[k * a.hw]) - m) / e;
      dz[k * a.hw] = static_cast<float>(scale * (softmax * tsum - t[k * a.hw]));
    }
    for (std::int64_t k = a.classes; k < a.channels; ++k) dz[k * a.hw] = 0.0f;
  }
}

// targets [N,C,H,W] (overwritten); pixel_weights [N,1,H,W] (may be null) = bin_weights[nearest]
// (1 when bin_weights is null).
inline void ab_soft_encode_forward(const AbEncodeArgs& a, const float* ab, const float* centres,
                                   const float* bin_weights, float* targets, float* pixel_weights) {
  const std::int64_t P = a.n * a.hw;
  const double inv2s2 = 1.0 / (2.0 * double(a.sigma) * a.sigma);
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < P; ++p) {
    const std::int64_t i = p / a.hw, s = p % a.hw;
    const float av = ab[i * 2 * a.hw + s], bv = ab[i * 2 * a.hw + a.hw + s];
    int index[AbEncodeArgs::kMaxNeighbours];
    float dist2[AbEncodeArgs::kMaxNeighbours];
    const int found = detail::nearest_bins(av, bv, centres, a.classes, a.neighbours, index, dist2);
    float* t = targets + i * a.channels * a.hw + s;
    for (std::int64_t k = 0; k < a.channels; ++k) t[k * a.hw] = 0.0f;
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
  const std::int64_t P = a.n * a.hw;
  const double invT = 1.0 / a.temperature;
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < P; ++p) {
    const std::int64_t i = p / a.hw, s = p % a.hw;
    const float* z = logits + i * a.channels * a.hw + s;
    float m = -std::numeric_limits<float>::infinity();
    for (std::int64_t k = 0; k < a.classes; ++k) m = std::fmax(m, z[k * a.hw]);
    double e = 0.0, sa = 0.0, sb = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double q = std::exp((double(z[k * a.hw]) - m) * invT);
      e += q, sa += q * centres[2 * k], sb += q * centres[2 * k + 1];
    }
    ab[i * 2 * a.hw + s] = static_cast<float>(sa / e);
    ab[i * 2 * a.hw + a.hw + s] = static_cast<float>(sb / e);
  }
}

// dlogits (overwritten) = p_k ((c_k - ab) . dab) / T; 0 on channels past `classes`.
inline void annealed_mean_backward(const AnnealedMeanArgs& a, const float* logits, const float* centres,
                                   const float* ab, const float* dab, float* dlogits) {
  const std::int64_t P = a.n * a.hw;
  const double invT = 1.0 / a.temperature;
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < P; ++p) {
    const std::int64_t i = p / a.hw, s = p % a.hw, base = i * a.channels * a.hw + s;
    const float* z = logits + base;
    float m = -std::numeric_limits<float>::infinity();
    for (std::int64_t k = 0; k < a.classes; ++k) m = std::fmax(m, z[k * a.hw]);
    double e = 0.0;
    for (std::int64_t k = 0; k < a.classes; ++k) e += std::exp((double(z[k * a.hw]) - m) * invT);
    const double ya = ab[i * 2 * a.hw + s], yb = ab[i * 2 * a.hw + a.hw + s];
    const double ga = dab[i * 2 * a.hw + s], gb = dab[i * 2 * a.hw + a.hw + s];
    for (std::int64_t k = 0; k < a.classes; ++k) {
      const double q = std::exp((double(z[k * a.hw]) - m) * invT) / e;
      dlogits[base + k * a.hw] = static_cast<float>(q * ((centres[2 * k] - ya) * ga + (centres[2 * k + 1] - yb) * gb) * invT);
    }
    for (std::int64_t k = a.classes; k < a.channels; ++k) dlogits[base + k * a.hw] = 0.0f;
  }
}

}  // namespace kiln::cpu
