#pragma once
// BatchNorm2d on the CPU: NCHW, statistics per channel over (N, H, W).
// reference:: holds the plain loops (double accumulation), the oracle; the
// functions the layers call (float lanes, optionally fused with a ReLU) follow.
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kiln/cpu/gemm_kernels.hpp"  // simd::Vec, load
#include "kiln/cpu/separate.hpp"
#include "kiln/ops/batchnorm.hpp"

namespace kiln::cpu {

using kiln::BatchNormArgs;

// y = x * scale + shift for one channel.
struct BnAffine {
  float scale, shift;
};

// Finishes channel c of a forward pass once its statistics are known, for the reference and
// the fast loops alike. training: mean and sq (the sum of squared deviations from it over
// a.count() values) come from the batch; the biased variance normalises, the unbiased one
// goes into running_var, as PyTorch does. eval: mean and sq are ignored, the running
// statistics are used and left unchanged. save_mean/save_invstd receive what was used.
inline BnAffine bn_finish_channel(const BatchNormArgs& a, std::int64_t c, double mean, double sq, const float* weight,
                                  const float* bias, float* running_mean, float* running_var, float* save_mean,
                                  float* save_invstd) {
  double invstd;
  if (a.training) {
    const std::int64_t m = a.count();
    const double var = sq / static_cast<double>(m);
    invstd = 1.0 / std::sqrt(var + static_cast<double>(a.eps));
    const double unbiased = m > 1 ? sq / static_cast<double>(m - 1) : var;
    const double mom = a.momentum;
    running_mean[c] = static_cast<float>((1.0 - mom) * running_mean[c] + mom * mean);
    running_var[c] = static_cast<float>((1.0 - mom) * running_var[c] + mom * unbiased);
  } else {
    mean = running_mean[c];
    invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(a.eps));
  }
  save_mean[c] = static_cast<float>(mean);
  save_invstd[c] = static_cast<float>(invstd);
  return {static_cast<float>(weight[c] * invstd), static_cast<float>(bias[c] - mean * weight[c] * invstd)};
}

// Eval mode: bn_finish_channel's affine of channel c from the running statistics, writing nothing.
inline BnAffine bn_eval_affine(const BatchNormArgs& a, std::int64_t c, const float* weight, const float* bias,
                               const float* running_mean, const float* running_var) {
  const double mean = running_mean[c];
  const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(a.eps));
  return {static_cast<float>(weight[c] * invstd), static_cast<float>(bias[c] - mean * weight[c] * invstd)};
}

// The plain loops (double accumulation): the oracle for the fast versions below.
namespace reference {

// y = weight * (x - mean) * invstd + bias, per channel.
// training: mean and the biased variance come from the batch; save_mean and
//   save_invstd receive them; running_mean/running_var are updated with the
//   UNBIASED variance (count / (count - 1)), like PyTorch.
// eval: mean and invstd = 1/sqrt(running_var + eps) come from the running
//   statistics (left unchanged) and are written to save_mean/save_invstd too,
//   so one backward serves both modes.
inline void batchnorm_forward(const BatchNormArgs& a, const float* x, const float* weight, const float* bias,
                              float* running_mean, float* running_var, float* save_mean, float* save_invstd, float* y) {
  const std::int64_t m = a.count();
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.c; ++c) {
    double mean = 0.0, sq = 0.0;
    if (a.training) {
      double sum = 0.0;
      for (std::int64_t n = 0; n < a.n; ++n) {
        const float* p = x + (n * a.c + c) * a.hw;
        for (std::int64_t i = 0; i < a.hw; ++i) sum += p[i];
      }
      mean = sum / static_cast<double>(m);
      for (std::int64_t n = 0; n < a.n; ++n) {  // two passes: no cancellation
        const float* p = x + (n * a.c + c) * a.hw;
        for (std::int64_t i = 0; i < a.hw; ++i) {
          const double d = p[i] - mean;
          sq += d * d;
        }
      }
    }
    const BnAffine affine =
        bn_finish_channel(a, c, mean, sq, weight, bias, running_mean, running_var, save_mean, save_invstd);
    const float scale = affine.scale, shift = affine.shift;
    for (std::int64_t n = 0; n < a.n; ++n) {
      const float* p = x + (n * a.c + c) * a.hw;
      float* q = y + (n * a.c + c) * a.hw;
      for (std::int64_t i = 0; i < a.hw; ++i) q[i] = p[i] * scale + shift;
    }
  }
}

