#pragma once
// Thread-block cluster kernels run by the emulator's tests (tests/emu/test_emulator_cluster.cpp) and
// on a GPU (tests/gpu/test_gpu_cluster.cpp), and by the checking build's (tests/emucheck/
// test_cluster_checks.cpp): the same source every way. (Namespace kiln_cluster_test is in the
// checking build's instrumentation allowlist.)
#include <cstddef>
#include <vector>

#include "kiln/gpu/gpu.hpp"

namespace kiln_cluster_test {

// Each block writes its rank and block index into shared memory; after the cluster barrier every
// thread reads the next rank's values (ring order) and writes what it found.
__global__ void ring_exchange(unsigned* out) {
  namespace cl = kiln::gpu::cluster;
  unsigned* mine = kiln::gpu::dynamic_shared<unsigned>();
  const unsigned t = threadIdx.x, block = blockIdx.x + gridDim.x * blockIdx.y;
  mine[t] = 1000u * block + t;
  cl::sync();
  const unsigned next = (cl::rank() + 1) % cl::size();
  const unsigned* theirs = cl::map_shared(mine, next);
  out[block * blockDim.x + t] = theirs[t] + 1000000u * cl::rank() + 100000000u * cl::size();
  cl::sync();  // nobody returns while the previous rank may still read its memory
}

// Split-K through distributed shared memory: block r of a cluster of S sums its k-range of each of
// the tile's `cols` columns into shared memory; after the barrier, rank r adds slice r of the tile's
// columns over all S blocks, in rank order, and stores it.
__global__ void cluster_split_sum(const float* in, int k_total, int cols, float* out, bool skip_barrier) {
  namespace cl = kiln::gpu::cluster;
  float* partial = kiln::gpu::dynamic_shared<float>();
  const unsigned s = cl::size(), r = cl::rank();
  const int per = k_total / static_cast<int>(s);
  const float* tile = in + static_cast<std::size_t>(blockIdx.y) * k_total * cols;
  for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) {
    float sum = 0.0f;
    for (int k = static_cast<int>(r) * per; k < static_cast<int>(r + 1) * per; ++k) sum += tile[k * cols + c];
    partial[c] = sum;
  }
  if (!skip_barrier) cl::sync();
  const int slice = cols / static_cast<int>(s);
  for (int c = static_cast<int>(r) * slice + static_cast<int>(threadIdx.x); c < static_cast<int>(r + 1) * slice;
       c += static_cast<int>(blockDim.x)) {
    float sum = 0.0f;
    for (unsigned q = 0; q < s; ++q) sum += cl::map_shared(partial, q)[c];
    out[static_cast<std::size_t>(blockIdx.y) * cols + c] = sum;
  }
  cl::sync();
}

// Rank 1 overwrites its shared memory while rank 0 reads it (a race across the cluster), or after a
// cluster barrier between (`ordered`).
__global__ void overwrite_while_read(float* out, bool ordered) {
  namespace cl = kiln::gpu::cluster;
  float* mine = kiln::gpu::dynamic_shared<float>();
  const unsigned t = threadIdx.x;
  mine[t] = static_cast<float>(cl::rank());
  cl::sync();
  if (cl::rank() == 0) out[t] = cl::map_shared(mine, 1)[t];
  if (ordered) cl::sync();
  if (cl::rank() == 1) mine[t] = 5.0f;
  cl::sync();
}

// What ring_exchange writes for thread t of block (bx, by) of a 4 x 2 grid in clusters of 2 x 2
// (ranks x fastest, as %cluster_ctarank counts them).
inline unsigned ring_expected(unsigned bx, unsigned by, unsigned t) {
  const unsigned rank = bx % 2 + 2 * by, next = (rank + 1) % 4;
  const unsigned next_block = bx / 2 * 2 + next % 2 + 4 * (next / 2);
  return 1000u * next_block + t + 1000000u * rank + 400000000u;
}

// cluster_split_sum's result on the host: each tile's columns over `slices` k ranges, each range
// summed in k order, the ranges added in order.
inline std::vector<float> split_sum_reference(const std::vector<float>& in, int tiles, int k_total, int cols,
                                              int slices) {
  std::vector<float> out(static_cast<std::size_t>(tiles) * cols, 0.0f);
  const int per = k_total / slices;
  for (int t = 0; t < tiles; ++t)
    for (int c = 0; c < cols; ++c) {
      float sum = 0.0f;
      for (int q = 0; q < slices; ++q) {
        float part = 0.0f;
        for (int k = q * per; k < (q + 1) * per; ++k)
          part += in[(static_cast<std::size_t>(t) * k_total + k) * cols + c];
        sum += part;
      }
      out[static_cast<std::size_t>(t) * cols + c] = sum;
    }
  return out;
}

}  // namespace kiln_cluster_test
