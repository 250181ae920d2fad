#pragma once
// MaxPool2d kernels (kernel = stride = size, no padding; kiln::PoolArgs). CPU oracle:
// kiln::cpu::maxpool2d_forward / maxpool2d_backward.
#include <cstdint>

#include "block_reduce.cuh"
#include "kiln/ops/pooling.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// One thread per output element. argmax = index of the maximum inside its input plane (ih * W + iw).
// Ties: the first maximum in row-major window order; a NaN wins over numbers (PyTorch's rule).
template <class Float>
__global__ void maxpool2d_forward_kernel(PoolArgs a, const Float* x, Float* y, std::int32_t* argmax) {
  const std::int64_t oh = a.h / a.size, ow = a.w / a.size;
  KILN_GRID_STRIDE_LOOP(o, a.n * a.c * oh * ow) {
    const std::int64_t plane = o / (oh * ow), i = o % (oh * ow) / ow, j = o % ow;
    const Float* xp = x + plane * a.h * a.w;
    std::int64_t best_index = i * a.size * a.w + j * a.size;
    Float best = xp[best_index];
    for (std::int64_t u = 0; u < a.size; ++u)
      for (std::int64_t v = 0; v < a.size; ++v) {
        const std::int64_t idx = (i * a.size + u) * a.w + j * a.size + v;
        const Float val = xp[idx];
        if (val > best || val != val) {  // val != val: NaN
          best = val;
          best_index = idx;
        }
      }
    y[o] = best;
    argmax[o] = static_cast<std::int32_t>(best_index);
  }
}

// Gather form of the adjoint (deterministic, no atomics): one thread per INPUT element;
// dx = dy of its window if the window's argmax is this element, else 0 (overwritten).
template <class Float>
__global__ void maxpool2d_backward_kernel(PoolArgs a, const std::int32_t* argmax, const Float* dy, Float* dx) {
  const std::int64_t oh = a.h / a.size, ow = a.w / a.size;
  KILN_GRID_STRIDE_LOOP(e, a.n * a.c * a.h * a.w) {
    const std::int64_t plane = e / (a.h * a.w), idx = e % (a.h * a.w);
    const std::int64_t o = plane * oh * ow + idx / a.w / a.size * ow + idx % a.w / a.size;
    dx[e] = argmax[o] == idx ? dy[o] : Float(0);
  }
}

}  // namespace kiln::cuda::kernels
