#pragma once
// Distributed shared memory's read rate, measured. A split-K weight gradient whose splits run as one
// thread-block cluster could add their partial tiles on chip: each block leaves its 64 KiB partial
// tile in its shared memory and, after the cluster barrier, sums a 1/C slice of the tile over the C
// blocks, reading (C - 1) / C of 64 KiB from the others' shared memory (docs/kernels.md, "Known
// limits"). Whether that beats the partial sums' trip through L2 and DRAM depends on how fast one SM
// reads another's shared memory, which NVIDIA does not publish. cluster_dsmem_probe_kernel is that
// reduction alone: kiln_bench_gpu times it at C = 2, 4 and 8 (the same blocks, more of the tile from
// other SMs) and bench/gpu_report.py turns the slope into bytes per clock, beside the L2 rate of the
// split_k_tail rows.
#include <cstddef>
#include <cstdint>

#include "kiln/gpu/gpu.hpp"

namespace kiln::bench {

inline constexpr int dsmem_probe_threads = 128;
// A partial tile: 128 floats (32 float4s) per thread, thread-major float4s as the split-K partials.
inline constexpr int dsmem_probe_float4s = 32;
inline constexpr std::size_t dsmem_probe_shared_bytes = sizeof(float) * 4 * dsmem_probe_float4s * dsmem_probe_threads;
// Bytes a block of a cluster of `cluster` reads from the other blocks' shared memory.
inline constexpr std::int64_t dsmem_probe_remote_bytes(int cluster) {
  return static_cast<std::int64_t>(dsmem_probe_shared_bytes) * (cluster - 1) / cluster;
}

// Block of rank r (cluster of C, C dividing 32) fills its tile with value + r, then sums float4s
// [r * 32 / C, (r + 1) * 32 / C) of every thread over the C blocks in rank order and writes them to
// out[blockIdx.x / C] (its slice of the cluster's tile): each element C * value + C (C - 1) / 2.
__global__ void __launch_bounds__(dsmem_probe_threads) cluster_dsmem_probe_kernel(float value, float* out) {
  namespace cl = kiln::gpu::cluster;
  const int tid = static_cast<int>(threadIdx.x);
  const unsigned c = cl::size(), r = cl::rank();
  float4* tile = kiln::gpu::dynamic_shared<float4>();
  const float mine = value + static_cast<float>(r);
  KILN_UNROLL
  for (int j = 0; j < dsmem_probe_float4s; ++j)
    tile[j * dsmem_probe_threads + tid] = make_float4(mine, mine, mine, mine);
  cl::sync();
  const int per = dsmem_probe_float4s / static_cast<int>(c), first = static_cast<int>(r) * per;
  float4* slice = reinterpret_cast<float4*>(out) +
                  static_cast<std::size_t>(blockIdx.x / c) * dsmem_probe_float4s * dsmem_probe_threads;
  for (int j = first; j < first + per; ++j) {
    float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (unsigned q = 0; q < c; ++q) {
      const float4 v = cl::map_shared(tile, q)[j * dsmem_probe_threads + tid];
      sum.x += v.x;
      sum.y += v.y;
      sum.z += v.z;
      sum.w += v.w;
    }
    slice[j * dsmem_probe_threads + tid] = sum;
  }
  cl::sync();  // no block leaves while another still reads its tile
}

}  // namespace kiln::bench
