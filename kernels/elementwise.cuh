#pragma once
// Element-wise kernels: ReLU forward/backward, add, channel concat and its adjoint (split).
// Grid-stride loops over the elements (launch shape from grid_stride()). CPU oracle: kiln/cpu/elementwise.hpp.
#include <cstdint>

#include "block_reduce.cuh"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

template <class Float>
__global__ void relu_forward_kernel(const Float* x, Float* y, std::int64_t n) {
  KILN_GRID_STRIDE_LOOP(i, n) y[i] = x[i] > Float(0) ? x[i] : Float(0);
}

// dx = dy where the output was positive (0 at 0, like PyTorch).
template <class Float>
__global__ void relu_backward_kernel(const Float* y, const Float* dy, Float* dx, std::int64_t n) {
  KILN_GRID_STRIDE_LOOP(i, n) dx[i] = y[i] > Float(0) ? dy[i] : Float(0);
}

template <class Float>
__global__ void add_kernel(const Float* a, const Float* b, Float* out, std::int64_t n) {
  KILN_GRID_STRIDE_LOOP(i, n) out[i] = a[i] + b[i];
}

// y[n] = [a[n]; b[n]] along channels; one thread per element of y ([N, Ca+Cb, HW]).
template <class Float>
__global__ void concat_channels_kernel(const Float* a, std::int64_t ca, const Float* b, std::int64_t cb, Float* y,
                                       std::int64_t n, std::int64_t hw) {
  const std::int64_t c = ca + cb;
  KILN_GRID_STRIDE_LOOP(i, n * c * hw) {
    const std::int64_t img = i / (c * hw), ch = i / hw % c, p = i % hw;
    y[i] = ch < ca ? a[(img * ca + ch) * hw + p] : b[(img * cb + ch - ca) * hw + p];
  }
}

// The adjoint: da, db = the two channel ranges of dy; one thread per element of dy.
template <class Float>
__global__ void split_channels_kernel(const Float* dy, Float* da, std::int64_t ca, Float* db, std::int64_t cb,
                                      std::int64_t n, std::int64_t hw) {
  const std::int64_t c = ca + cb;
  KILN_GRID_STRIDE_LOOP(i, n * c * hw) {
    const std::int64_t img = i / (c * hw), ch = i / hw % c, p = i % hw;
    if (ch < ca)
      da[(img * ca + ch) * hw + p] = dy[i];
    else
      db[(img * cb + ch - ca) * hw + p] = dy[i];
  }
}

}  // namespace kiln::cuda::kernels
