#pragma once
// Activations (LeakyReLU, SiLU, Sigmoid, Tanh), Dropout's counter-based mask, and the
// element-wise tensor helpers (sub, mul, affine, clamp) on the CPU: plain loops, the reference
// and the used version. The CUDA kernels (kernels/activation.cuh) compute the same formulas.
//
// ActivationArgs, DropoutArgs, ElementwiseOp and dropout_uniform() are device-neutral
// (Backend<Cuda> and the kernels use them too).
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define KILN_HOST_DEVICE __host__ __device__
#else
#define KILN_HOST_DEVICE
#endif

namespace kiln {

enum class ActivationKind { leaky_relu, silu, sigmoid, tanh };

struct ActivationArgs {
  ActivationKind kind = ActivationKind::sigmoid;
  std::int64_t numel = 0;
  float negative_slope = 0.01f;  // LeakyReLU only
};

// Dropout: element i of the `step`-th training forward of a layer with `seed` is kept when
// dropout_uniform(seed, step, i) >= p, and then scaled by 1 / (1 - p) (PyTorch's "inverted"
// dropout). The mask is a pure function of (seed, step, i): the CPU and every GPU draw the
// same mask, and backward recomputes it instead of storing it.
struct DropoutArgs {
  std::int64_t numel = 0;
  float p = 0.5f;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
};

// splitmix64's finaliser: a bijective 64-bit mix.
KILN_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 bits (exactly representable floats, so `u >= p` is decided
// identically on every device), from the counter (seed, step, index).
KILN_HOST_DEVICE inline float dropout_uniform(std::uint64_t seed, std::uint64_t step, std::uint64_t index) {
  const std::uint64_t stream = mix64(seed ^ mix64(step + 0x9E3779B97F4A7C15ull));
  const std::uint64_t z = mix64(stream + (index + 1) * 0x9E3779B97F4A7C15ull);
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

// The scale of the kept elements: 1 / (1 - p); 0 when p == 1 (everything dropped).
KILN_HOST_DEVICE inline float dropout_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

// The binary element-wise operations of kiln::sub / kiln::mul (add has its own op).
enum class ElementwiseOp { sub, mul };

}  // namespace kiln

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

inline void activation_forward(const ActivationArgs& a, const float* x, float* y) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i) y[i] = activation_value(a, x[i]);
}

// dx overwritten.
inline void activation_backward(const ActivationArgs& a, const float* x, const float* y, const float* dy, float* dx) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i) dx[i] = activation_gradient(a, x[i], y[i], dy[i]);
}

// y = keep(i) ? x * scale : 0 (see DropoutArgs).
inline void dropout_forward(const DropoutArgs& a, const float* x, float* y) {
  const float scale = dropout_scale(a.p);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i)
    y[i] = dropout_uniform(a.seed, a.step, static_cast<std::uint64_t>(i)) >= a.p ? x[i] * scale : 0.0f;
}

// dx = keep(i) ? dy * scale : 0, the mask recomputed from (seed, step, i).
inline void dropout_backward(const DropoutArgs& a, const float* dy, float* dx) { dropout_forward(a, dy, dx); }

// out = a - b or a * b; out may be a or b.
inline void elementwise_binary(ElementwiseOp op, const float* a, const float* b, float* out, std::int64_t n) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) out[i] = op == ElementwiseOp::sub ? a[i] - b[i] : a[i] * b[i];
}

// out = a * alpha + beta; out may be a.
inline void affine(const float* a, float alpha, float beta, float* out, std::int64_t n) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] * alpha + beta;
}

// out = min(max(a, lo), hi) (NaN stays NaN, like torch.clamp); out may be a.
inline void clamp(const float* a, float lo, float hi, float* out, std::int64_t n) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] != a[i] ? a[i] : (a[i] < lo ? lo : (a[i] > hi ? hi : a[i]));
}

}  // namespace kiln::cpu