// xhat = (x - save_mean) * save_invstd.
// dbias += sum(dy); dweight += sum(dy * xhat) (accumulated).
// dx (overwritten; may be null when not wanted):
//   training: weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
//   eval:     weight * invstd * dy   (the statistics are constants)
inline void batchnorm_backward(const BatchNormArgs& a, const float* x, const float* weight, const float* save_mean,
                               const float* save_invstd, const float* dy, float* dx, float* dweight, float* dbias) {
  const std::int64_t m = a.count();
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.c; ++c) {
    const double mean = save_mean[c], invstd = save_invstd[c];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (std::int64_t n = 0; n < a.n; ++n) {
      const float* p = x + (n * a.c + c) * a.hw;
      const float* g = dy + (n * a.c + c) * a.hw;
      for (std::int64_t i = 0; i < a.hw; ++i) {
        sum_dy += g[i];
        sum_dy_xhat += g[i] * ((p[i] - mean) * invstd);
      }
    }
    if (dbias) dbias[c] += static_cast<float>(sum_dy);
    if (dweight) dweight[c] += static_cast<float>(sum_dy_xhat);
    if (!dx) continue;
    const double k = weight[c] * invstd;
    const double mean_dy = a.training ? sum_dy / static_cast<double>(m) : 0.0;
    const double mean_dy_xhat = a.training ? sum_dy_xhat / static_cast<double>(m) : 0.0;
    for (std::int64_t n = 0; n < a.n; ++n) {
      const float* p = x + (n * a.c + c) * a.hw;
      const float* g = dy + (n * a.c + c) * a.hw;
      float* d = dx + (n * a.c + c) * a.hw;
      for (std::int64_t i = 0; i < a.hw; ++i) {
        const double xhat = (p[i] - mean) * invstd;
        d[i] = static_cast<float>(k * (g[i] - mean_dy - xhat * mean_dy_xhat));
      }
    }
  }
}

}  // namespace reference

