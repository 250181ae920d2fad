#pragma once
// Optimizer updates (kiln::AdamStepArgs / SgdStepArgs, whose step-dependent scalars the host
// computes in double). CPU oracle: kiln/cpu/optim.hpp. The arguments are read from device memory
// (`a`, staged there by Backend<Cuda>: include/kiln/cuda/step_scalars.hpp), not passed by value, so
// that a step captured into a CUDA graph reads each replay's learning rate and bias corrections;
// numel travels by value (it does not change). `skip` (may be null): a device flag set by the
// step's non-finite check; when non-zero the update is skipped and the weights keep their values.
#include <cstdint>
#include <math.h>

#include "block_reduce.cuh"
#include "kiln/ops/optim.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// Adam / AdamW (torch.optim semantics, amsgrad off):
//   g = grad + l2 * p;  p *= decay;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// on parameter j: p[j], m[j] and v[j] written, the new p[j] returned. Every Adam kernel runs it
// (adam_conv_pack.cuh's too), so all of them give the same bits.
template <class Float, class Index>
__device__ __forceinline__ Float adam_update(const AdamStepArgs& a, Float* p, const Float* grad, Float* m, Float* v,
                                             Index j) {
  const Float g = grad[j] + a.l2 * p[j];
  const Float pi = p[j] * a.decay;
  const Float mi = a.beta1 * m[j] + a.one_minus_beta1 * g;
  const Float vi = a.beta2 * v[j] + a.one_minus_beta2 * g * g;
  m[j] = mi;
  v[j] = vi;
  const Float out = pi - a.step_size * mi / (sqrtf(vi) / a.bias_correction2_sqrt + a.eps);
  p[j] = out;
  return out;
}

template <class Float>
__global__ void __launch_bounds__(256, 8)
    adam_step_kernel(const AdamStepArgs* args, std::int64_t numel, const unsigned* skip, Float* p, const Float* grad,
                     Float* m, Float* v) {
  if (skip != nullptr && *skip != 0u) return;
  const AdamStepArgs a = *args;
  KILN_GRID_STRIDE_LOOP(i, numel) { adam_update(a, p, grad, m, v, i); }
}

// Adam / AdamW over many parameter tensors in one launch (multi-tensor apply, as PyTorch's
// foreach/fused Adam): the tensors' elements are numbered one after another, tensor t covering
// [start[t], start[t+1]); the grid-stride loop finds each element's tensor by walking `start`
// forward (a thread's indices only grow). The same arithmetic as adam_step_kernel, element by
// element. Up to adam_multi_max_tensors per launch
// (the list travels in the kernel's parameters, 4 KiB at most); the launcher splits longer lists.
inline constexpr int adam_multi_max_tensors = 64;
template <class Float>
struct AdamTensorList {
  Float* p[adam_multi_max_tensors];
  const Float* g[adam_multi_max_tensors];
  Float* m[adam_multi_max_tensors];
  Float* v[adam_multi_max_tensors];
  std::int64_t start[adam_multi_max_tensors + 1];
  int count;
};
static_assert(sizeof(AdamTensorList<float>) + 2 * sizeof(void*) <= 4096, "kernel parameters are limited to 4 KiB");

// AdamStepArgs' scalars (numel left out) through shared memory, field by field: a struct copy is a
// memcpy, whose shared-memory write the checking build's init check would not see.
inline constexpr int adam_scalar_count = 9;
__device__ __forceinline__ void adam_scalars_store(const AdamStepArgs* a, float* s) {
  s[0] = a->beta1, s[1] = a->beta2, s[2] = a->one_minus_beta1, s[3] = a->one_minus_beta2, s[4] = a->eps;
  s[5] = a->l2, s[6] = a->decay, s[7] = a->step_size, s[8] = a->bias_correction2_sqrt;
}
__device__ __forceinline__ AdamStepArgs adam_scalars_load(const float* s) {
  AdamStepArgs a;
  a.beta1 = s[0], a.beta2 = s[1], a.one_minus_beta1 = s[2], a.one_minus_beta2 = s[3], a.eps = s[4];
  a.l2 = s[5], a.decay = s[6], a.step_size = s[7], a.bias_correction2_sqrt = s[8];
  return a;
}

template <class Float>
__global__ void adam_multi_tensor_kernel(const AdamStepArgs* args, const unsigned* skip, AdamTensorList<Float> list) {
  // The step's scalars, read by thread 0 and shared: one warp's requests per block instead of
  // every warp's (a warp-wide read of the same word moves a sector for 4 bytes).
  __shared__ float scalars[adam_scalar_count];
  __shared__ unsigned skipped;
  if (threadIdx.x == 0) {
    skipped = skip != nullptr ? *skip : 0u;
    if (skipped == 0u) adam_scalars_store(args, scalars);
  }
  __syncthreads();
  if (skipped != 0u) return;  // uniform
  const AdamStepArgs a = adam_scalars_load(scalars);
  const std::int64_t total = list.start[list.count];
  int t = 0;
  KILN_GRID_STRIDE_LOOP(i, total) {
    while (i >= list.start[t + 1]) ++t;
    const std::int64_t j = i - list.start[t];
    adam_update(a, list.p[t], list.g[t], list.m[t], list.v[t], j);
  }
}

// SGD (torch.optim semantics): g = grad + wd p; with momentum buf = first ? g : mu buf + (1-damp) g,
// g = nesterov ? g + mu buf : buf; p -= lr g. buf may be null when momentum == 0.
template <class Float>
__global__ void sgd_step_kernel(const SgdStepArgs* args, std::int64_t numel, const unsigned* skip, Float* p,
                                const Float* grad, Float* buf) {
  if (skip != nullptr && *skip != 0u) return;
  const SgdStepArgs a = *args;
  const bool use_momentum = a.momentum != 0.0f;
  KILN_GRID_STRIDE_LOOP(i, numel) {
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
