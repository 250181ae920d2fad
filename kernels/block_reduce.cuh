#pragma once
// Reductions shared by kiln's kernels (device helpers only, no __global__ here).
//   warp_all_sum(v): the sum of v over the 32 lanes, returned to every lane (butterfly with
//     __shfl_xor_sync; IEEE addition is commutative, so every lane ends with the same bits).
//   block_all_sum(v): the sum over a 1-D block whose size is a multiple of 32 (<= 1024), returned
//     to every thread. Every thread of the block must call it (it contains __syncthreads).
// Both are deterministic: the order of additions depends only on the block size.
#include <cstdint>

#include "kiln/gpu/gpu.hpp"

// for (i = global thread id; i < n; i += all threads)
#define KILN_GRID_STRIDE_LOOP(i, n)                                                                \
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)

namespace kiln::cuda::kernels {

template <class T>
__device__ __forceinline__ T warp_all_sum(T v) {
  // for (offset = 16; offset; offset /= 2) v += v of lane (lane ^ offset)
  KILN_UNROLL
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <class T>
__device__ T block_all_sum(T v) {
  __shared__ T partial[32];
  const unsigned lane = threadIdx.x % 32u, warp = threadIdx.x / 32u, warps = blockDim.x / 32u;
  v = warp_all_sum(v);
  __syncthreads();  // a previous call may still be reading `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  // Every warp adds the per-warp sums in the same order: all threads get the same total.
  T total = lane < warps ? partial[lane] : T(0);
  return warp_all_sum(total);
}

// A 1-D grid-stride loop's launch shape: `threads` per block and enough blocks for n elements,
// capped (the loop covers the rest).
struct GridStride {
  unsigned blocks, threads;
};
inline GridStride grid_stride(long long n, unsigned threads = 256, unsigned max_blocks = 4096) {
  long long blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > max_blocks) blocks = max_blocks;
  return {static_cast<unsigned>(blocks), threads};
}

}  // namespace kiln::cuda::kernels
