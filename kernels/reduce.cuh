#pragma once
// Deterministic two-stage reductions over a 2-D grid (the per-channel sums of BatchNorm and the
// bias gradient, the loss's sum). Stage 1, grid (chunks, C): block (j, c) reduces a fixed chunk of
// channel c's N*HW values of an [N, C, HW] tensor and writes ONE partial (double): for
// sum_partials_kernel at partials[j * C + c] ([chunk][channel]: a warp of stage 2 reads 32
// neighbouring channels' partials of one chunk, coalesced); BatchNorm's own stage 2
// (block_sum_partials, a block per channel) and the bias gradient's (channel_sum_kernel: stage 2 in
// the channel's last block of stage 1, one launch) keep [channel][chunk], so that a block reads its
// channel's row. Stage 2 adds a channel's partials in a fixed order. The cut into chunks depends only on
// the shape (reduce_plan), never on the device, the SM count or the schedule, and every sum has a
// fixed order (each thread's own values in walk order, then block_all_sum's tree): the same bits on
// every run. llm.c and CUB do the same; one block per channel left 100+ SMs idle.
//
//   ReducePlan reduce_plan(m)     host: how m = N*HW positions are cut (chunk a multiple of 4)
//   ChannelCursor<V>              device: one thread's positions in its block's chunk, V at a time,
//                                 walked with adds (no 64-bit division per step)
//   channel_sum_kernel            Σ x per channel added to out, both stages in one launch (the bias
//                                 gradient: the channel's last block adds its partials)
//   flat_sum_partial_kernel       stage 1 of Σ x over a flat array (softmax cross-entropy's mean)
//   sum_partials_kernel           stage 2: out[i] (+)= scale * Σ_j partials[j * outputs + i]
#include <cstdint>

#include "block_reduce.cuh"
#include "vector_access.cuh"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

inline constexpr unsigned reduce_threads = 256;            // threads per block of every stage-1 kernel
inline constexpr std::int64_t reduce_chunk_target = 2048;  // positions per block: 8 floats per thread
inline constexpr std::int64_t reduce_max_chunks = 1024;    // per channel (larger tensors: larger chunks)

struct ReducePlan {
  std::int64_t chunk = 4;  // positions per block, a multiple of 4 (a float4 never straddles two blocks)
  int chunks = 1;          // blocks per channel
};

inline ReducePlan reduce_plan(std::int64_t m) {
  std::int64_t chunks = (m + reduce_chunk_target - 1) / reduce_chunk_target;
  if (chunks < 1) chunks = 1;
  if (chunks > reduce_max_chunks) chunks = reduce_max_chunks;
  std::int64_t chunk = (m + chunks - 1) / chunks;
  chunk = chunk < 4 ? 4 : (chunk + 3) / 4 * 4;
  chunks = m > 0 ? (m + chunk - 1) / chunk : 1;
  return {chunk, static_cast<int>(chunks)};
}

// The positions q = n * HW + p (in [0, m = N*HW)) of channel c that this thread visits: its
// block's chunk [blockIdx.x * chunk, ...), V consecutive positions per step, blockDim.x * V apart.
// The element of q is at offset (n * C + c) * HW + p; stepping adds a precomputed increment and
// wraps p at most once (the stride's whole planes are folded into `step`), so the loop has no
// division: the plain loop is
//   for (q = first + tid * V; q < end; q += blockDim.x * V) use(x[(q / HW * C + c) * HW + q % HW]).
// With V = 4, HW must be a multiple of 4 (a group of 4 then never leaves its plane).
template <int V>
struct ChannelCursor {
  std::int64_t q, end, p, offset;
  std::int64_t hw, stride, dp, step, wrap;

  __device__ ChannelCursor(std::int64_t hw_, std::int64_t channels, std::int64_t c, std::int64_t m, std::int64_t chunk)
      : hw(hw_) {
    const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * chunk;
    stride = static_cast<std::int64_t>(blockDim.x) * V;
    q = first + static_cast<std::int64_t>(threadIdx.x) * V;
    end = first + chunk < m ? first + chunk : m;
    const std::int64_t n = q / hw, dn = stride / hw;  // once per thread, outside every loop
    p = q - n * hw;
    dp = stride - dn * hw;
    offset = (n * channels + c) * hw + p;
    step = dn * channels * hw + dp;
    wrap = (channels - 1) * hw;  // from the end of plane (n, c) to the start of plane (n + 1, c)
  }
  __device__ __forceinline__ bool valid() const { return q < end; }
  __device__ __forceinline__ void next() {
    q += stride;
    p += dp;
    offset += step;
    if (p >= hw) {
      p -= hw;
      offset += wrap;
    }
  }
};

// The sum of a Floats<V> in a fixed order.
template <int V>
__device__ __forceinline__ float lane_sum(const Floats<V>& f) {
  float s = f.v[0];
  KILN_UNROLL
  for (int i = 1; i < V; ++i) s += f.v[i];
  return s;
}