// ---- the fast path ----------------------------------------------------------------
//
// Per channel (one OpenMP thread owns a channel, so results do not depend on the
// thread count): sums run in 16 float lanes per (n, c) plane, the planes' sums are
// added in double; the variance takes a second pass over (x - mean), which stays in
// L2. An optional ReLU is applied in the same pass that writes y (forward), and its
// output is the mask of the incoming gradient (backward): relu'(bn(x)) = [y > 0].
namespace impl {

inline constexpr int bn_lanes = 16;
using BnVec = simd::Vec<bn_lanes>::type;  // 16 floats (one zmm; two ymm or scalars elsewhere)

inline double lanes_total(const BnVec& v) {
  double s = 0.0;
  for (int l = 0; l < bn_lanes; ++l) s += v[l];
  return s;
}

// sum p[i] over one plane: 16 lanes, then the tail, in double.
inline double plane_sum(const float* __restrict p, std::int64_t len) {
  BnVec acc{};
  std::int64_t i = 0;
  for (; i + bn_lanes <= len; i += bn_lanes) {
    BnVec v;
    simd::load<bn_lanes>(v, p + i);
    acc += v;
  }
  double s = 0.0;
  for (; i < len; ++i) s += p[i];
  return s + lanes_total(acc);
}

// sum (p[i] - mean)^2 over one plane.
inline double plane_sum_sq(const float* __restrict p, float mean, std::int64_t len) {
  BnVec acc{};
  std::int64_t i = 0;
  for (; i + bn_lanes <= len; i += bn_lanes) {
    BnVec v;
    simd::load<bn_lanes>(v, p + i);
    v -= mean;
    acc += v * v;
  }
  double s = 0.0;
  for (; i < len; ++i) {
    const float d = p[i] - mean;
    s += d * d;
  }
  return s + lanes_total(acc);
}

// g = Relu ? (r > 0 ? dy : 0) : dy;  s1 += sum g, s2 += sum g * (p - mean) over one plane.
template <bool Relu>
inline void plane_grad_sums(const float* __restrict g, const float* __restrict r, const float* __restrict p, float mean,
                            std::int64_t len, double& s1, double& s2) {
  BnVec a1{}, a2{};
  std::int64_t i = 0;
  for (; i + bn_lanes <= len; i += bn_lanes) {
    BnVec gv, pv;
    simd::load<bn_lanes>(gv, g + i);
    simd::load<bn_lanes>(pv, p + i);
    if constexpr (Relu) {
      BnVec rv;
      simd::load<bn_lanes>(rv, r + i);
      gv = rv > 0.0f ? gv : BnVec{};
    }
    a1 += gv;
    a2 += gv * (pv - mean);
  }
  for (; i < len; ++i) {
    float gi = g[i];
    if constexpr (Relu) gi = r[i] > 0.0f ? gi : 0.0f;
    s1 += gi;
    s2 += gi * (p[i] - mean);
  }
  s1 += lanes_total(a1);
  s2 += lanes_total(a2);
}

// q = p * scale + shift over one plane, then max(., 0) when Relu: the one loop every forward
// variant uses, so eval, training and synced outputs stay bitwise the same expression.
template <bool Relu>
inline void bn_apply_plane(const float* __restrict p, float* __restrict q, std::int64_t hw, BnAffine affine) {
  const float scale = affine.scale, shift = affine.shift;
#pragma omp simd
  for (std::int64_t i = 0; i < hw; ++i) {
    const float v = p[i] * scale + shift;
    q[i] = Relu ? (v > 0.0f ? v : 0.0f) : v;
  }
}

template <bool Relu>
inline void batchnorm_forward(const BatchNormArgs& a, const float* x, const float* weight, const float* bias,
                              float* running_mean, float* running_var, float* save_mean, float* save_invstd, float* y) {
  const std::int64_t m = a.count(), hw = a.hw;
  if (!a.training) {
    // No statistics to gather, so the (n, c) planes split image-major, as the convolutions
    // around split their work: each thread reads the planes it wrote, instead of every
    // channel's planes from both cores' caches (5x the CPU time on two cores, Zen 4 VM).
#pragma omp parallel for schedule(static)
    for (std::int64_t pl = 0; pl < a.n * a.c; ++pl) {
      const std::int64_t c = pl % a.c;
      const BnAffine affine =
          pl < a.c ? bn_finish_channel(a, c, 0.0, 0.0, weight, bias, running_mean, running_var, save_mean, save_invstd)
                   : bn_eval_affine(a, c, weight, bias, running_mean, running_var);
      bn_apply_plane<Relu>(x + pl * hw, y + pl * hw, hw, affine);
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.c; ++c) {
    double mean = 0.0, sq = 0.0;
    if (a.training) {
      double sum = 0.0;
      for (std::int64_t n = 0; n < a.n; ++n) {
        const float* __restrict p = x + (n * a.c + c) * hw;
        sum += plane_sum(p, hw);
      }
      mean = sum / static_cast<double>(m);
      const float mf = static_cast<float>(mean);
      for (std::int64_t n = 0; n < a.n; ++n) {
        const float* __restrict p = x + (n * a.c + c) * hw;
        sq += plane_sum_sq(p, mf, hw);
      }
    }
    const BnAffine affine =
        bn_finish_channel(a, c, mean, sq, weight, bias, running_mean, running_var, save_mean, save_invstd);
    for (std::int64_t n = 0; n < a.n; ++n)
      bn_apply_plane<Relu>(x + (n * a.c + c) * hw, y + (n * a.c + c) * hw, hw, affine);
  }
}

// relu_y: the ReLU's output (Relu only): the gradient reaching the batch norm is
// g = relu_y > 0 ? dy : 0.
template <bool Relu>
inline void batchnorm_backward(const BatchNormArgs& a, const float* x, const float* weight, const float* save_mean,
                               const float* save_invstd, const float* relu_y, const float* dy, float* dx,
                               float* dweight, float* dbias) {
  const std::int64_t m = a.count(), hw = a.hw;
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < a.c; ++c) {
    const float mean = save_mean[c], invstd = save_invstd[c];
    double sum_dy = 0.0, sum_dy_xc = 0.0;  // sum g, sum g * (x - mean)
    for (std::int64_t n = 0; n < a.n; ++n) {
      const std::int64_t off = (n * a.c + c) * hw;
      const float* __restrict p = x + off;
      const float* __restrict g = dy + off;
      const float* __restrict r = Relu ? relu_y + off : nullptr;
      plane_grad_sums<Relu>(g, r, p, mean, hw, sum_dy, sum_dy_xc);
    }
    const double sum_dy_xhat = sum_dy_xc * invstd;
    if (dbias) dbias[c] += static_cast<float>(sum_dy);
    if (dweight) dweight[c] += static_cast<float>(sum_dy_xhat);
    if (!dx) continue;
    // dx = k * (g - mean(g) - xhat * mean(g * xhat)) = k * g + slope * (x - mean) + offset
    const double k = static_cast<double>(weight[c]) * invstd;
    const double mean_dy = a.training ? sum_dy / static_cast<double>(m) : 0.0;
    const double mean_dy_xhat = a.training ? sum_dy_xhat / static_cast<double>(m) : 0.0;
    const float kf = static_cast<float>(k), slope = static_cast<float>(-k * invstd * mean_dy_xhat),
                offset = static_cast<float>(-k * mean_dy);
    for (std::int64_t n = 0; n < a.n; ++n) {
      const std::int64_t off = (n * a.c + c) * hw;
      const float* __restrict p = x + off;
      const float* __restrict g = dy + off;
      const float* __restrict r = Relu ? relu_y + off : nullptr;
      float* __restrict d = dx + off;
#pragma omp simd
      for (std::int64_t i = 0; i < hw; ++i) {
        float gi = g[i];
        if constexpr (Relu) gi = r[i] > 0.0f ? gi : 0.0f;
        d[i] = kf * gi + slope * (p[i] - mean) + offset;
      }
    }
  }
}

// The same passes for a batch split across replicas (synchronised BatchNorm, training
// only): every per-channel sum goes through sum_across (which adds the values of all
// replicas in place) before it is used, so each replica normalises its part with the
// statistics of the whole batch. Forward: [sum x, count] -> mean; sum (x - mean)^2 ->
// variance over the global count. Backward: [sum g, sum g * (x - mean)] -> dx; dweight
// and dbias receive this replica's own sums (the trainer averages parameter gradients).
template <bool Relu, class SumAcross>
inline void batchnorm_forward_across(const BatchNormArgs& a, const float* x, const float* weight, const float* bias,
                                     float* running_mean, float* running_var, float* save_mean, float* save_invstd,
                                     float* y, std::vector<double>& sums, SumAcross&& sum_across) {
  const std::int64_t hw = a.hw, C = a.c;
  sums.assign(std::size_t(C) + 1, 0.0);
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < C; ++c) {
    double s = 0.0;
    for (std::int64_t n = 0; n < a.n; ++n) s += plane_sum(x + (n * C + c) * hw, hw);
    sums[std::size_t(c)] = s;
  }
  sums[std::size_t(C)] = double(a.count());
  sum_across(std::span<double>(sums));
  const double m = sums[std::size_t(C)];
  std::vector<double> mean(static_cast<std::size_t>(C));
  for (std::int64_t c = 0; c < C; ++c) mean[std::size_t(c)] = sums[std::size_t(c)] / m;
  sums.resize(std::size_t(C));
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < C; ++c) {
    double sq = 0.0;
    const float mf = static_cast<float>(mean[std::size_t(c)]);
    for (std::int64_t n = 0; n < a.n; ++n) sq += plane_sum_sq(x + (n * C + c) * hw, mf, hw);
    sums[std::size_t(c)] = sq;
  }
  sum_across(std::span<double>(sums));
  BatchNormArgs global = a;  // bn_finish_channel divides by count(): the global one
  global.n = 1;
  global.hw = static_cast<std::int64_t>(m);
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < C; ++c) {
    const BnAffine affine = bn_finish_channel(global, c, mean[std::size_t(c)], sums[std::size_t(c)], weight, bias,
                                              running_mean, running_var, save_mean, save_invstd);
    for (std::int64_t n = 0; n < a.n; ++n) bn_apply_plane<Relu>(x + (n * C + c) * hw, y + (n * C + c) * hw, hw, affine);
  }
}

