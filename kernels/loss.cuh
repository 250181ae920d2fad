#pragma once
// Regression losses with mean reduction (kiln::LossArgs: MSE, L1, Huber). CPU oracle: kiln/cpu/loss.hpp.
// forward: a deterministic two-stage reduction (reduce.cuh): loss_partial_kernel, grid (plan.chunks),
// one double partial per block over a fixed chunk, then sum_partials_kernel adds them in order and
// divides by numel. backward: element-wise, V floats per access.
#include <cstdint>
#include <math.h>

#include "block_reduce.cuh"
#include "reduce.cuh"
#include "vector_access.cuh"
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

// Stage 1: partials[j] = Σ loss(prediction - target) over block j's chunk (in double, as the CPU);
// grid (plan.chunks), block reduce_threads; V = 4 needs numel % 4 == 0 and aligned tensors.
template <int V>
__global__ void loss_partial_kernel(LossArgs a, ReducePlan plan, const float* prediction, const float* target,
                                    double* partials) {
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * plan.chunk;
  const std::int64_t end = first + plan.chunk < a.numel ? first + plan.chunk : a.numel;
  double sum = 0.0;
  for (std::int64_t i = first + static_cast<std::int64_t>(threadIdx.x) * V; i < end;
       i += static_cast<std::int64_t>(blockDim.x) * V) {
    const Floats<V> p = load_floats<V>(prediction + i), t = load_floats<V>(target + i);
    KILN_UNROLL
    for (int l = 0; l < V; ++l)
      sum += device_loss_value(a.kind, a.delta, static_cast<double>(p.v[l]) - static_cast<double>(t.v[l]));
  }
  sum = block_all_sum(sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// dprediction = loss'(prediction - target) / numel (overwritten); grid-stride over groups of V.
template <int V>
__global__ void loss_backward_kernel(LossArgs a, const float* prediction, const float* target, float* dprediction) {
  const float inv = a.numel ? 1.0f / static_cast<float>(a.numel) : 0.0f;
  KILN_GRID_STRIDE_LOOP(g, a.numel / V) {
    const Floats<V> p = load_floats<V>(prediction + g * V), t = load_floats<V>(target + g * V);
    Floats<V> d;
    KILN_UNROLL
    for (int l = 0; l < V; ++l) d.v[l] = device_loss_derivative(a.kind, a.delta, p.v[l] - t.v[l]) * inv;
    store_floats<V>(dprediction + g * V, d);
  }
}

}  // namespace kiln::cuda::kernels