// out[c] += Σ x per channel of an [n, channels, hw] tensor, both stages in one launch; grid
// (plan.chunks, channels), block reduce_threads. Block (j, c) writes the sum of its chunk to
// partials[c * chunks + j] and counts itself in counters[c]; the channel's last block to count
// (whichever it is) adds the channel's partials in a fixed order (thread t: j = t, t + blockDim.x,
// ... in turn, then block_all_sum's tree), so the sum has the same bits whichever block finishes
// last, adds it to out[c] and sets counters[c] back to 0 for the next launch (counters: zero before
// the first). No block waits for another.
template <int V>
__global__ void channel_sum_kernel(std::int64_t n, std::int64_t channels, std::int64_t hw, ReducePlan plan,
                                   const float* x, double* partials, unsigned* counters, float* out) {
  const std::int64_t c = blockIdx.y;
  double s = 0.0;
  for (ChannelCursor<V> k(hw, channels, c, n * hw, plan.chunk); k.valid(); k.next())
    s += lane_sum(load_floats<V>(x + k.offset));
  s = block_all_sum(s);
  double* row = partials + c * plan.chunks;
  if (threadIdx.x == 0) row[blockIdx.x] = s;
  __threadfence();  // the partial is visible device-wide before the block counts itself
  const bool last =
      __syncthreads_or(threadIdx.x == 0 && atomicAdd(counters + c, 1u) == static_cast<unsigned>(plan.chunks - 1)) != 0;
  if (!last) return;
  __threadfence();  // the other blocks' partials are read after their count
  double total = 0.0;
  for (int j = static_cast<int>(threadIdx.x); j < plan.chunks; j += static_cast<int>(blockDim.x))
    total += load_l2(row + j);
  total = block_all_sum(total);
  if (threadIdx.x == 0) {
    out[c] = static_cast<float>(static_cast<double>(out[c]) + total);
    counters[c] = 0;
  }
}

// Stage 1 of Σ x[i] over i < count; grid (plan.chunks), block reduce_threads (V = 4: count % 4 == 0).
template <int V>
__global__ void flat_sum_partial_kernel(std::int64_t count, ReducePlan plan, const float* x, double* partials) {
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * plan.chunk;
  const std::int64_t end = first + plan.chunk < count ? first + plan.chunk : count;
  double s = 0.0;
  for (std::int64_t i = first + static_cast<std::int64_t>(threadIdx.x) * V; i < end;
       i += static_cast<std::int64_t>(blockDim.x) * V)
    s += lane_sum(load_floats<V>(x + i));
  s = block_all_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// Stage 2: out[i] = (accumulate ? out[i] : 0) + scale * Σ_j partials[j * outputs + i] for i < outputs
// (partials [chunk][output]; a flat sum is outputs = 1). Block b (reduce_threads threads) takes the
// columns [32b, 32b + cols), cols <= 32: thread t adds column t % cols over the rows j = t / cols,
// t / cols + rows, ... (rows = blockDim.x / cols), so a warp reads one row's 32 neighbouring
// partials, or several whole rows of a narrower array: 32 consecutive doubles, coalesced (one lane
// per output read 8 bytes per 32-byte sector where a channel had few chunks). Then thread t < cols
// adds its column's row sums in row order: the order depends only on (chunks, outputs).
template <class Float>
__global__ void sum_partials_kernel(const double* partials, int chunks, std::int64_t outputs, double scale,
                                    bool accumulate, Float* out) {
  __shared__ double row_sums[reduce_threads];
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * 32;
  const int cols = outputs - first < 32 ? static_cast<int>(outputs - first) : 32;
  const int rows = static_cast<int>(blockDim.x) / cols, t = static_cast<int>(threadIdx.x);
  const int col = t % cols, row = t / cols;
  double s = 0.0;
  if (row < rows)
    for (int j = row; j < chunks; j += rows) s += partials[static_cast<std::int64_t>(j) * outputs + first + col];
  row_sums[t] = s;
  __syncthreads();
  if (t >= cols) return;
  double total = 0.0;
#if KILN_GPU_REAL
#pragma unroll 1  // a launch-bound kernel: nvcc's 4-fold unrolling only added instructions
#endif
  for (int r = 0; r < rows; ++r) total += row_sums[r * cols + t];
  const std::int64_t i = first + t;
  out[i] = static_cast<Float>((accumulate ? static_cast<double>(out[i]) : 0.0) + scale * total);
}

// Stage 2 inside a kernel that needs a channel's totals before its own work (BatchNorm's apply and
// dx kernels): every thread of the block gets Σ_j partials[j] (.x and .y of a double2 array),
// thread t adding j = t, t + blockDim.x, ... then block_all_sum; the same bits in every block.
// The whole block calls it (barriers; a warp-0-only version made nvcc add a divergent-shuffle
// fallback path that jumps backwards, i.e. a loop around the rest of the kernel).
__device__ __forceinline__ double2 block_sum_partials(const double2* partials, int chunks) {
  double sx = 0.0, sy = 0.0;
  for (int j = static_cast<int>(threadIdx.x); j < chunks; j += static_cast<int>(blockDim.x)) {
    sx += partials[j].x;
    sy += partials[j].y;
  }
  sx = block_all_sum(sx);
  return make_double2(sx, block_all_sum(sy));
}

}  // namespace kiln::cuda::kernels