template <bool Relu, class SumAcross>
inline void batchnorm_backward_across(const BatchNormArgs& a, const float* x, const float* weight,
                                      const float* save_mean, const float* save_invstd, const float* relu_y,
                                      const float* dy, float* dx, float* dweight, float* dbias,
                                      std::vector<double>& sums, SumAcross&& sum_across) {
  const std::int64_t hw = a.hw, C = a.c;
  sums.assign(2 * std::size_t(C) + 1, 0.0);
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < C; ++c) {
    double s1 = 0.0, s2 = 0.0;
    for (std::int64_t n = 0; n < a.n; ++n) {
      const std::int64_t off = (n * C + c) * hw;
      plane_grad_sums<Relu>(dy + off, Relu ? relu_y + off : nullptr, x + off, save_mean[c], hw, s1, s2);
    }
    if (dbias) dbias[c] += static_cast<float>(s1);
    if (dweight) dweight[c] += static_cast<float>(s2 * save_invstd[c]);
    sums[2 * std::size_t(c)] = s1;
    sums[2 * std::size_t(c) + 1] = s2;
  }
  sums[2 * std::size_t(C)] = double(a.count());
  sum_across(std::span<double>(sums));  // collective: every replica calls it, dx wanted or not
  if (!dx) return;
  const double m = sums[2 * std::size_t(C)];
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < C; ++c) {
    const float mean = save_mean[c];
    const double invstd = save_invstd[c];
    const double k = static_cast<double>(weight[c]) * invstd;
    const double mean_dy = sums[2 * std::size_t(c)] / m;
    const double mean_dy_xhat = sums[2 * std::size_t(c) + 1] * invstd / m;
    const float kf = static_cast<float>(k), slope = static_cast<float>(-k * invstd * mean_dy_xhat),
                offset = static_cast<float>(-k * mean_dy);
    for (std::int64_t n = 0; n < a.n; ++n) {
      const std::int64_t off = (n * C + c) * hw;
      const float* __restrict p = x + off;
      const float* __restrict g = dy + off;
      const float* __restrict r = Relu ? relu_y + off : nullptr;
      float* __restrict d = dx + off;
#pragma omp simd
      for (std::int64_t i = 0; i < hw; ++i) {
        float gi = g[i];
        if constexpr (Relu) gi = r[i] > 0.0f ? gi : 0.0f;
        d[i] = kf * gi + slope * (p[i] - mean) + offset;
      }
    }
  }
}

}  // namespace impl

