#pragma once
// The regression losses' arguments and per-element maths (MSE, L1, Huber), shared by
// Backend<Cpu> (cpu/loss.hpp) and the CUDA kernels (kernels/loss.cuh).
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
