#pragma once
// Adam on a convolution's weights, fused with both TF32 packings of them that the next training
// step reads (conv2d_mma.cuh: the forward's wp[o][t][c] and the input gradient's wp[c][t][o], in
// the convolution's workspace, both plans' split-K counters zeroed). Without it, the step's forward
// packs every weight again (conv2d_mma_pack_batch_kernel: w read, both layouts written), a launch and
// a read of every weight that the optimizer, which holds each new weight in a register, does not
// need. Backend<Cuda>::adam_step_multi runs it for the convolutions the backend keeps packed
// (kiln::ConvPacking); the others take adam_multi_tensor_kernel (optim.cuh), with the same
// arithmetic (adam_update: the same bits).
//
// Shapes (supports): K = 1 or 3, Cin and Cout multiples of 16: the packed channel order is then
// the natural one in both layouts (mma_conv::packed_channel), with no padding.
// Tiles: a block takes rows = 8 input channels of chunk = 32 output channels (16 at the end), all
// taps. It updates w, m and v there (runs of 8·K² floats per output channel: 288 or 32 bytes, whole
// sectors), keeps the new weights in shared memory, then writes the input gradient's layout (runs of
// 32 output channels: 128 bytes) and the forward's (runs of 8 input channels: 32 bytes). Every
// global access covers whole 32-byte sectors.
// The update guard (kiln::cuda::update_guard) skips the update, not the packing: the layouts then
// hold the weights as they are.
#include <cstdint>

#include "conv2d_mma.cuh"
#include "kiln/gpu/gpu.hpp"
#include "optim.cuh"

namespace kiln::cuda::kernels {

namespace adam_pack {

inline constexpr int rows = 8;    // input channels per tile
inline constexpr int chunk = 32;  // output channels per tile
inline constexpr unsigned threads = 256;
inline constexpr int batch_max = 24;  // convolutions per launch (the kernel parameter: about 2.1 KB)

__host__ __device__ inline constexpr bool supports(std::int64_t c_in, std::int64_t c_out, std::int64_t k) {
  return (k == 1 || k == 3) && c_in >= 16 && c_in % 16 == 0 && c_out >= 16 && c_out % 16 == 0;
}
inline bool supports(const ConvShape& s) { return supports(s.c_in, s.c_out, s.k); }
inline std::int64_t tiles(const ConvShape& s) { return s.c_in / rows * ((s.c_out + chunk - 1) / chunk); }

// One convolution: its weights, gradient and moments ([Cout][Cin][K][K]), the two packed layouts and
// their plans' counters (as conv2d_mma_pack_weights_both_kernel's arguments).
struct Entry {
  float* w;
  const float* g;
  float* m;
  float* v;
  float* wp;
  float* wp_dgrad;
  unsigned* counters;
  unsigned* dgrad_counters;
  int c_in, c_out, k, counter_count, dgrad_counter_count;
  int first_block;  // where this entry's blocks begin (mma_pipeline::batch_entry)
};
template <int Entries>
using Batch = mma_pipeline::Batch<Entries, Entry>;

template <int K>
__device__ __forceinline__ void update_and_pack(const AdamStepArgs& a, bool update, const Entry& e, int tile) {
  constexpr int KK = K * K, run = rows * KK, pitch = run + 1;  // odd pitch: a column read spreads over the banks
  __shared__ float sh[chunk * pitch];
  const int cin = e.c_in, cout = e.c_out, chunks = (cout + chunk - 1) / chunk;
  const int rt = tile / chunks, o0 = (tile - rt * chunks) * chunk, c0 = rt * rows;
  const int width = cout - o0 < chunk ? cout - o0 : chunk;  // 32, or 16 at the end
  const int shift = width == chunk ? 5 : 4;
  const int tid = static_cast<int>(threadIdx.x), stride = static_cast<int>(blockDim.x);
  for (int j = tid; j < width * run; j += stride) {  // w[o0 + ol][c0 .. c0 + 8)[all taps]
    const int ol = j / run, r = j - ol * run, i = ((o0 + ol) * cin + c0) * KK + r;
    sh[ol * pitch + r] = update ? adam_update(a, e.w, e.g, e.m, e.v, i) : e.w[i];
  }
  __syncthreads();
  // The input gradient's: wp_dgrad[c][t][o] = tf32(w[o][c][KK-1-t]), rows of `width` output channels.
  for (int j = tid; j < rows * KK * width; j += stride) {
    const int q = j & (width - 1), ct = j >> shift, r = ct / KK, t = ct - r * KK;
    e.wp_dgrad[((c0 + r) * KK + t) * cout + o0 + q] = mma_conv::tf32_packed(sh[q * pitch + r * KK + (KK - 1 - t)]);
  }
  // The forward's: wp[o][t][c] = tf32(w[o][c][t]), runs of the tile's 8 input channels.
  for (int j = tid; j < width * KK * rows; j += stride) {
    const int cl = j & (rows - 1), ot = j / rows, ol = ot / KK, t = ot - ol * KK;
    e.wp[((o0 + ol) * KK + t) * cin + c0 + cl] = mma_conv::tf32_packed(sh[ol * pitch + cl * KK + t]);
  }
}

}  // namespace adam_pack

// Up to Entries convolutions in one launch, one block per tile (adam_pack::tiles), blocks in entry
// order; threads adam_pack::threads. `args` and `skip` as adam_multi_tensor_kernel's.
template <int Entries>
__global__ void __launch_bounds__(adam_pack::threads)
    adam_conv_pack_kernel(const AdamStepArgs* args, const unsigned* skip, adam_pack::Batch<Entries> batch) {
  __shared__ float scalars[adam_scalar_count];
  __shared__ unsigned skipped;
  if (threadIdx.x == 0) {
    skipped = skip != nullptr ? *skip : 0u;
    if (skipped == 0u) adam_scalars_store(args, scalars);
  }
  int local = 0, blocks = 0;
  const adam_pack::Entry e = mma_pipeline::batch_entry(batch, static_cast<int>(blockIdx.x), local, blocks);
  mma_conv::zero_counters(e.counters, e.counter_count, local);
  mma_conv::zero_counters(e.dgrad_counters, e.dgrad_counter_count, local);
  __syncthreads();
  const bool update = skipped == 0u;
  const AdamStepArgs a = update ? adam_scalars_load(scalars) : AdamStepArgs{};
  if (e.k == 3)
    adam_pack::update_and_pack<3>(a, update, e, local);
  else
    adam_pack::update_and_pack<1>(a, update, e, local);
}

}  // namespace kiln::cuda::kernels