// What the layers call (same contract as reference::batchnorm_forward/backward; the _relu pair is
// BatchNorm then ReLU), declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) they are
// defined in one unit of the program only.
void batchnorm_forward(const BatchNormArgs& a, const float* x, const float* weight, const float* bias,
                       float* running_mean, float* running_var, float* save_mean, float* save_invstd, float* y);
void batchnorm_backward(const BatchNormArgs& a, const float* x, const float* weight, const float* save_mean,
                        const float* save_invstd, const float* dy, float* dx, float* dweight, float* dbias);
void batchnorm_relu_forward(const BatchNormArgs& a, const float* x, const float* weight, const float* bias,
                            float* running_mean, float* running_var, float* save_mean, float* save_invstd, float* y);
void batchnorm_relu_backward(const BatchNormArgs& a, const float* x, const float* weight, const float* save_mean,
                             const float* save_invstd, const float* y, const float* dy, float* dx, float* dweight,
                             float* dbias);
// Synchronised BatchNorm (impl::batchnorm_*_across; relu: the fused pair, y masks dy in backward).
using SumAcross = std::function<void(std::span<double>)>;
void batchnorm_forward_across(const BatchNormArgs& a, bool relu, const float* x, const float* weight, const float* bias,
                              float* running_mean, float* running_var, float* save_mean, float* save_invstd, float* y,
                              std::vector<double>& sums, const SumAcross& sum_across);
