#pragma once
// Element-wise regression losses with mean reduction on the CPU: MSE, L1 and
// Huber. Plain loops (OpenMP reduction in double): reference and used version.
#include <cmath>
#include <cstdint>

#include "kiln/cpu/separate.hpp"
#include "kiln/ops/loss.hpp"

namespace kiln::cpu {

using kiln::LossArgs;

// Declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) defined in one unit of the program only.
void loss_forward(const LossArgs& a, const float* prediction, const float* target, float* out);
void loss_backward(const LossArgs& a, const float* prediction, const float* target, float* dprediction);

#if KILN_CPU_ENTRY_DEFINITIONS
// out[0] = mean over i of loss(prediction[i] - target[i]).
KILN_CPU_ENTRY void loss_forward(const LossArgs& a, const float* prediction, const float* target, float* out) {
  double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i)
    sum += detail::loss_value(a, static_cast<double>(prediction[i]) - static_cast<double>(target[i]));
  out[0] = a.numel ? static_cast<float>(sum / static_cast<double>(a.numel)) : 0.0f;
}

// dprediction[i] = loss'(prediction[i] - target[i]) / numel (overwritten).
KILN_CPU_ENTRY void loss_backward(const LossArgs& a, const float* prediction, const float* target, float* dprediction) {
  const float inv = a.numel ? 1.0f / static_cast<float>(a.numel) : 0.0f;
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i)
    dprediction[i] = detail::loss_derivative(a, prediction[i] - target[i]) * inv;
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::cpu
