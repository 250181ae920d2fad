#pragma once
// What the mma.sync convolutions (conv2d_mma.cuh, conv2d_mma_wgrad.cuh) share: the cp.async
// pipeline's k loop (unrolled by its stages), the accumulator zeroing and byte-offset addressing
// of their shared-memory stages. Instructions per HMMA: docs/kernels.md, tests/nvcc/sass_thresholds.json.
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
