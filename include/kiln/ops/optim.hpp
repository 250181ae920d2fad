#pragma once
// The optimizers' per-tensor step arguments, shared by Backend<Cpu> (cpu/optim.hpp) and the
// CUDA kernels (kernels/optim.cuh). Scalars that depend on the step number (bias corrections)
// are computed once on the host, in double, by the optimizer.
#include <cstdint>

namespace kiln {

// Every field is ready to use: the host computes 1 - beta, the decay factor
// and the bias corrections in double (as PyTorch does with Python floats) and
// rounds once, so e.g. 1 - beta2 is 1e-3f, not 1 - 0.999f = 1.0000467e-3.
struct AdamStepArgs {
  std::int64_t numel = 0;
  float beta1 = 0.9f, beta2 = 0.999f;
  float one_minus_beta1 = 0.1f, one_minus_beta2 = 1e-3f;
  float eps = 1e-8f;
  float l2 = 0.0f;                     // Adam's weight_decay: g = grad + l2 * p (0 for AdamW)
  float decay = 1.0f;                  // AdamW: p *= decay = 1 - lr * weight_decay (1 for Adam)
  float step_size = 1e-3f;             // lr / (1 - beta1^t)
  float bias_correction2_sqrt = 1.0f;  // sqrt(1 - beta2^t)
};

struct SgdStepArgs {
  std::int64_t numel = 0;
  float lr = 1e-2f;
  float momentum = 0.0f;
  float one_minus_dampening = 1.0f;  // 1 - dampening, computed on the host
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool first_step = true;  // PyTorch: the first step sets buf = grad (no dampening)
};

}  // namespace kiln
