#pragma once
// Element-wise kernels: ReLU forward/backward, add, channel concat and its adjoint (split).
// V floats per access (V = 4: 16-byte loads and stores; the launcher checks alignment and length).
// CPU oracle: kiln/cpu/elementwise.hpp.
//   relu, add: grid-stride loops over groups of V elements (launch shape from grid_stride()).
//   concat, split: grid (x, C, N): blockIdx.z is the image and blockIdx.y the channel of the
//     output (input) plane, so a block copies contiguous runs with no index division; x strides
//     the plane.
#include <cstdint>

#include "block_reduce.cuh"
#include "vector_access.cuh"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// for (g = global thread; g < n / V; g += all threads) body(g * V): the plain loop over i < n.
template <int V>
__global__ void relu_forward_kernel(const float* x, float* y, std::int64_t n) {
  KILN_GRID_STRIDE_LOOP(g, n / V) {
    Floats<V> v = load_floats<V>(x + g * V);
    KILN_UNROLL
    for (int l = 0; l < V; ++l) v.v[l] = v.v[l] > 0.0f ? v.v[l] : 0.0f;
    store_floats<V>(y + g * V, v);
  }
}

// dx = dy where the output was positive (0 at 0, like PyTorch).
template <int V>
__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, std::int64_t n) {
  KILN_GRID_STRIDE_LOOP(g, n / V) {
    const Floats<V> r = load_floats<V>(y + g * V);
    Floats<V> d = load_floats<V>(dy + g * V);
    KILN_UNROLL
    for (int l = 0; l < V; ++l) d.v[l] = r.v[l] > 0.0f ? d.v[l] : 0.0f;
    store_floats<V>(dx + g * V, d);
  }
}

template <int V>
__global__ void add_kernel(const float* a, const float* b, float* out, std::int64_t n) {
  KILN_GRID_STRIDE_LOOP(g, n / V) {
    Floats<V> s = load_floats<V>(a + g * V);
    const Floats<V> t = load_floats<V>(b + g * V);
    KILN_UNROLL
    for (int l = 0; l < V; ++l) s.v[l] += t.v[l];
    store_floats<V>(out + g * V, s);
  }
}

// Copies one plane of hw floats, this block's share: p = blockIdx.x * blockDim.x * V + threadIdx.x * V,
// gridDim.x * blockDim.x * V apart.
template <int V>
__device__ __forceinline__ void copy_plane(const float* from, float* to, std::int64_t hw) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x * V;
  for (std::int64_t p = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V; p < hw; p += stride)
    store_floats<V>(to + p, load_floats<V>(from + p));
}

// y[n] = [a[n]; b[n]] along channels ([N, Ca+Cb, HW]); grid (x, Ca+Cb, N).
template <int V>
__global__ void concat_channels_kernel(const float* a, std::int64_t ca, const float* b, std::int64_t cb, float* y,
                                       std::int64_t hw) {
  const std::int64_t img = blockIdx.z, ch = blockIdx.y;
  const float* from = ch < ca ? a + (img * ca + ch) * hw : b + (img * cb + ch - ca) * hw;
  copy_plane<V>(from, y + (img * (ca + cb) + ch) * hw, hw);
}

// The adjoint: da, db = the two channel ranges of dy; grid (x, Ca+Cb, N).
template <int V>
__global__ void split_channels_kernel(const float* dy, float* da, std::int64_t ca, float* db, std::int64_t cb,
                                      std::int64_t hw) {
  const std::int64_t img = blockIdx.z, ch = blockIdx.y;
  float* to = ch < ca ? da + (img * ca + ch) * hw : db + (img * cb + ch - ca) * hw;
  copy_plane<V>(dy + (img * (ca + cb) + ch) * hw, to, hw);
}

}  // namespace kiln::cuda::kernels
