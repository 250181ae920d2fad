#pragma once
// Element-wise regression losses with mean reduction on the CPU: MSE, L1 and
// Huber. Plain loops (OpenMP reduction in double): reference and used version.
//
// LossKind and LossArgs are device-neutral (Backend<Cuda> takes the same struct).
#include <cmath>
#include <cstdint>

namespace kiln {

enum class LossKind { mse, l1, huber };

struct LossArgs {
  LossKind kind = LossKind::mse;
  std::int64_t numel = 0;  // elements of prediction (= of target); the mean divides by it
  float delta = 1.0f;      // Huber only
};

namespace detail {
// The per-element loss of d = prediction - target, and its derivative in d.
inline double loss_value(const LossArgs& a, double d) {
  switch (a.kind) {
    case LossKind::mse:
      return d * d;
    case LossKind::l1:
      return std::fabs(d);
    case LossKind::huber: {
      const double z = std::fabs(d), delta = a.delta;
      return z < delta ? 0.5 * z * z : delta * (z - 0.5 * delta);
    }
  }
  return 0.0;
}
inline float loss_derivative(const LossArgs& a, float d) {
  switch (a.kind) {
    case LossKind::mse:
      return 2.0f * d;
    case LossKind::l1:  // sign(d), 0 at d == 0 like PyTorch
      return static_cast<float>((d > 0.0f) - (d < 0.0f));
    case LossKind::huber:  // clamp(d, -delta, delta)
      return d < -a.delta ? -a.delta : (d > a.delta ? a.delta : d);
  }
  return 0.0f;
}
}  // namespace detail

}  // namespace kiln

namespace kiln::cpu {

using kiln::LossArgs;

// out[0] = mean over i of loss(prediction[i] - target[i]).
inline void loss_forward(const LossArgs& a, const float* prediction, const float* target, float* out) {
  double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i)
    sum += detail::loss_value(a, static_cast<double>(prediction[i]) - static_cast<double>(target[i]));
  out[0] = a.numel ? static_cast<float>(sum / static_cast<double>(a.numel)) : 0.0f;
}

// dprediction[i] = loss'(prediction[i] - target[i]) / numel (overwritten).
inline void loss_backward(const LossArgs& a, const float* prediction, const float* target, float* dprediction) {
  const float inv = a.numel ? 1.0f / static_cast<float>(a.numel) : 0.0f;
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i)
    dprediction[i] = detail::loss_derivative(a, prediction[i] - target[i]) * inv;
}

}  // namespace kiln::cpu
