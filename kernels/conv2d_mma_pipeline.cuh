#pragma once
// What the mma.sync convolutions (conv2d_mma*.cuh) share: the cp.async pipeline's k loop (unrolled
// by its stages), the accumulator zeroing, the B fragments' ldmatrix loads, byte-offset addressing of
// their shared-memory stages and the two epilogues (the forward's NCHW store, the weight gradient's
// store into dw or the split-K partial sums). Instructions per HMMA: docs/kernels.md,
// tests/nvcc/sass_thresholds.json.
#include <cstdint>
#include <type_traits>
#include <utility>

#include "kiln/gpu/gpu.hpp"
#include "vector_access.cuh"

// A loop nvcc must keep rolled (`#pragma unroll 1`; nothing for g++, whose -Wall rejects the pragma).
#if KILN_GPU_REAL || defined(__clang__)
#define KILN_MMA_ROLLED _Pragma("unroll 1")
#else
#define KILN_MMA_ROLLED
#endif

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

// copy(std::integral_constant<int, j>{}) for j = 0 .. N-1, unrolled: a k step's full set of copies.
template <int N, class Copy>
__device__ __forceinline__ void copy_all(Copy&& copy) {
  [&]<int... J>(std::integer_sequence<int, J...>) { (copy(std::integral_constant<int, J>{}), ...); }
  (std::make_integer_sequence<int, N>{});
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

// The forward's epilogue (conv2d_mma.cuh, conv2d_mma_bf16.cuh): y[img][o][hw] = D + bias[o] (bias may
// be null) for a warp's 64 x 64 tile of 4 x 8 m16n8k16 / m16n8k8 accumulators whose first pixel is
// m_warp and first output channel n_warp. Lane (g, t) holds rows g, g+8 and columns 2t, 2t+1 of each
// 16 x 8 accumulator; lanes with the same t write 8 consecutive pixels of one channel (32-byte segments).
__device__ __forceinline__ void store_nchw(const float (&acc)[4][8][4], float* y, const float* bias, int m_warp,
                                           int n_warp, int pixels, int hw_count, int cout, int lane) {
  const int g = lane / 4, t = lane % 4;
  KILN_UNROLL
  for (int i = 0; i < 4; ++i) {
    KILN_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int p = m_warp + i * 16 + h * 8 + g;
      if (p >= pixels) continue;
      const int img = p / hw_count, hw = p - img * hw_count;
      float* out = y + img * cout * hw_count + hw;
      KILN_UNROLL
      for (int j = 0; j < 8; ++j) {
        KILN_UNROLL
        for (int e = 0; e < 2; ++e) {
          const int o = n_warp + j * 8 + 2 * t + e;
          if (o < cout) out[o * hw_count] = acc[i][j][h * 2 + e] + (bias != nullptr ? bias[o] : 0.0f);
        }
      }
    }
  }
}

