#pragma once
// BatchNorm2d kernels (NCHW, statistics per channel over N*H*W; kiln::BatchNormArgs), optionally
// fused with the ReLU that follows (Relu = true: y = max(bn(x), 0) forward; backward masks dy with
// that y). The CPU oracle is kiln::cpu::reference::batchnorm_forward / backward (and the fused
// cpu::batchnorm_relu_*). Every kernel runs on the 2-D grid (plan.chunks, C) of reduce.cuh, so a
// block knows its channel from blockIdx.y: no division per element.
//
// forward (training) = batchnorm_stats_partial_kernel: per block the shifted sums Σ(x - K) and
//   Σ(x - K)² (K = the channel's first value, so the one-pass variance does not cancel), in double;
//   then batchnorm_apply_kernel: every block adds its channel's partials in a fixed order
//   (block_sum_partials: the same bits in every block), derives mean, biased variance and the affine map as
//   cpu::bn_finish_channel does; block (0, c) writes save_mean/save_invstd and the running
//   statistics (unbiased variance); all blocks write y. Eval: the apply kernel alone, from the
//   running statistics.
// backward = batchnorm_backward_partial_kernel (Σ g, Σ g·(x - mean), g = dy or the ReLU-masked dy),
//   then batchnorm_backward_dx_kernel: the channel's totals as above, block (0, c) accumulates
//   dbias and dweight, every block writes dx = k·g + slope·(x - mean) + offset (cpu's fast form).
#include <cstdint>
#include <math.h>

#include "block_reduce.cuh"
#include "reduce.cuh"
#include "vector_access.cuh"
#include "kiln/ops/batchnorm.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// Scratch layout of the BatchNorm reductions: partials[c * chunks + j] (double2, [channel][chunk]:
// block_sum_partials reads a channel's row), then shifts[c].
// A warp's read of a channel scalar (weight[c], save_mean[c]) moves a 32-byte sector for 4 bytes:
// threads whose cursor has no positions (a chunk of fewer than 4 * reduce_threads positions, the
// deep levels' small planes) read none, and the apply kernel derives its affine map in thread 0.
inline std::int64_t batchnorm_scratch_doubles(const BatchNormArgs& a, const ReducePlan& plan) {
  return a.c * plan.chunks * 2 + a.c;
}

template <int V>
__global__ void batchnorm_stats_partial_kernel(BatchNormArgs a, ReducePlan plan, const float* x, double2* partials,
                                               double* shifts) {
  const std::int64_t c = blockIdx.y;
  ChannelCursor<V> k(a.hw, a.c, c, a.n * a.hw, plan.chunk);
  const float shift = k.valid() ? x[c * a.hw] : 0.0f;  // element (n = 0, p = 0) of channel c
  double s1 = 0.0, s2 = 0.0;
  for (; k.valid(); k.next()) {
    const Floats<V> v = load_floats<V>(x + k.offset);
    float t1 = 0.0f, t2 = 0.0f;
    KILN_UNROLL
    for (int i = 0; i < V; ++i) {
      const float d = v.v[i] - shift;
      t1 += d;
      t2 += d * d;
    }
    s1 += t1;
    s2 += t2;
  }
  s1 = block_all_sum(s1);
  s2 = block_all_sum(s2);
  if (threadIdx.x == 0) {
    partials[c * plan.chunks + blockIdx.x] = make_double2(s1, s2);
    if (blockIdx.x == 0) shifts[c] = shift;
  }
}

// Channel c's statistics from its partial sums (`total`, the fixed-order sum of the stats kernel's
// partials; eval: the running statistics) and its affine map (scale, shift) for y = x * scale + shift;
// with `write`, the saved statistics and (training) the running ones updated. One thread calls it:
// the scalars cost one warp's requests per block instead of every warp's.
__device__ __forceinline__ float2 bn_channel_affine(const BatchNormArgs& a, std::int64_t c, double2 total,
                                                    const double* shifts, const float* weight, const float* bias,
                                                    float* running_mean, float* running_var, float* save_mean,
                                                    float* save_invstd, bool write) {
  double mean, invstd;
  if (a.training) {
    const double m = static_cast<double>(a.n * a.hw);
    const double d = total.x / m;  // mean - K
    mean = shifts[c] + d;
    double sq = total.y - total.x * d;  // Σ (x - mean)²
    if (sq < 0.0) sq = 0.0;
    const double var = sq / m;
    invstd = 1.0 / sqrt(var + static_cast<double>(a.eps));
    if (write) {
      const double unbiased = a.n * a.hw > 1 ? sq / (m - 1.0) : var, mom = a.momentum;
      running_mean[c] = static_cast<float>((1.0 - mom) * running_mean[c] + mom * mean);
      running_var[c] = static_cast<float>((1.0 - mom) * running_var[c] + mom * unbiased);
    }
  } else {
    mean = running_mean[c];
    invstd = 1.0 / sqrt(static_cast<double>(running_var[c]) + static_cast<double>(a.eps));
  }
  if (write) {
    save_mean[c] = static_cast<float>(mean);
    save_invstd[c] = static_cast<float>(invstd);
  }
  return make_float2(static_cast<float>(weight[c] * invstd), static_cast<float>(bias[c] - mean * weight[c] * invstd));
}

