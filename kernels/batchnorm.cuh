#pragma once
// BatchNorm2d kernels (NCHW, statistics per channel over N*H*W); kiln::BatchNormArgs.
// The CPU oracle is kiln::cpu::batchnorm_forward / batchnorm_backward.
//
// forward = batchnorm_stats_kernel (one block per channel: training reduces the batch's mean and
//           biased variance in two passes, in double, and updates the running statistics with the
//           unbiased variance; eval reads the running statistics) writing save_mean/save_invstd,
//           then batchnorm_apply_kernel (element-wise, grid-stride).
// backward = batchnorm_backward_kernel (one block per channel: the two sums, then dx).
#include <cstdint>
#include <math.h>

#include "block_reduce.cuh"
#include "kiln/ops/batchnorm.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// grid (C), 1-D block (multiple of 32).
template <class Float>
__global__ void batchnorm_stats_kernel(BatchNormArgs a, const Float* x, Float* running_mean, Float* running_var,
                                       Float* save_mean, Float* save_invstd) {
  const std::int64_t c = blockIdx.x, hw = a.hw, m = a.n * a.hw;
  if (!a.training) {  // uniform over the block: no barrier is skipped by part of it
    if (threadIdx.x == 0) {
      save_mean[c] = running_mean[c];
      save_invstd[c] = static_cast<Float>(1.0 / sqrt(static_cast<double>(running_var[c]) + static_cast<double>(a.eps)));
    }
    return;
  }
  // for q in 0..m: the q-th value of channel c is x[(q / hw * C + c) * hw + q % hw]
  double sum = 0.0;
  for (std::int64_t q = threadIdx.x; q < m; q += blockDim.x) sum += x[(q / hw * a.c + c) * hw + q % hw];
  const double mean = block_all_sum(sum) / static_cast<double>(m);
  double sq = 0.0;  // second pass: no cancellation
  for (std::int64_t q = threadIdx.x; q < m; q += blockDim.x) {
    const double d = x[(q / hw * a.c + c) * hw + q % hw] - mean;
    sq += d * d;
  }
  sq = block_all_sum(sq);
  if (threadIdx.x == 0) {
    const double var = sq / static_cast<double>(m);
    const double unbiased = m > 1 ? sq / static_cast<double>(m - 1) : var;
    const double mom = a.momentum;
    save_mean[c] = static_cast<Float>(mean);
    save_invstd[c] = static_cast<Float>(1.0 / sqrt(var + static_cast<double>(a.eps)));
    running_mean[c] = static_cast<Float>((1.0 - mom) * running_mean[c] + mom * mean);
    running_var[c] = static_cast<Float>((1.0 - mom) * running_var[c] + mom * unbiased);
  }
}

// y = (x - mean) * invstd * weight + bias, element-wise (grid-stride over N*C*HW).
template <class Float>
__global__ void batchnorm_apply_kernel(BatchNormArgs a, const Float* x, const Float* weight, const Float* bias,
                                       const Float* save_mean, const Float* save_invstd, Float* y) {
  const std::int64_t total = a.n * a.c * a.hw;
  KILN_GRID_STRIDE_LOOP(i, total) {
    const std::int64_t c = i / a.hw % a.c;
    const Float scale = weight[c] * save_invstd[c];
    y[i] = (x[i] - save_mean[c]) * scale + bias[c];
  }
}

// grid (C), 1-D block. xhat = (x - mean) * invstd;
// dbias += sum(dy); dweight += sum(dy * xhat); dx (if not null, overwritten) =
//   training: weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat));  eval: weight * invstd * dy.
template <class Float>
__global__ void batchnorm_backward_kernel(BatchNormArgs a, const Float* x, const Float* weight, const Float* save_mean,
                                          const Float* save_invstd, const Float* dy, Float* dx, Float* dweight,
                                          Float* dbias) {
  const std::int64_t c = blockIdx.x, hw = a.hw, m = a.n * a.hw;
  const double mean = save_mean[c], invstd = save_invstd[c];
  double sum_dy = 0.0, sum_dy_xhat = 0.0;
  for (std::int64_t q = threadIdx.x; q < m; q += blockDim.x) {
    const std::int64_t i = (q / hw * a.c + c) * hw + q % hw;
    const double g = dy[i];
    sum_dy += g;
    sum_dy_xhat += g * ((x[i] - mean) * invstd);
  }
  sum_dy = block_all_sum(sum_dy);
  sum_dy_xhat = block_all_sum(sum_dy_xhat);
  if (threadIdx.x == 0) {
    if (dbias) dbias[c] += static_cast<Float>(sum_dy);
    if (dweight) dweight[c] += static_cast<Float>(sum_dy_xhat);
  }
  if (!dx) return;
  const Float k = static_cast<Float>(weight[c] * invstd);
  const Float mean_dy = a.training ? static_cast<Float>(sum_dy / static_cast<double>(m)) : Float(0);
  const Float mean_dy_xhat = a.training ? static_cast<Float>(sum_dy_xhat / static_cast<double>(m)) : Float(0);
  const Float meanf = static_cast<Float>(mean), invstdf = static_cast<Float>(invstd);
  for (std::int64_t q = threadIdx.x; q < m; q += blockDim.x) {
    const std::int64_t i = (q / hw * a.c + c) * hw + q % hw;
    const Float xhat = (x[i] - meanf) * invstdf;
    dx[i] = k * (dy[i] - mean_dy - xhat * mean_dy_xhat);
  }
}

}  // namespace kiln::cuda::kernels
