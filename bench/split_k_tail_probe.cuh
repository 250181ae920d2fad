#pragma once
// The split-K tail's read rate, measured. tests/emucheck/predict.py and mma_wgrad::plan_model assume
// that a tile's last block reads the other slices' partial tiles from L2 at 64 bytes per clock into
// one SM (NVIDIA publishes no per-SM L2 bandwidth); that figure decides which splits go in one launch
// and how many a forward takes. Each block of split_k_tail_probe_kernel is at once the last of its
// tile: it sets its tile's counter to slices - 1, so mma_pipeline::reduce_split_k (the kernels' own
// code) writes the block's partial tile to slot 0 and reads slots 1 .. slices - 1 from L2, where
// earlier launches left them. kiln_bench_gpu times it at several slice counts (few tiles, so that
// the partials stay in L2); bench/gpu_report.py turns the slope into bytes per clock.
#include <cstdint>

#include "conv2d_mma_pipeline.cuh"
#include "kiln/gpu/gpu.hpp"

namespace kiln::bench {

inline constexpr int tail_probe_threads = 128;
// A tile's floats (128 per thread, reduce_split_k's) and the partial sums of `tiles` x `slices`.
inline constexpr std::int64_t tail_probe_tile_floats = std::int64_t{tail_probe_threads} * 128;
inline std::int64_t tail_probe_floats(int tiles, int slices) { return tail_probe_tile_floats * tiles * slices; }
// The dynamic shared memory reduce_split_k may use as its stash.
inline constexpr std::size_t tail_probe_shared_bytes = sizeof(float) * 32 * tail_probe_threads;

// One block per tile (gridDim.x tiles): acc = `value` everywhere, added to slots 1 .. slices - 1 of
// the tile's partials in slice order; out[tile] gets the sum in reduce_split_k's thread-major float4s.
__global__ void __launch_bounds__(tail_probe_threads)
    split_k_tail_probe_kernel(float* partials, unsigned* counters, int slices, float value, float* out) {
  const int tid = static_cast<int>(threadIdx.x), tile = static_cast<int>(blockIdx.x);
  float acc[4][8][4];
  KILN_UNROLL
  for (int i = 0; i < 4; ++i) {
    KILN_UNROLL
    for (int j = 0; j < 8; ++j) {
      KILN_UNROLL
      for (int e = 0; e < 4; ++e) acc[i][j][e] = value;
    }
  }
  if (tid == 0) counters[tile] = static_cast<unsigned>(slices - 1);  // the other slices have counted
  __syncthreads();
  float* stash = kiln::gpu::dynamic_shared<float>();
  if (!kiln::cuda::kernels::mma_pipeline::reduce_split_k<tail_probe_threads>(acc, partials, counters, tile, slices, tid,
                                                                             stash))
    return;
  float4* o = reinterpret_cast<float4*>(out) + tile * tail_probe_tile_floats / 4 + tid;
  KILN_UNROLL
  for (int i = 0; i < 4; ++i) {
    KILN_UNROLL
    for (int j = 0; j < 8; ++j)
      o[(i * 8 + j) * tail_probe_threads] = make_float4(acc[i][j][0], acc[i][j][1], acc[i][j][2], acc[i][j][3]);
  }
}

}  // namespace kiln::bench
