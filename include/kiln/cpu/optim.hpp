#pragma once
// Optimizer updates on the CPU, per parameter tensor or all of Adam's tensors at once (element-wise,
// OpenMP): Adam / AdamW and SGD with PyTorch's semantics.
#include <cmath>
#include <cstdint>
#include <cstddef>

#include "kiln/cpu/separate.hpp"
#include "kiln/ops/optim.hpp"

namespace kiln::cpu {

using kiln::AdamStepArgs;
using kiln::SgdStepArgs;

// torch.optim.Adam / AdamW, one tensor (amsgrad off, maximize off):
//   g = grad + l2 * p  (Adam's weight decay; l2 = 0 for AdamW)
//   p *= decay         (AdamW's decoupled decay 1 - lr * wd; decay = 1 for Adam)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   p -= step_size * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// One element; adam_step and adam_step_multi both use it, so they give the same bits.
inline void adam_update(const AdamStepArgs& a, float* p, const float* grad, float* m, float* v, std::int64_t i) {
  const float g = grad[i] + a.l2 * p[i];
  const float pi = p[i] * a.decay;
  const float mi = a.beta1 * m[i] + a.one_minus_beta1 * g;
  const float vi = a.beta2 * v[i] + a.one_minus_beta2 * g * g;
  m[i] = mi;
  v[i] = vi;
  p[i] = pi - a.step_size * mi / (std::sqrt(vi) / a.bias_correction2_sqrt + a.eps);
}

// One tensor of a multi-tensor step.
struct AdamSpan {
  float* p;
  const float* grad;
  float* m;
  float* v;
  std::int64_t numel;
};
// span_of(context, k) -> AdamSpan of tensor k.
using AdamSpanOf = AdamSpan (*)(const void* context, std::size_t k);

// The loops, declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) defined in one unit of
// the program only.
void adam_step(const AdamStepArgs& a, float* p, const float* grad, float* m, float* v);
void adam_step_spans(const AdamStepArgs& a, std::size_t count, AdamSpanOf span_of, const void* context);
void sgd_step(const SgdStepArgs& a, float* p, const float* grad, float* buf);

#if KILN_CPU_ENTRY_DEFINITIONS
KILN_CPU_ENTRY void adam_step(const AdamStepArgs& a, float* p, const float* grad, float* m, float* v) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i) adam_update(a, p, grad, m, v, i);
}

// Every tensor in one OpenMP parallel region: one fork/join per step instead of one per tensor
// (a U-Net has ~100 parameter tensors, most of them small); the tensors are independent, so no
// barrier between them. No list is built, so a step allocates nothing.
KILN_CPU_ENTRY void adam_step_spans(const AdamStepArgs& a, std::size_t count, AdamSpanOf span_of, const void* context) {
#pragma omp parallel
  for (std::size_t k = 0; k < count; ++k) {
    const AdamSpan t = span_of(context, k);
#pragma omp for simd schedule(static) nowait
    for (std::int64_t i = 0; i < t.numel; ++i) adam_update(a, t.p, t.grad, t.m, t.v, i);
  }
}

// torch.optim.SGD, one tensor (maximize off):
//   g = grad + wd * p
//   buf = first step ? g : momentum * buf + (1 - dampening) * g   (momentum != 0)
//   d = nesterov ? g + momentum * buf : buf                        (momentum != 0; else d = g)
//   p -= lr * d
// buf may be null when momentum == 0.
KILN_CPU_ENTRY void sgd_step(const SgdStepArgs& a, float* p, const float* grad, float* buf) {
  const bool use_momentum = a.momentum != 0.0f;
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < a.numel; ++i) {
    float g = grad[i] + a.weight_decay * p[i];
    if (use_momentum) {
      const float b = a.first_step ? g : a.momentum * buf[i] + a.one_minus_dampening * g;
      buf[i] = b;
      g = a.nesterov ? g + a.momentum * b : b;
    }
    p[i] -= a.lr * g;
  }
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

// adam_step_spans with span_of(k) -> AdamSpan of tensor k, any callable.
template <class SpanOf>
void adam_step_multi(const AdamStepArgs& a, std::size_t count, const SpanOf& span_of) {
  adam_step_spans(
      a, count, [](const void* f, std::size_t k) { return (*static_cast<const SpanOf*>(f))(k); }, &span_of);
}

}  // namespace kiln::cpu