void batchnorm_backward_across(const BatchNormArgs& a, bool relu, const float* x, const float* weight,
                               const float* save_mean, const float* save_invstd, const float* y, const float* dy,
                               float* dx, float* dweight, float* dbias, std::vector<double>& sums,
                               const SumAcross& sum_across);

#if KILN_CPU_ENTRY_DEFINITIONS
KILN_CPU_ENTRY void batchnorm_forward(const BatchNormArgs& a, const float* x, const float* weight, const float* bias,
                                      float* running_mean, float* running_var, float* save_mean, float* save_invstd,
                                      float* y) {
  impl::batchnorm_forward<false>(a, x, weight, bias, running_mean, running_var, save_mean, save_invstd, y);
}
KILN_CPU_ENTRY void batchnorm_backward(const BatchNormArgs& a, const float* x, const float* weight,
                                       const float* save_mean, const float* save_invstd, const float* dy, float* dx,
                                       float* dweight, float* dbias) {
  impl::batchnorm_backward<false>(a, x, weight, save_mean, save_invstd, nullptr, dy, dx, dweight, dbias);
}

// BatchNorm followed by ReLU, one pass each way: y = max(batchnorm(x), 0);
// backward takes the ReLU's output y as the mask (dy counts where y > 0) and
// produces the batch norm's dx, dweight, dbias as the unfused pair would.
KILN_CPU_ENTRY void batchnorm_relu_forward(const BatchNormArgs& a, const float* x, const float* weight,
                                           const float* bias, float* running_mean, float* running_var, float* save_mean,
                                           float* save_invstd, float* y) {
  impl::batchnorm_forward<true>(a, x, weight, bias, running_mean, running_var, save_mean, save_invstd, y);
}
KILN_CPU_ENTRY void batchnorm_relu_backward(const BatchNormArgs& a, const float* x, const float* weight,
                                            const float* save_mean, const float* save_invstd, const float* y,
                                            const float* dy, float* dx, float* dweight, float* dbias) {
  impl::batchnorm_backward<true>(a, x, weight, save_mean, save_invstd, y, dy, dx, dweight, dbias);
}
KILN_CPU_ENTRY void batchnorm_forward_across(const BatchNormArgs& a, bool relu, const float* x, const float* weight,
                                             const float* bias, float* running_mean, float* running_var,
                                             float* save_mean, float* save_invstd, float* y, std::vector<double>& sums,
                                             const SumAcross& sum_across) {
  if (relu)
    impl::batchnorm_forward_across<true>(a, x, weight, bias, running_mean, running_var, save_mean, save_invstd, y, sums,
                                         sum_across);
  else
    impl::batchnorm_forward_across<false>(a, x, weight, bias, running_mean, running_var, save_mean, save_invstd, y,
                                          sums, sum_across);
}
KILN_CPU_ENTRY void batchnorm_backward_across(const BatchNormArgs& a, bool relu, const float* x, const float* weight,
                                              const float* save_mean, const float* save_invstd, const float* y,
                                              const float* dy, float* dx, float* dweight, float* dbias,
                                              std::vector<double>& sums, const SumAcross& sum_across) {
  if (relu)
    impl::batchnorm_backward_across<true>(a, x, weight, save_mean, save_invstd, y, dy, dx, dweight, dbias, sums,
                                          sum_across);
  else
    impl::batchnorm_backward_across<false>(a, x, weight, save_mean, save_invstd, nullptr, dy, dx, dweight, dbias, sums,
                                           sum_across);
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::cpu