// Split-K in one launch, deterministic, without waiting (the forwards' in conv2d_mma.cuh and
// conv2d_mma_bf16.cuh, gridDim.z slices of the k steps; the weight gradients' where their splits are
// few): every slice of a tile writes its accumulators to partials[tile][slice] (thread-major float4s:
// a warp's store is 512 contiguous bytes), makes them visible device-wide and then counts itself in
// counters[tile]; the block that counts last adds the tile's slices in slice order 0, 1, ..., S-1 and
// resets the counter. Its own slice is not read back from L2: each m-tile's 32 values wait in `stash`
// (Threads * 32 floats of shared memory, the k loop's stages, free once every warp is past the barrier
// below; each thread reads back only its own) while acc holds the running sum, so the sum has the same
// bits whichever block finishes last, the last block moves S tiles (its own written, S - 1 read), and
// no register is needed beside the accumulators and one slice's loads. Returns whether this block
// holds the sum (in acc) and must store the tile. counters[tile] is 0 at launch (the forward's weight
// packing zeroes its counters; the weight gradient's are the backend's, left at 0 by every launch).
// No block waits for another, so the grid needs no co-residency.
// reduce_pieces is that for one tile of `pieces` pieces, k ranges of any lengths (the weight
// gradient's stream-K schedule, conv2d_mma_wgrad.cuh, runs several tiles' pieces in a block): this
// block's is piece `own`, the tile's partials start at `tile_partials` (a slot of Threads * 128
// floats per piece), its counter is *counter, the sum runs over pieces 0 (the first k steps) to
// pieces - 1; reduce_split_k below is it for a grid's gridDim.z slices.
// Groups: the accumulators' groups of 8 float4s (4 for the mma.sync tiles' 4 x 8 m16n8 accumulators;
// the wgmma forward's BN / 2 floats per thread, conv2d_wgmma.cuh, are BN / 64 of them).
template <int Threads, int Groups>
__device__ __forceinline__ bool reduce_pieces(float (&acc)[Groups][8][4], float* tile_partials, unsigned* counter,
                                              int own, int pieces, int tid, float* stash) {
  constexpr int tile_float4s = Threads * Groups * 8;  // Groups x 32 floats per thread
  float4* base = reinterpret_cast<float4*>(tile_partials) + tid;
  float4* mine = base + own * tile_float4s;
  KILN_UNROLL
  for (int i = 0; i < Groups; ++i) {
    KILN_UNROLL
    for (int j = 0; j < 8; ++j)
      mine[(i * 8 + j) * Threads] = make_float4(acc[i][j][0], acc[i][j][1], acc[i][j][2], acc[i][j][3]);
  }
  __threadfence();  // this thread's partial is visible device-wide before the block counts itself
  __syncthreads();  // ... every thread's
  const bool last = __syncthreads_or(tid == 0 && atomicAdd(counter, 1u) == static_cast<unsigned>(pieces - 1)) != 0;
  if (!last) return false;
  __threadfence();                // the other pieces' partials are read after their count
  float* kept = stash + 4 * tid;  // float4 j of the thread at kept + 4 * j * Threads (one 16-byte access each)
  // One m-tile's 8 float4s at a time, the pieces in a rolled loop: 32 loaded registers live beside the
  // 128 accumulators (all 32 float4s of a piece at once would spill).
  KILN_UNROLL
  for (int i = 0; i < Groups; ++i) {
    const float4* p = base + i * 8 * Threads;
    if (own != 0) {  // acc[i] starts as piece 0's; its own values wait in the stash
      KILN_UNROLL
      for (int j = 0; j < 8; ++j) {
        store_floats<4>(kept + 4 * j * Threads, Floats<4>{{acc[i][j][0], acc[i][j][1], acc[i][j][2], acc[i][j][3]}});
        const float4 v = load_l2(p + j * Threads);
        acc[i][j][0] = v.x;
        acc[i][j][1] = v.y;
        acc[i][j][2] = v.z;
        acc[i][j][3] = v.w;
      }
    }
    KILN_MMA_ROLLED
    for (int piece = 1; piece < pieces; ++piece) {
      p += tile_float4s;
      KILN_UNROLL
      for (int j = 0; j < 8; ++j) {
        float4 v;
        if (piece == own) {
          const Floats<4> k = load_floats<4>(kept + 4 * j * Threads);
          v = make_float4(k.v[0], k.v[1], k.v[2], k.v[3]);
        } else {
          v = load_l2(p + j * Threads);
        }
        acc[i][j][0] += v.x;
        acc[i][j][1] += v.y;
        acc[i][j][2] += v.z;
        acc[i][j][3] += v.w;
      }
    }
  }
  if (tid == 0) *counter = 0;  // ready for the next launch on this workspace
  return true;
}
// Up to Entries convolutions' work in one launch, each entry on its own range of blocks starting
// at its `first_block` (entries in block order, the first at block 0): the forward's packings of a
// network (conv2d_mma.cuh, PackBatch) and its weight gradients' split-K reductions
// (conv2d_mma_wgrad.cuh, mma_wgrad::ReduceBatch). Passed by value (a kernel parameter, at most
// about 2.4 KB): nothing to upload, and a CUDA graph captures it as it is.
template <int Entries, class Entry>
struct Batch {
  Entry entries[Entries];
  int count;
};
// Block `block`'s entry of a batch: the last whose first_block <= block; `local` and `blocks` its
// place in that entry's block range. Picked with constant-index loads (a dynamic index into a
// kernel parameter would copy it to local memory).
template <int Entries, class Entry>
__device__ __forceinline__ Entry batch_entry(const Batch<Entries, Entry>& batch, int block, int& local, int& blocks) {
  int at = 0, end = static_cast<int>(gridDim.x);
  KILN_UNROLL
  for (int e = 1; e < Entries; ++e) {
    if (e >= batch.count) break;
    if (batch.entries[e].first_block <= block)
      at = e;
    else if (batch.entries[e].first_block < end)
      end = batch.entries[e].first_block;
  }
  Entry p = batch.entries[0];
  KILN_UNROLL
  for (int e = 1; e < Entries; ++e)
    if (e == at) p = batch.entries[e];
  local = block - p.first_block;
  blocks = end - p.first_block;
  return p;
}

