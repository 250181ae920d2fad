#pragma once
// Activation kernels (LeakyReLU, SiLU, Sigmoid, Tanh: kiln::ActivationArgs), Dropout with a
// counter-based mask (kiln::dropout_uniform: the same function on the host and the device, so the
// GPU's mask equals the CPU's bit for bit), and the element-wise helpers behind kiln::sub / mul /
// scale / clamp. Grid-stride loops (launch shape from grid_stride()).
// CPU oracle: kiln/cpu/activation.hpp (the same formulas; expf/tanhf may differ in the last bits).
#include <cstdint>
#include <math.h>

#include "block_reduce.cuh"
#include "kiln/ops/activation.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

__device__ __forceinline__ float device_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// y = f(x) (as kiln::cpu::activation_value).
template <class Float>
__global__ void activation_forward_kernel(ActivationArgs a, const Float* x, Float* y) {
  KILN_GRID_STRIDE_LOOP(i, a.numel) {
    const float v = x[i];
    float r = 0.0f;
    switch (a.kind) {
      case ActivationKind::leaky_relu:
        r = v > 0.0f ? v : a.negative_slope * v;
        break;
      case ActivationKind::silu:
        r = v / (1.0f + expf(-v));
        break;
      case ActivationKind::sigmoid:
        r = device_sigmoid(v);
        break;
      case ActivationKind::tanh:
        r = tanhf(v);
        break;
    }
    y[i] = r;
  }
}

// dx = f'(x) * dy, from x or y (as kiln::cpu::activation_gradient); overwritten.
template <class Float>
__global__ void activation_backward_kernel(ActivationArgs a, const Float* x, const Float* y, const Float* dy,
                                           Float* dx) {
  KILN_GRID_STRIDE_LOOP(i, a.numel) {
    const float g = dy[i];
    float r = 0.0f;
    switch (a.kind) {
      case ActivationKind::leaky_relu:
        r = x[i] > 0.0f ? g : a.negative_slope * g;
        break;
      case ActivationKind::silu: {
        const float v = x[i], s = device_sigmoid(v);
        r = g * s * (1.0f + v * (1.0f - s));
        break;
      }
      case ActivationKind::sigmoid:
        r = g * y[i] * (1.0f - y[i]);
        break;
      case ActivationKind::tanh:
        r = g * (1.0f - y[i] * y[i]);
        break;
    }
    dx[i] = r;
  }
}

// y = keep(i) ? x * 1/(1-p) : 0 with keep(i) = dropout_uniform(seed, step, i) >= p. Backward is the
// same kernel applied to dy (the mask is recomputed, not stored).
template <class Float>
__global__ void dropout_kernel(DropoutArgs a, const Float* x, Float* y) {
  const float scale = dropout_scale(a.p);
  KILN_GRID_STRIDE_LOOP(i, a.numel) {
    y[i] = dropout_uniform(a.seed, a.step, static_cast<std::uint64_t>(i)) >= a.p ? x[i] * scale : Float(0);
  }
}

// out = a - b or a * b (out may alias a or b).
template <class Float>
__global__ void elementwise_binary_kernel(ElementwiseOp op, const Float* a, const Float* b, Float* out,
                                          std::int64_t n) {
  KILN_GRID_STRIDE_LOOP(i, n) out[i] = op == ElementwiseOp::sub ? a[i] - b[i] : a[i] * b[i];
}

// out = a * alpha + beta (out may alias a).
template <class Float>
__global__ void affine_kernel(const Float* a, Float alpha, Float beta, Float* out, std::int64_t n) {
  KILN_GRID_STRIDE_LOOP(i, n) out[i] = a[i] * alpha + beta;
}

// out = min(max(a, lo), hi), NaN kept (out may alias a).
template <class Float>
__global__ void clamp_kernel(const Float* a, Float lo, Float hi, Float* out, std::int64_t n) {
  KILN_GRID_STRIDE_LOOP(i, n) {
    const Float v = a[i];
    out[i] = v != v ? v : (v < lo ? lo : (v > hi ? hi : v));
  }
}

}  // namespace kiln::cuda::kernels
