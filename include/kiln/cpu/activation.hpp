#pragma once
// Activations (LeakyReLU, SiLU, Sigmoid, Tanh), Dropout's counter-based mask, and the
// element-wise tensor helpers (sub, mul, affine, clamp) on the CPU: plain loops, the reference
// and the used version. The CUDA kernels (kernels/activation.cuh) compute the same formulas.
#include <cmath>
#include <cstdint>

#include "kiln/cpu/separate.hpp"
#include "kiln/ops/activation.hpp"

namespace kiln::cpu {

// y = f(x), as PyTorch:
//   LeakyReLU: x > 0 ? x : negative_slope * x
//   SiLU:      x * sigmoid(x)
//   Sigmoid:   1 / (1 + exp(-x))
//   Tanh:      tanh(x)
inline float activation_value(const ActivationArgs& a, float x) {
  switch (a.kind) {
    case ActivationKind::leaky_relu:
      return x > 0.0f ? x : a.negative_slope * x;
    case ActivationKind::silu:
      return x / (1.0f + std::exp(-x));
    case ActivationKind::sigmoid:
      return 1.0f / (1.0f + std::exp(-x));
    case ActivationKind::tanh:
      return std::tanh(x);
  }
  return 0.0f;
}

// dL/dx from the input x, the output y and dL/dy:
//   LeakyReLU: x > 0 ? dy : negative_slope * dy   (PyTorch: the slope at x == 0)
//   SiLU:      dy * s * (1 + x * (1 - s)),  s = sigmoid(x)
//   Sigmoid:   dy * y * (1 - y)
//   Tanh:      dy * (1 - y * y)
inline float activation_gradient(const ActivationArgs& a, float x, float y, float dy) {
  switch (a.kind) {
    case ActivationKind::leaky_relu:
      return x > 0.0f ? dy : a.negative_slope * dy;
    case ActivationKind::silu: {
      const float s = 1.0f / (1.0f + std::exp(-x));
      return dy * s * (1.0f + x * (1.0f - s));
    }
    case ActivationKind::sigmoid:
      return dy * y * (1.0f - y);
    case ActivationKind::tanh:
      return dy * (1.0f - y * y);
  }
  return 0.0f;
}

// The loops the layers call, declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp)
// defined in one unit of the program only.
void activation_forward(const ActivationArgs& a, const float* x, float* y);
void activation_backward(const ActivationArgs& a, const float* x, const float* y, const float* dy, float* dx);
void dropout_forward(const DropoutArgs& a, const float* x, float* y);
void dropout_backward(const DropoutArgs& a, const float* dy, float* dx);
void elementwise_binary(ElementwiseOp op, const float* a, const float* b, float* out, std::int64_t n);
void affine(const float* a, float alpha, float beta, float* out, std::int64_t n);
void clamp(const float* a, float lo, float hi, float* out, std::int64_t n);

#if KILN_CPU_ENTRY_DEFINITIONS
KILN_CPU_ENTRY void activation_forward(const ActivationArgs& a, const float* x, float* y) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i) y[i] = activation_value(a, x[i]);
}

// dx overwritten.
KILN_CPU_ENTRY void activation_backward(const ActivationArgs& a, const float* x, const float* y, const float* dy,
                                        float* dx) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i) dx[i] = activation_gradient(a, x[i], y[i], dy[i]);
}

// y = keep(i) ? x * scale : 0 (see DropoutArgs).
KILN_CPU_ENTRY void dropout_forward(const DropoutArgs& a, const float* x, float* y) {
  const float scale = dropout_scale(a.p);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i)
    y[i] = dropout_uniform(a.seed, a.step, static_cast<std::uint64_t>(i)) >= a.p ? x[i] * scale : 0.0f;
}

// dx = keep(i) ? dy * scale : 0, the mask recomputed from (seed, step, i).
KILN_CPU_ENTRY void dropout_backward(const DropoutArgs& a, const float* dy, float* dx) { dropout_forward(a, dy, dx); }

// out = a - b or a * b; out may be a or b.
KILN_CPU_ENTRY void elementwise_binary(ElementwiseOp op, const float* a, const float* b, float* out, std::int64_t n) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) out[i] = op == ElementwiseOp::sub ? a[i] - b[i] : a[i] * b[i];
}

// out = a * alpha + beta; out may be a.
KILN_CPU_ENTRY void affine(const float* a, float alpha, float beta, float* out, std::int64_t n) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] * alpha + beta;
}

// out = min(max(a, lo), hi) (NaN stays NaN, like torch.clamp); out may be a.
KILN_CPU_ENTRY void clamp(const float* a, float lo, float hi, float* out, std::int64_t n) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] != a[i] ? a[i] : (a[i] < lo ? lo : (a[i] > hi ? hi : a[i]));
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::cpu
