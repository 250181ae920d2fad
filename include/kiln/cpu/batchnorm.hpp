#pragma once
// BatchNorm2d on the CPU: NCHW, statistics per channel over (N, H, W).
// These plain loops (double accumulation, OpenMP over channels) are both the
// reference and the version layers call; a faster path is a later issue.
//
// BatchNormArgs is device-neutral (Backend<Cuda> takes the same struct).
#include <cmath>
#include <cstdint>

namespace kiln {

struct BatchNormArgs {
  std::int64_t n = 0, c = 0, hw = 0;  // input [n, c, hw]
  float eps = 1e-5f;
  float momentum = 0.1f;  // running = (1 - momentum) * running + momentum * batch
  bool training = true;   // batch statistics (train) or running statistics (eval)
  constexpr std::int64_t count() const { return n * hw; }  // values per channel
};

}  // namespace kiln

namespace kiln::cpu {

using kiln::BatchNormArgs;

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
    double mean, invstd;
    if (a.training) {
      double sum = 0.0;
      for (std::int64_t n = 0; n < a.n; ++n) {
        const float* p = x + (n * a.c + c) * a.hw;
        for (std::int64_t i = 0; i < a.hw; ++i) sum += p[i];
      }
      mean = sum / static_cast<double>(m);
      double sq = 0.0;  // two passes: no cancellation
      for (std::int64_t n = 0; n < a.n; ++n) {
        const float* p = x + (n * a.c + c) * a.hw;
        for (std::int64_t i = 0; i < a.hw; ++i) {
          const double d = p[i] - mean;
          sq += d * d;
        }
      }
      const double var = sq / static_cast<double>(m);  // biased: used to normalise
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
    // y = x * scale + shift
    const float scale = static_cast<float>(weight[c] * invstd);
    const float shift = static_cast<float>(bias[c] - mean * weight[c] * invstd);
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

}  // namespace kiln::cpu
