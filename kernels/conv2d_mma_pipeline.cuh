#pragma once
// What the mma.sync convolutions (conv2d_mma.cuh, conv2d_mma_wgrad.cuh) share: the cp.async
// pipeline's k loop (unrolled by its stages), the accumulator zeroing, the B fragments' ldmatrix loads and byte-offset
// addressing of their shared-memory stages. Instructions per HMMA: docs/kernels.md, tests/nvcc/sass_thresholds.json.
#include <cstdint>

#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels::mma_pipeline {

// p + bytes. The gathers keep their per-thread shared-memory offsets in bytes: with float offsets
// nvcc rebuilds each destination (offset * 4 + stage base) in every step, with byte offsets the
// copies address a register plus an immediate.
__device__ __forceinline__ float* at_byte(float* p, int bytes) {
  return reinterpret_cast<float*>(reinterpret_cast<char*>(p) + bytes);
}

// acc = 0 for a warp's 4 x 8 m16n8k8 accumulators.
__device__ __forceinline__ void zero(float (&acc)[4][8][4]) {
  KILN_UNROLL
  for (int i = 0; i < 4; ++i) {
    KILN_UNROLL
    for (int j = 0; j < 8; ++j) {
      KILN_UNROLL
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;
    }
  }
}

// A warp's eight n8 B fragments of one k step (or k8 half): four ldmatrix.x4 from `lane_row` (this
// lane's row of the first pair), each pair `pair_floats` further on, each giving two fragments.
__device__ __forceinline__ void load_b_fragments(std::uint32_t (&b)[8][2], const float* lane_row, int pair_floats) {
  KILN_UNROLL
  for (int jp = 0; jp < 4; ++jp) {
    std::uint32_t r[4];
    kiln::gpu::mma::ldmatrix_x4(r, lane_row + jp * pair_floats);
    b[2 * jp][0] = r[0];
    b[2 * jp][1] = r[1];
    b[2 * jp + 1][0] = r[2];
    b[2 * jp + 1][1] = r[3];
  }
}

// The k loop of a Stages-deep cp.async pipeline: load(stage) issues step k's copies into a stage
// (and advances the loader to step k+1), compute(stage) runs the MMAs of the step held there.
// Stages-1 steps are in flight before the loop; each step waits for its own copies, one
// __syncthreads makes everyone's visible (and retires the stage read at step-1, refilled now).
// The loop is unrolled by Stages, so every stage index is a compile-time constant: shared-memory
// addresses are a register plus an immediate, with no stage arithmetic in the loop.
template <int Stages, class Load, class Compute>
__device__ __forceinline__ void run(int k_steps, Load&& load, Compute&& compute) {
  KILN_UNROLL
  for (int st = 0; st < Stages - 1; ++st) {
    if (st < k_steps) load(st);
    kiln::gpu::cp_async_commit();
  }
  for (int step = 0; step < k_steps; step += Stages) {
    KILN_UNROLL
    for (int st = 0; st < Stages; ++st) {
      if (step + st >= k_steps) break;
      kiln::gpu::cp_async_wait<Stages - 2>();  // this thread's copies of step + st have landed ...
      __syncthreads();                         // ... and everyone's
      if (step + st + Stages - 1 < k_steps) load((st + Stages - 1) % Stages);
      kiln::gpu::cp_async_commit();
      compute(st);
    }
  }
  kiln::gpu::cp_async_wait<0>();  // no copy may be left pending at exit
}

}  // namespace kiln::cuda::kernels::mma_pipeline
