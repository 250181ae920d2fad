#pragma once
// Regression losses with mean reduction (kiln::LossArgs: MSE, L1, Huber). CPU oracle: kiln/cpu/loss.hpp.
// forward: ONE block reduces all elements (per-thread double sums, then block_all_sum): deterministic,
// and a single launch with no scratch buffer. backward: element-wise.
#include <cstdint>
#include <math.h>

#include "block_reduce.cuh"
#include "kiln/ops/loss.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// The per-element loss of d = prediction - target (as kiln::detail::loss_value).
__device__ __forceinline__ double device_loss_value(LossKind kind, double delta, double d) {
  const double z = fabs(d);
  switch (kind) {
    case LossKind::mse:
      return d * d;
    case LossKind::l1:
      return z;
    case LossKind::huber:
      return z < delta ? 0.5 * z * z : delta * (z - 0.5 * delta);
  }
  return 0.0;
}

// Its derivative in d (as kiln::detail::loss_derivative).
__device__ __forceinline__ float device_loss_derivative(LossKind kind, float delta, float d) {
  switch (kind) {
    case LossKind::mse:
      return 2.0f * d;
    case LossKind::l1:  // sign(d), 0 at 0
      return static_cast<float>((d > 0.0f) - (d < 0.0f));
    case LossKind::huber:  // clamp(d, -delta, delta)
      return d < -delta ? -delta : (d > delta ? delta : d);
  }
  return 0.0f;
}

// grid (1), 1-D block (multiple of 32). out[0] = mean of the per-element losses.
template <class Float>
__global__ void loss_forward_kernel(LossArgs a, const Float* prediction, const Float* target, Float* out) {
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < a.numel; i += blockDim.x)
    sum += device_loss_value(a.kind, a.delta, static_cast<double>(prediction[i]) - static_cast<double>(target[i]));
  sum = block_all_sum(sum);
  if (threadIdx.x == 0) out[0] = a.numel ? static_cast<Float>(sum / static_cast<double>(a.numel)) : Float(0);
}

// dprediction = loss'(prediction - target) / numel (overwritten); grid-stride.
template <class Float>
__global__ void loss_backward_kernel(LossArgs a, const Float* prediction, const Float* target, Float* dprediction) {
  const float inv = a.numel ? 1.0f / static_cast<float>(a.numel) : 0.0f;
  KILN_GRID_STRIDE_LOOP(i, a.numel) dprediction[i] = device_loss_derivative(a.kind, a.delta, prediction[i] - target[i]) * inv;
}

}  // namespace kiln::cuda::kernels