// The grid's split-K: tile blockIdx.(x, y)'s gridDim.z slices, this block's slice blockIdx.z.
template <int Threads, int Groups>
__device__ __forceinline__ bool reduce_split_k(float (&acc)[Groups][8][4], float* partials, unsigned* counters,
                                               int tile, int slices, int tid, float* stash) {
  return reduce_pieces<Threads, Groups>(acc, partials + tile * slices * Threads * Groups * 32, counters + tile,
                                        static_cast<int>(blockIdx.z), slices, tid, stash);
}

// The weight gradients' split-K before their store (conv2d_mma_wgrad.cuh, conv2d_mma_bf16_wgrad.cuh):
// whether this block stores its tile, and `split` whether as its split's partial sum (gridDim.z > 1)
// or into dw. With `counters` (mma_wgrad::Splits::one_launch; four-warp tiles only, the one-warp ones
// keep no such code) the tile's last split adds every split's (reduce_split_k: acc becomes the sum)
// and stores into dw; the others store nothing.
template <int Threads>
__device__ __forceinline__ bool wgrad_stores(float (&acc)[4][8][4], float* partials, unsigned* counters, int tid,
                                             float* stash, bool& split) {
  split = gridDim.z > 1;
  if constexpr (Threads >= 128) {
    if (split && counters != nullptr) {
      const int tile = static_cast<int>(blockIdx.y * gridDim.x + blockIdx.x);
      if (!reduce_split_k<Threads>(acc, partials, counters, tile, static_cast<int>(gridDim.z), tid, stash))
        return false;
      split = false;
    }
  }
  return true;
}

// The weight gradient's epilogue (conv2d_mma_wgrad.cuh, conv2d_mma_bf16_wgrad.cuh): D[m][n] of filter
// tap `tap` for a warp's 64 x 64 tile whose first output channel (row) is m_warp and first input
// channel (column) n_warp. `split`: it is this split's partial sum (split blockIdx.z), out =
// [splits][KK][Cout][Cin]; else it is added to out = dw[Cout][Cin][KK] (one split, or the sum of all
// of them: reduce_split_k). Lane (g, t) holds rows g, g+8 and columns 2t, 2t+1 of each 16 x 8
// accumulator; rows past Cout and columns past Cin are not stored, nor (Shifted: a tile moved back
// to end at Cin) the columns before n_own.
template <int KK, bool Shifted = false>
__device__ __forceinline__ void store_wgrad(const float (&acc)[4][8][4], float* out, bool split, int tap, int m_warp,
                                            int n_warp, [[maybe_unused]] int n_own, int cout, int cin, int lane) {
  const int g = lane / 4, t4 = lane % 4;
  float* partial = out + (static_cast<int>(blockIdx.z) * KK + tap) * cout * cin;  // [Cout][Cin] of this split, tap
  KILN_UNROLL
  for (int i = 0; i < 4; ++i) {
    KILN_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int m = m_warp + i * 16 + h * 8 + g;
      if (m >= cout) continue;
      KILN_UNROLL
      for (int j = 0; j < 8; ++j) {
        KILN_UNROLL
        for (int e = 0; e < 2; ++e) {
          const int n = n_warp + j * 8 + 2 * t4 + e;
          if (n >= cin || (Shifted && n < n_own)) continue;
          if (split)
            partial[m * cin + n] = acc[i][j][h * 2 + e];
          else
            out[(m * cin + n) * KK + tap] += acc[i][j][h * 2 + e];
        }
      }
    }
  }
}

}  // namespace kiln::cuda::kernels::mma_pipeline
