#pragma once
// Optimizer updates, one launch per parameter tensor (kiln::AdamStepArgs / SgdStepArgs, whose
// step-dependent scalars the host computes in double). CPU oracle: kiln/cpu/optim.hpp.
#include <cstdint>
#include <math.h>

#include "block_reduce.cuh"
#include "kiln/cpu/optim.hpp"  // AdamStepArgs, SgdStepArgs (device-neutral)
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// Adam / AdamW (torch.optim semantics, amsgrad off):
//   g = grad + l2 * p;  p *= decay;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
template <class Float>
__global__ void adam_step_kernel(AdamStepArgs a, Float* p, const Float* grad, Float* m, Float* v) {
  KILN_GRID_STRIDE_LOOP(i, a.numel) {
    const Float g = grad[i] + a.l2 * p[i];
    const Float pi = p[i] * a.decay;
    const Float mi = a.beta1 * m[i] + a.one_minus_beta1 * g;
    const Float vi = a.beta2 * v[i] + a.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - a.step_size * mi / (sqrtf(vi) / a.bias_correction2_sqrt + a.eps);
  }
}

// SGD (torch.optim semantics): g = grad + wd p; with momentum buf = first ? g : mu buf + (1-damp) g,
// g = nesterov ? g + mu buf : buf; p -= lr g. buf may be null when momentum == 0.
template <class Float>
__global__ void sgd_step_kernel(SgdStepArgs a, Float* p, const Float* grad, Float* buf) {
  const bool use_momentum = a.momentum != 0.0f;
  KILN_GRID_STRIDE_LOOP(i, a.numel) {
    Float g = grad[i] + a.weight_decay * p[i];
    if (use_momentum) {
      const Float b = a.first_step ? g : a.momentum * buf[i] + a.one_minus_dampening * g;
      buf[i] = b;
      g = a.nesterov ? g + a.momentum * b : b;
    }
    p[i] -= a.lr * g;
  }
}

}  // namespace kiln::cuda::kernels
