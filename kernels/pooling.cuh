#pragma once
// MaxPool2d kernels (kernel = stride = size, no padding; kiln::PoolArgs). CPU oracle:
// kiln::cpu::maxpool2d_forward / maxpool2d_backward.
// Grid (x: columns / 32, y: rows / 8, z: planes) of 32x8 blocks (spatial_grid.cuh): a thread's
// row and column come from its block and thread indices, no division per element; lanes of a warp
// take consecutive columns. S = 2 (the U-Net's pooling; the launcher asks for an even width and
// 8-byte aligned tensors) reads and writes each window row as one float2, S = 0 takes the size at
// run time.
#include <cstdint>

#include "block_reduce.cuh"
#include "spatial_grid.cuh"
#include "vector_access.cuh"
#include "kiln/ops/pooling.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// One thread per output (i, j). argmax = index of the maximum inside its input plane (ih * W + iw).
// Ties: the first maximum in row-major window order; a NaN wins over numbers (PyTorch's rule).
template <int S>
__global__ void maxpool2d_forward_kernel(PoolArgs a, const float* x, float* y, std::int32_t* argmax) {
  const std::int64_t s = S ? S : a.size, oh = a.h / s, ow = a.w / s, planes = a.n * a.c;
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= oh || j >= ow) return;
  for (std::int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const float* xp = x + plane * a.h * a.w;
    std::int64_t best_index = i * s * a.w + j * s;
    float best = 0.0f;  // the window's first value, below
    // Visits the window in row-major order; the first value starts as the maximum (a NaN there
    // stays: val != val keeps it, as in the loop below).
    const auto consider = [&](float val, std::int64_t idx) {
      if (val > best || val != val) {  // val != val: NaN
        best = val;
        best_index = idx;
      }
    };
    if constexpr (S == 2) {  // two float2 rows, no separate load of the first value
      const std::int64_t row0 = best_index, row1 = row0 + a.w;
      const Floats<2> r0 = load_floats<2>(xp + row0), r1 = load_floats<2>(xp + row1);
      best = r0.v[0];
      consider(r0.v[1], row0 + 1);
      consider(r1.v[0], row1);
      consider(r1.v[1], row1 + 1);
    } else {
      best = xp[best_index];
      for (std::int64_t u = 0; u < s; ++u)
        for (std::int64_t v = 0; v < s; ++v) consider(xp[(i * s + u) * a.w + j * s + v], (i * s + u) * a.w + j * s + v);
    }
    const std::int64_t o = plane * oh * ow + i * ow + j;
    y[o] = best;
    argmax[o] = static_cast<std::int32_t>(best_index);
  }
}

// The adjoint, deterministic and without atomics: one thread per s x s cell (i, j) of the input
// (ceil(H/s) x ceil(W/s) cells, so the rows and columns no window covers are zeroed too) writes
// its cell: dy of the window at its argmax, 0 elsewhere (overwritten).
template <int S>
__global__ void maxpool2d_backward_kernel(PoolArgs a, const std::int32_t* argmax, const float* dy, float* dx) {
  const std::int64_t s = S ? S : a.size, oh = a.h / s, ow = a.w / s, planes = a.n * a.c;
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i * s >= a.h || j * s >= a.w) return;
  const bool window = i < oh && j < ow;
  for (std::int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const std::int64_t o = plane * oh * ow + i * ow + j;
    const std::int64_t at = window ? argmax[o] : -1;
    const float g = window ? dy[o] : 0.0f;
    float* dp = dx + plane * a.h * a.w;
    for (std::int64_t u = 0; u < s && i * s + u < a.h; ++u) {
      const std::int64_t row = (i * s + u) * a.w + j * s;
      if constexpr (S == 2) {  // an even width: the cell's two columns exist
        Floats<2> r;
        r.v[0] = at == row ? g : 0.0f;
        r.v[1] = at == row + 1 ? g : 0.0f;
        store_floats<2>(dp + row, r);
      } else {
        for (std::int64_t v = 0; v < s && j * s + v < a.w; ++v) dp[row + v] = at == row + v ? g : 0.0f;
      }
    }
  }
}

}  // namespace kiln::cuda::kernels