// y = x * scale + shift (then max(., 0) with Relu) for block (j, c)'s chunk; see the file comment.
template <int V, bool Relu>
__global__ void batchnorm_apply_kernel(BatchNormArgs a, ReducePlan plan, const double2* partials, const double* shifts,
                                       const float* x, const float* weight, const float* bias, float* running_mean,
                                       float* running_var, float* save_mean, float* save_invstd, float* y) {
  const std::int64_t c = blockIdx.y;
  __shared__ float affine[2];
  double2 total = make_double2(0.0, 0.0);
  // uniform: the whole block reduces the channel's partials (same bits in every block)
  if (a.training) total = block_sum_partials(partials + c * plan.chunks, plan.chunks);
  if (threadIdx.x == 0) {
    const float2 m = bn_channel_affine(a, c, total, shifts, weight, bias, running_mean, running_var, save_mean,
                                       save_invstd, blockIdx.x == 0);
    affine[0] = m.x;
    affine[1] = m.y;
  }
  __syncthreads();
  const float scale = affine[0], shift = affine[1];
  ChannelCursor<V> k(a.hw, a.c, c, a.n * a.hw, plan.chunk);
  for (; k.valid(); k.next()) {
    Floats<V> v = load_floats<V>(x + k.offset);
    KILN_UNROLL
    for (int i = 0; i < V; ++i) {
      const float t = v.v[i] * scale + shift;
      v.v[i] = Relu ? (t > 0.0f ? t : 0.0f) : t;
    }
    store_floats<V>(y + k.offset, v);
  }
}

// The gradient reaching the batch norm: dy, or dy where the fused ReLU's output was positive.
template <int V, bool Relu>
__device__ __forceinline__ Floats<V> bn_incoming_gradient(const float* dy, const float* relu_y, std::int64_t offset) {
  Floats<V> g = load_floats<V>(dy + offset);
  if constexpr (Relu) {
    const Floats<V> r = load_floats<V>(relu_y + offset);
    KILN_UNROLL
    for (int i = 0; i < V; ++i) g.v[i] = r.v[i] > 0.0f ? g.v[i] : 0.0f;
  }
  return g;
}

// partials[c * chunks + j] = (Σ g, Σ g·(x - mean)) over block (j, c)'s chunk.
template <int V, bool Relu>
__global__ void batchnorm_backward_partial_kernel(BatchNormArgs a, ReducePlan plan, const float* x,
                                                  const float* save_mean, const float* relu_y, const float* dy,
                                                  double2* partials) {
  const std::int64_t c = blockIdx.y;
  ChannelCursor<V> k(a.hw, a.c, c, a.n * a.hw, plan.chunk);
  const float mean = k.valid() ? save_mean[c] : 0.0f;
  double s1 = 0.0, s2 = 0.0;
  for (; k.valid(); k.next()) {
    const Floats<V> g = bn_incoming_gradient<V, Relu>(dy, relu_y, k.offset);
    const Floats<V> v = load_floats<V>(x + k.offset);
    float t1 = 0.0f, t2 = 0.0f;
    KILN_UNROLL
    for (int i = 0; i < V; ++i) {
      t1 += g.v[i];
      t2 += g.v[i] * (v.v[i] - mean);
    }
    s1 += t1;
    s2 += t2;
  }
  s1 = block_all_sum(s1);
  s2 = block_all_sum(s2);
  if (threadIdx.x == 0) partials[c * plan.chunks + blockIdx.x] = make_double2(s1, s2);
}

// dbias += Σ g, dweight += Σ g·x̂ (block (0, c); either may be null); dx (if not null, overwritten;
// the launcher then runs the full grid, else grid (1, C)) = k·g + slope·(x - mean) + offset with
// k = weight·invstd and, in training, slope = -k·invstd·mean(g·x̂), offset = -k·mean(g) (eval: 0).
template <int V, bool Relu>
__global__ void batchnorm_backward_dx_kernel(BatchNormArgs a, ReducePlan plan, const double2* partials, const float* x,
                                             const float* weight, const float* save_mean, const float* save_invstd,
                                             const float* relu_y, const float* dy, float* dx, float* dweight,
                                             float* dbias) {
  const std::int64_t c = blockIdx.y;
  ChannelCursor<V> k(a.hw, a.c, c, a.n * a.hw, plan.chunk);
  const double2 total = block_sum_partials(partials + c * plan.chunks, plan.chunks);
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    if (dbias) dbias[c] += static_cast<float>(total.x);
    if (dweight) dweight[c] += static_cast<float>(total.y * static_cast<double>(save_invstd[c]));
  }
  // uniform: the launcher then runs one block per channel; then the threads without positions
  if (dx == nullptr || !k.valid()) return;
  const float mean = save_mean[c];
  const double invstd = save_invstd[c], sum_dy = total.x, sum_dy_xhat = total.y * invstd;
  const double m = static_cast<double>(a.n * a.hw);
  const double gain = static_cast<double>(weight[c]) * invstd;
  const double mean_dy = a.training ? sum_dy / m : 0.0, mean_dy_xhat = a.training ? sum_dy_xhat / m : 0.0;
  const float kf = static_cast<float>(gain), slope = static_cast<float>(-gain * invstd * mean_dy_xhat),
              offset = static_cast<float>(-gain * mean_dy);
  for (; k.valid(); k.next()) {
    const Floats<V> g = bn_incoming_gradient<V, Relu>(dy, relu_y, k.offset);
    Floats<V> v = load_floats<V>(x + k.offset);
    KILN_UNROLL
    for (int i = 0; i < V; ++i) v.v[i] = kf * g.v[i] + slope * (v.v[i] - mean) + offset;
    store_floats<V>(dx + k.offset, v);
  }
}

}  // namespace kiln::cuda::kernels
