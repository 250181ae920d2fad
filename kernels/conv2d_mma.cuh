#pragma once
// Conv2d forward (stride 1, zero padding K/2, NCHW, K = 1 or 3) as a CUTLASS-style TF32 implicit
// GEMM on mma.sync m16n8k8 (kiln/gpu/mma.hpp). Backend<Cuda>'s MathMode::tf32 forward wherever
// supports() holds, and its input gradient: dx is the stride-1 convolution of dy with the weights
// transposed in (Cin, Cout) and rotated 180 degrees in (u, v), so the same kernel computes it from
// weights packed by conv2d_mma_pack_weights_dgrad_kernel (backward_data below). The weight
// gradient is conv2d_mma_wgrad.cuh's. Tested on the emulator (tests/emu/test_conv_mma.cpp, the tf32
// rows of the kernel table), a row per U-Net conv in kiln_bench_gpu (bench/gpu_tf32_cases.hpp).
//
// The GEMM, with the pixels as its long M dimension (the U-Net's channel counts are 32-256):
//   D[M = N*H*W pixels][N = Cout] = A[M][Kg] * B[Kg][Cout],  Kg = K*K * cin_pad,
//   k = t * cin_pad + c (filter tap t = u*K + v outer, channel c inner, cin_pad = Cin rounded up to 16),
//   A(p, k) = x[img][ch(c)][py+u-P][px+v-P] (zero outside the image),
//   B(k, o) = wp[o][t][c] = tf32(w[o][ch(c)][u][v]): the weights packed once per call by
//             conv2d_mma_pack_weights_kernel (a training forward: conv2d_mma_pack_weights_both_kernel,
//             which also packs the input gradient's, kept for the backward; tap-major, rounded to
//             TF32 to nearest), so every
//             16-wide k step is one tap and 16 channels, and every B row segment is 16-byte aligned.
// Channel tails (ch = mma_conv::packed_channel): with Cin >= 16 and not a multiple of 16, the last
// step of each tap reads channels [Cin - 16, Cin) instead of running past Cin, and the weights of
// the channels the step before already covered are packed as zeros: every copy is in bounds and
// multiplies a real activation, so the only predicate left is the tap's (the overlap adds x * 0).
// With Cin < 16 (NarrowCin: one step per tap) the copies run in a rolled loop over groups of 4
// channels, ceil(Cin / 4) per step (the slots of the channels past the last group are zeroed once).
//
// Tiling: a block computes 128 pixels x BN output channels (BN = 128: 4 warps 2 x 2; BN = 64:
// 2 warps 2 x 1), or 256 x 64 (the tall tile, conv2d_mma_forward_tall_kernel: 4 warps 4 x 1); each
// warp a 64 x 64 tile as 4 x 8 m16n8k8 accumulators (128 floats per thread).
// k steps of 16 go through a 3-stage cp.async pipeline: one __syncthreads per step, two steps in
// flight while the tensor cores work on the third (mma_pipeline::run, conv2d_mma_pipeline.cuh: the
// k loop unrolled by the 3 stages, so stage offsets are immediates).
//   B stage [BN][16] (k contiguous): 16-byte cp.async, fragments by ldmatrix.x4 (for 32-bit data
//     the plain, non-.trans ldmatrix hands lane l the float (l/4, l%4) of an 8x4 block, which is
//     exactly the m16n8k8 B layout for n-major storage). 16-byte rows swizzled: chunk ^= (n>>1)&3,
//     so the 8 rows of each ldmatrix phase hit 8 different 16-byte bank groups.
//   A stage (16 k x 128 pixels): 4-byte cp.async with zero fill. NCHW puts consecutive pixels,
//     not channels, next to each other, and a tap shifts them by v-P: the 16-byte copies CUTLASS
//     makes along NHWC channels would be misaligned here, so A is gathered 4 bytes at a time (a
//     running source pointer, destinations as immediates off eight per-stage bases, tap validity
//     once per step). The stage is stored in fragment order (a_index): the 16-byte chunk of lane
//     (g, t), m-tile i, k half kh holds its {a0, a1, a2, a3}, so a fragment is one LDS.128, with a
//     slot swizzle that keeps the reads conflict-free; the columns of odd m-tiles copy their k
//     halves of 4 in swapped order (copy_channel), which makes the writes conflict-free. (ldmatrix.x4
//     would also be one instruction per fragment, from a pixel-major [128][16] tile, but a warp's
//     32 four-byte copies of one k into that tile would be 4-way bank-conflicted even swizzled;
//     4-byte copies can put each element anywhere, so the fragment order costs nothing.)
// Split-K: where the tiles fill few SMs (8x8 and 4x4 images at batch 16), gridDim.z slices of the
// k steps, each tile's partials added in slice order by its last block in the same launch
// (mma_conv::splits, mma_pipeline::reduce_split_k): deterministic, no block waits for another.
// Operands: B is TF32 rounded to nearest (by the packing kernel); A is given to the tensor core as
// fp32 bits, which it truncates to TF32 (the low 13 mantissa bits are ignored), as CUTLASS's TF32
// kernels on fp32 data do: rounding in the main loop would cost two instructions per element.
// Offsets are 32-bit, precomputed outside the k loop (supports() checks N*C*H*W < 2^31). SASS
// figures (instructions per HMMA, registers, occupancy): docs/kernels.md.
// BF16 (MathMode::bf16) runs conv2d_mma_bf16.cuh's kernels on NHWC BF16 copies; the fp32-staged
// BF16 variants that lived here are retired (docs/kernels.md "BF16").
#include <cstddef>
#include <cstdint>

#include "conv2d_mma_pipeline.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

namespace mma_conv {

inline constexpr int bm = 128;       // pixels per block tile
inline constexpr int tall_bm = 256;  // ... of the tall 256 x 64 tile (tall(): 4 warps stacked in M)
inline constexpr int bk = 16;        // k per pipeline stage: 16 channels of one tap
inline constexpr int stages = 3;
inline constexpr int warp_tile = 64;  // warp tile: 64 pixels x 64 output channels

template <int BN, int BM = bm>
struct Tile {
  static_assert((BM == bm && (BN == 64 || BN == 128)) || (BM == tall_bm && BN == 64),
                "block tiles are 128 x 64, 128 x 128 or 256 x 64");
  static constexpr int warps_m = BM / warp_tile, warps_n = BN / warp_tile;
  static constexpr int threads = 32 * warps_m * warps_n;
  static constexpr int b_row_floats = bk;  // one B row (16 k) of a stage, in floats
  static constexpr int a_floats = bk * BM, b_floats = BN * b_row_floats, stage_floats = a_floats + b_floats;
  static constexpr std::size_t shared_bytes = sizeof(float) * stages * stage_floats;
  static constexpr int pixels_per_thread = BM / threads;  // A columns a thread gathers
  // A stage is a_index's layout of 128 columns, twice for the tall tile (columns 128-255 at
  // a_half_floats): a thread's columns tid and tid + threads lie a_column_floats apart.
  static constexpr int a_half_floats = bk * bm;
  static constexpr int a_column_floats = BM == tall_bm ? a_half_floats : 4 * 128;
  static constexpr int b_chunks_per_row = b_row_floats / 4;
  static constexpr int b_chunks_per_thread = b_floats / 4 / threads;  // 16-byte B copies per thread
  static_assert(BM % threads == 0 && (b_floats / 4) % threads == 0, "whole copies per thread");
  // The tall tile's 60 KiB ask for more than the default (allow_tall_shared).
  static_assert(shared_bytes <= 48 * 1024 || BM == tall_bm, "fits the default dynamic shared memory limit");
  static_assert(shared_bytes >= sizeof(float) * 32 * threads, "room for mma_pipeline::reduce_split_k's stash");
};

__host__ __device__ inline constexpr int channels_padded(std::int64_t c_in) {
  return static_cast<int>((c_in + 15) / 16 * 16);
}
inline std::int64_t packed_weight_floats(const ConvShape& s) { return s.c_out * s.k * s.k * channels_padded(s.c_in); }

// The input channel at packed position c (0 <= c < cin_pad) of every tap, -1 for none (weight 0).
// Cin >= 16: the steps before a tap's last hold channels c; the last step (positions from
// cin_pad - 16) reads channels [Cin - 16, Cin), so position c holds channel Cin - cin_pad + c, and
// counts it only where the step before did not (channel >= cin_pad - 16). Cin < 16 (one step per
// tap, NarrowCin): channel c below Cin. Where Cin is a multiple of 16 this is channel c everywhere.
__host__ __device__ inline constexpr int packed_channel(int c, int cin) {
  const int last = channels_padded(cin) - bk;  // first position of a tap's last step
  if (cin < bk) return c < cin ? c : -1;
  if (c < last) return c;
  const int ch = cin - bk + (c - last);
  return ch >= last ? ch : -1;
}
// The first channel a k step starting at position c0 of its tap reads: c0, or Cin - 16 for the last
// step of a tap whose channel count is not a multiple of 16 (Cin >= 16).
__host__ __device__ inline constexpr int step_channel(int c0, int cin) { return c0 < cin - bk ? c0 : cin - bk; }

// Where A(k, m) lives in a stage: laid out for the fragment loads. With k = kh*8 + k4*4 + t and the
// tile's pixel column m = wm*64 + i*16 + h*8 + g, the 16-byte chunk (kh, wm, i, g, t) holds exactly
// lane (g, t)'s fragment {a0, a1, a2, a3} of m-tile i (element k4*2 + h), so one LDS.128 loads it.
// The chunk's slot among its 32 is XORed with (g >> 1) + 4 * (i & 1): a quarter-warp's 8 reads stay
// 8 consecutive-slot permutations (no conflict). A warp's 32 cp.async writes of one copy (32
// consecutive pixels: 8 g, 2 h, both i parities, in 16 chunks) put two chunks in each bank quartet,
// of opposite i parity; were they of the same k, both would write the quartet's k4 half (2-way).
// So copy j of column m carries channel copy_channel(j, m): k halves swapped where i is odd, and the
// two chunks of a quartet take different halves: 32 banks, one wavefront per copy (a k step's shared
// traffic 1.5 wavefronts per HMMA instead of 1.75: docs/kernels.md, "Memory traffic").
__device__ __forceinline__ int a_index(int k, int m) {
  const int kh = k >> 3, k4 = (k >> 2) & 1, t = k & 3;
  const int wm = m >> 6, i = (m >> 4) & 3, h = (m >> 3) & 1, g = m & 7;
  return ((kh * 2 + wm) * 4 + i) * 128 + ((((g << 2) | t) ^ ((g >> 1) + 4 * (i & 1))) << 2) + k4 * 2 + h;
}
__device__ __forceinline__ int copy_channel(int j, int m) { return j ^ (((m >> 4) & 1) << 2); }
__device__ __forceinline__ int b_index(int n, int chunk) { return n * bk + ((chunk ^ ((n >> 1) & 3)) << 2); }

// The weight packings' tiles, staged through shared memory so that both the reads of w[o][c][t]
// and the writes of the packed layout are contiguous (a gather along K² coalesced at 21-44 %).
// A tile is 32 packed positions p0 + q of the packed channel dimension (of n real channels; the
// last chunk may be 16), and the rows that own them: the forward packing wp[o][t][c], one o; the
// input gradient's wp[c][t][o], pack_rows(K) consecutive c (long enough runs of w to coalesce).
// The real channels a chunk reads lie in [lo, hi): packed_channel(c, n) is c, or in a tail's last
// step in [n - 16, n). Call from every thread of the block (barriers); blockDim.x threads.
template <int K>
__host__ __device__ inline constexpr int pack_rows() {
  return K == 1 ? 64 : 8;  // runs of 256 / 288 bytes; stage <= 14 KB (8 blocks per SM)
}
inline constexpr int pack_chunk = 32;
template <int K, bool Dgrad>
struct PackStage {
  static constexpr int KK = K * K;
  static constexpr int max_real = pack_chunk + bk;  // [lo, hi): at most 32 + 16 channels
  static constexpr int floats = Dgrad ? max_real * ((pack_rows<K>() * KK) | 1) : max_real * KK;
};
// Copies w[g] for g in [begin, begin + len) to row_base[g - begin] for rows r < rows (begin_r =
// begin + r * stride, row_base_r = sh + r * sh_stride), each row's loop starting at a 32-byte
// boundary so that a warp's requests cover whole sectors.
__device__ __forceinline__ void stage_rows(const float* w, int begin, int stride, int len, int rows, float* sh,
                                           int sh_stride) {
  // A row from its aligned start, padded to whole sectors: every 32-lane request starts on a sector.
  const int span = (len + 14) & ~7;
  for (int j = static_cast<int>(threadIdx.x); j < rows * span; j += static_cast<int>(blockDim.x)) {
    const int r = j / span, first = begin + r * stride, g = (first & ~7) + (j - r * span);
    if (g >= first && g < first + len) sh[r * sh_stride + (g - first)] = w[g];
  }
}
// Fills the packed weights tile by tile (block `block` of `blocks`, striding over the tiles).
// Convert(float) gives the packed value; Natural: channel c at position c (BF16), else
// packed_channel's tail order (TF32).
template <int K, bool Dgrad, bool Natural, class Out, class Convert>
__device__ __forceinline__ void pack_staged(const ConvShape& s, const float* w, Out* wp, Convert convert, int block,
                                            int blocks) {
  using Stage = PackStage<K, Dgrad>;
  constexpr int KK = K * K, rows_per_tile = Dgrad ? pack_rows<K>() : 1;
  __shared__ float sh[Stage::floats];
  const int cin = static_cast<int>(s.c_in), cout = static_cast<int>(s.c_out);
  const int n = Dgrad ? cout : cin, rows = Dgrad ? cin : cout, n_pad = channels_padded(n);
  const int chunks = (n_pad + pack_chunk - 1) / pack_chunk, row_tiles = (rows + rows_per_tile - 1) / rows_per_tile;
  for (int tile = block; tile < chunks * row_tiles; tile += blocks) {
    const int rt = tile / chunks, p0 = (tile - rt * chunks) * pack_chunk;
    const int width = n_pad - p0 < pack_chunk ? n_pad - p0 : pack_chunk;  // 32, or 16 at the end
    const int r0 = rt * rows_per_tile, nrows = rows - r0 < rows_per_tile ? rows - r0 : rows_per_tile;
    const int tail_first = n > bk ? n - bk : 0, lo = tail_first < p0 ? tail_first : p0;
    const int hi = n < p0 + width ? n : p0 + width;
    // Stage w: forward, w[o = r0][lo..hi)[t], contiguous; dgrad, w[oo][r0..r0+nrows)[t] for oo in [lo, hi).
    // (dgrad with all of Cin in the tile: the rows are adjacent in w, one run; else odd-padded rows)
    const bool one_run = !Dgrad || nrows == cin;
    const int sh_stride = !Dgrad ? 0 : (one_run ? nrows * KK : (nrows * KK) | 1);
    if constexpr (Dgrad)
      stage_rows(w, (lo * cin + r0) * KK, cin * KK, one_run ? (hi - lo) * nrows * KK : nrows * KK,
                 one_run ? 1 : hi - lo, sh, sh_stride);
    else
      stage_rows(w, (r0 * cin + lo) * KK, 0, (hi - lo) * KK, 1, sh, 0);
    __syncthreads();
    const int shift = width == pack_chunk ? 5 : 4, outputs = nrows * KK * width;
    for (int j = static_cast<int>(threadIdx.x); j < outputs; j += static_cast<int>(blockDim.x)) {
      const int q = j & (width - 1), rt_t = j >> shift, r = rt_t / KK, t = rt_t - r * KK;  // rt_t = r*KK + t
      const int c = Natural ? (p0 + q < n ? p0 + q : -1) : packed_channel(p0 + q, n);
      float v = 0.0f;
      if (c >= 0) v = Dgrad ? sh[(c - lo) * sh_stride + r * KK + (KK - 1 - t)] : sh[(c - lo) * KK + t];
      wp[((r0 + r) * KK + t) * n_pad + p0 + q] = convert(v);
    }
    __syncthreads();  // before the next tile overwrites sh
  }
}
}  // namespace mma_conv

// The TF32 packings as block `block` of `blocks` (the kernels below run one or both).
// Both also zero the forward kernel's split-K counters (`counters`, `counter_count` of them:
// mma_conv::counters; null and 0 without split-K) from their first block: the workspace may hold
// other passes' data there.
namespace mma_conv {
__device__ __forceinline__ void zero_counters(unsigned* counters, int counter_count, int block) {
  if (block == 0)
    for (int i = static_cast<int>(threadIdx.x); i < counter_count; i += static_cast<int>(blockDim.x)) counters[i] = 0;
}
__device__ __forceinline__ float tf32_packed(float v) { return __uint_as_float(kiln::gpu::mma::float_to_tf32(v)); }
// wp[o][t][c] = tf32(w[o][ch][t]) with ch = packed_channel(c, Cin), 0 where ch = -1. K = 3: tiles
// staged through shared memory (pack_staged); K = 1 (w[o][c] to wp[o][c], contiguous already): a
// plain strided copy.
template <int K>
__device__ __forceinline__ void pack_forward_tf32(const ConvShape& s, const float* w, float* wp, int block,
                                                  int blocks) {
  if constexpr (K == 1) {
    const int cin = static_cast<int>(s.c_in), cin_pad = channels_padded(s.c_in);
    const int count = static_cast<int>(s.c_out) * cin_pad;
    for (int i = block * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x); i < count;
         i += blocks * static_cast<int>(blockDim.x)) {
      const int o = i / cin_pad, ch = packed_channel(i - o * cin_pad, cin);
      wp[i] = ch >= 0 ? tf32_packed(w[o * cin + ch]) : 0.0f;
    }
  } else {
    pack_staged<K, false, false>(
        s, w, wp, [](float v) { return tf32_packed(v); }, block, blocks);
  }
}
// The input gradient's weights, packed for the forward kernel run on the transposed shape
// (transposed(s): Cin and Cout swapped): wp[c][t][o] = tf32(w[oo][c][KK-1-t]) with oo =
// packed_channel(o, Cout) (the forward's channel-tail order for dy's Cout channels), 0 where oo = -1.
// With u' = K-1-u, dy[py+P-u] = dy[py+u'-P]: a forward tap. Tiles staged through shared memory.
template <int K>
__device__ __forceinline__ void pack_dgrad_tf32(const ConvShape& s, const float* w, float* wp, int block, int blocks) {
  pack_staged<K, true, false>(
      s, w, wp, [](float v) { return tf32_packed(v); }, block, blocks);
}
}  // namespace mma_conv

template <int K>
__global__ void conv2d_mma_pack_weights_kernel(ConvShape s, const float* w, float* wp, unsigned* counters,
                                               int counter_count) {
  const int block = static_cast<int>(blockIdx.x), blocks = static_cast<int>(gridDim.x);
  mma_conv::zero_counters(counters, counter_count, block);
  mma_conv::pack_forward_tf32<K>(s, w, wp, block, blocks);
}

template <int K>
__global__ void conv2d_mma_pack_weights_dgrad_kernel(ConvShape s, const float* w, float* wp, unsigned* counters,
                                                     int counter_count) {
  const int block = static_cast<int>(blockIdx.x), blocks = static_cast<int>(gridDim.x);
  mma_conv::zero_counters(counters, counter_count, block);
  mma_conv::pack_dgrad_tf32<K>(s, w, wp, block, blocks);
}

namespace mma_conv {
// One convolution's training packings: both layouts and both counter sets (the arguments of
// conv2d_mma_pack_weights_both_kernel below), blocks [0, forward_blocks) of its `blocks` for the
// forward's layout.
struct PackBoth {
  ConvShape s;
  const float* w;
  float* wp;
  unsigned* counters;
  float* wp_dgrad;
  unsigned* dgrad_counters;
  int counter_count, dgrad_counter_count, forward_blocks;
  int first_block;  // in a batch (conv2d_mma_pack_batch_kernel): where this entry's blocks begin
};
template <int K>
__device__ __forceinline__ void pack_both(const PackBoth& p, int block, int blocks) {
  if (block < p.forward_blocks) {
    zero_counters(p.counters, p.counter_count, block);
    pack_forward_tf32<K>(p.s, p.w, p.wp, block, p.forward_blocks);
  } else {
    zero_counters(p.dgrad_counters, p.dgrad_counter_count, block - p.forward_blocks);
    pack_dgrad_tf32<K>(p.s, p.w, p.wp_dgrad, block - p.forward_blocks, blocks - p.forward_blocks);
  }
}
// Up to Entries convolutions' training packings in one launch (a network's forward packs every
// convolution's weights at its start: Backend<Cuda>::conv2d_pack_forwards, pack_batch_max per
// launch): a batch (mma_pipeline::Batch) of PackBoth (TF32) or mma_bf16::PackBoth
// (conv2d_mma_bf16.cuh) entries.
inline constexpr int pack_batch_max = 24;
template <int Entries, class Entry = PackBoth>
using PackBatch = mma_pipeline::Batch<Entries, Entry>;
using mma_pipeline::batch_entry;
}  // namespace mma_conv

// Both packings in one launch (a training forward: the input gradient's packing is kept in the
// workspace for the backward, tf32_forward::dgrad_offset): blocks [0, forward_blocks) pack the forward's
// layout into wp and zero its counters, the rest the input gradient's into wp_dgrad and zero its
// counters. Each part is the kernel of that layout above on its own block range; the branch is
// uniform per block.
template <int K>
__global__ void conv2d_mma_pack_weights_both_kernel(ConvShape s, const float* w, float* wp, unsigned* counters,
                                                    int counter_count, float* wp_dgrad, unsigned* dgrad_counters,
                                                    int dgrad_counter_count, int forward_blocks) {
  const mma_conv::PackBoth p{
      s, w, wp, counters, wp_dgrad, dgrad_counters, counter_count, dgrad_counter_count, forward_blocks, 0};
  mma_conv::pack_both<K>(p, static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x));
}

// The batch: block b packs for the last entry whose first_block <= b, as block b - first_block of
// that entry's range (mma_conv::batch_entry).
template <int Entries>
__global__ void conv2d_mma_pack_batch_kernel(mma_conv::PackBatch<Entries> batch) {
  int local = 0, blocks = 0;
  const mma_conv::PackBoth p = mma_conv::batch_entry(batch, static_cast<int>(blockIdx.x), local, blocks);
  if (p.s.k == 3)
    mma_conv::pack_both<3>(p, local, blocks);
  else
    mma_conv::pack_both<1>(p, local, blocks);
}

// y = conv(x, w) + b from the packed weights. grid (ceil(N*H*W / 128), ceil(Cout / BN), S),
// block Tile<BN>::threads, dynamic shared memory Tile<BN>::shared_bytes. S > 1 splits the k steps
// into S slices (mma_conv::splits), reduced in the launch by the tile's last slice in slice order
// (mma_pipeline::reduce_split_k: `partials` S * 128 * BN floats per tile, `counters` one per tile,
// zero at launch); S = 1 ignores both. NarrowCin: Cin < 16, one
// k step per tap holding Cin channels, copied in a rolled loop over groups of 4 channels (channels
// past Cin in the last group zero-filled; the slots past it zeroed once); else Cin >= 16 and every
// step copies 16 channels unrolled (the last step of each tap [Cin - 16, Cin)).
namespace mma_conv {
// The forward kernels' body on BM x BN block tiles (conv2d_mma_forward_kernel: 128 x BN;
// conv2d_mma_forward_tall_kernel: 256 x 64, not NarrowCin).
template <int K, int BN, int BM, bool NarrowCin>
__device__ __forceinline__ void run_forward(ConvShape s, const float* x, const float* wp, const float* bias, float* y,
                                            float* partials, unsigned* counters) {
  namespace mma = kiln::gpu::mma;
  using T = Tile<BN, BM>;
  static_assert(!NarrowCin || BM == bm, "the tall tile takes Cin >= 16 only");
  constexpr int KK = K * K, P = K / 2, PPT = T::pixels_per_thread;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w), HW = H * W;
  const int cin = static_cast<int>(s.c_in), cout = static_cast<int>(s.c_out);
  const int pixels = static_cast<int>(s.n) * HW, cin_pad = mma_conv::channels_padded(s.c_in);
  // Split-K (gridDim.z slices, mma_conv::splits): slice z runs k steps [k_begin, k_end) of the
  // KK * cin_pad / 16, at least `stages` of them.
  const int steps_per_tap = cin_pad / bk, k_total = KK * steps_per_tap, slices = static_cast<int>(gridDim.z);
  const int k_begin = static_cast<int>(blockIdx.z) * k_total / slices;
  const int k_steps = (static_cast<int>(blockIdx.z) + 1) * k_total / slices - k_begin;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int wm = warp % T::warps_m, wn = warp / T::warps_m;
  const int m0 = static_cast<int>(blockIdx.x) * BM, n0 = static_cast<int>(blockIdx.y) * BN;
  float* shared = kiln::gpu::dynamic_shared<float>();

  // ---- per-thread copy state, computed once ----
  // A: pixel columns tid + i * threads; 32-bit offset of x[img][c][py][px] (c: the step's first
  // copy's channel, swap4; NarrowCin: 0) and the position. Copy j of a step carries channel
  // copy_channel(j, tid) (the same for all the thread's columns, which differ in wm only): the
  // source steps by H*W, by (1 - 2 * swap4) * H*W from j = 3 to 4 and 11 to 12, by
  // (1 + 2 * swap4) * H*W from 7 to 8.
  // a_dst[j % 8]: where copy j of column tid lands, less a_index's j / 8 part, in bytes (a stage's
  // copies then address shared memory as a register plus an immediate); column tid + i * threads
  // (128 x 64: i = 1 is warp row wm + 1; 256 x 64: wm + 2, the stage's second half) lands
  // a_pixel_floats * i further on.
  static_assert(PPT == 1 || (PPT == 2 && T::threads % mma_conv::warp_tile == 0),
                "a thread's columns differ in wm only");
  constexpr int a_pixel_floats = T::a_column_floats;
  const int swap4 = mma_conv::copy_channel(0, tid);  // 4 in odd m-tiles, else 0
  const int a_step_down = HW - 2 * swap4 * HW, a_step_up = HW + 2 * swap4 * HW;
  int a_offset[PPT], a_py[PPT], a_px[PPT], a_dst[8];
  KILN_UNROLL
  for (int kk = 0; kk < 8; ++kk) a_dst[kk] = a_index(mma_conv::copy_channel(kk, tid), tid) * 4;
  KILN_UNROLL
  for (int i = 0; i < PPT; ++i) {
    const int p = m0 + tid + i * T::threads;
    const int img = p / HW, hw = p - img * HW;
    a_py[i] = p < pixels ? hw / W : -(1 << 20);  // a pixel past the end is outside every tap
    a_px[i] = hw % W;
    a_offset[i] = img * cin * HW + hw + (NarrowCin ? 0 : swap4 * HW);
  }
  if constexpr (NarrowCin) {  // the slots past Cin's last group of 4 are never copied: zero them once
    KILN_UNROLL
    for (int st = 0; st < mma_conv::stages; ++st)
      for (int q = tid; q < T::a_floats; q += T::threads) shared[st * T::stage_floats + q] = 0.0f;
    __syncthreads();  // before any thread's copies land in them
  }
  // B: 16-byte chunk q = tid + i * threads of the [BN][16] stage: row n = q / 4, chunk q % 4.
  constexpr int CPR = T::b_chunks_per_row;
  int b_offset[T::b_chunks_per_thread];
  bool b_valid[T::b_chunks_per_thread];
  KILN_UNROLL
  for (int i = 0; i < T::b_chunks_per_thread; ++i) {
    const int q = tid + i * T::threads, n = q / CPR;
    b_valid[i] = n0 + n < cout;
    b_offset[i] = b_valid[i] ? (n0 + n) * KK * cin_pad + (q % CPR) * 4 : 0;
  }
  // The k step being loaded: tap (u, v), first packed channel position c0 (advanced once per step).
  int load_step = k_begin, c0 = 0, u = 0, v = 0;
  {
    const int tap = k_begin / steps_per_tap;
    c0 = (k_begin - tap * steps_per_tap) * bk;
    u = tap / K;
    v = tap - u * K;
  }

  auto load_stage = [&](int stage) {
    float* as = shared + stage * T::stage_floats;
    float* bs = as + T::a_floats;
    // The step's channels: [c0, c0 + 16), the last step of a tap [Cin - 16, Cin) (NarrowCin: from 0).
    const int tap_offset = (u - P) * W + (v - P) + (NarrowCin ? 0 : mma_conv::step_channel(c0, cin) * HW);
    bool tap_ok[PPT];
    const float* src[PPT];
    KILN_UNROLL
    for (int i = 0; i < PPT; ++i) {
      const int iy = a_py[i] + u - P, ix = a_px[i] + v - P;
      tap_ok[i] =
          static_cast<unsigned>(iy) < static_cast<unsigned>(H) && static_cast<unsigned>(ix) < static_cast<unsigned>(W);
      // Where !tap_ok the address may lie outside x, but a zero-fill copy does not read it (as
      // CUTLASS's zfill iterators).
      src[i] = x + (a_offset[i] + tap_offset);
    }
    // Copy j of column i lands at a_index(copy_channel(j, m), m) = a_dst[j % 8] + (j / 8) * 1024 + i * a_pixel_floats.
    if constexpr (NarrowCin) {
      // Groups of 4 copies j4 .. j4 + 3 (channels (j4 ^ swap4) + tt), up to Cin rounded up to 8: in
      // odd m-tiles the group past Cin's last one brings channels 0-3 (8-11); in even m-tiles it is
      // zero fill within the same copy instructions (a warp holds both parities).
      // The k4 half's offset (a_dst[4 + t] - a_dst[t]): +8 bytes, or -8 in odd m-tiles.
      const int k4_bytes = a_dst[4] - a_dst[0], groups_end = (cin + 7) & ~7;
      KILN_MMA_ROLLED
      for (int j4 = 0; j4 < groups_end; j4 += 4) {
        const int c4 = j4 ^ swap4, group_bytes = (j4 / 8) * 1024 * 4 + (j4 / 4) % 2 * k4_bytes;
        KILN_UNROLL
        for (int i = 0; i < PPT; ++i) {
          const float* from = src[i] + c4 * HW;
          KILN_UNROLL
          for (int tt = 0; tt < 4; ++tt) {
            kiln::gpu::cp_async<4>(mma_pipeline::at_byte(as, a_dst[tt] + group_bytes) + i * a_pixel_floats, from,
                                   tap_ok[i] && c4 + tt < cin);
            from += HW;
          }
        }
      }
    } else {
      mma_pipeline::copy_all<bk>([&](auto jc) {
        constexpr int j = decltype(jc)::value;
        KILN_UNROLL
        for (int i = 0; i < PPT; ++i) {
          kiln::gpu::cp_async<4>(mma_pipeline::at_byte(as, a_dst[j % 8]) + (j / 8) * 1024 + i * a_pixel_floats, src[i],
                                 tap_ok[i]);
          src[i] += j % 8 == 3 ? a_step_down : j % 8 == 7 ? a_step_up : HW;
        }
      });
    }
    KILN_UNROLL
    for (int i = 0; i < T::b_chunks_per_thread; ++i) {
      const int q = tid + i * T::threads;
      kiln::gpu::cp_async<16>(&bs[b_index(q / CPR, q % CPR)], wp + b_offset[i] + load_step * T::b_row_floats,
                              b_valid[i]);
    }
    ++load_step;
    c0 += bk;
    if (c0 >= cin_pad) {  // next tap
      c0 = 0;
      if (++v == K) {
        v = 0;
        ++u;
      }
    }
  };

  // ---- per-lane fragment offsets inside a stage (ldmatrix / LDS addresses), computed once ----
  const int g = lane / 4, t = lane % 4;
  // A: lane (g, t)'s fragment of m-tile i and k half kh is the chunk at a_index(kh*8 + t, wm*64 + i*16 + g);
  // its slot swizzle depends on i only through i & 1.
  // (The tall tile: warps 2 and 3 read the stage's second half.)
  const int wm_half = BM == tall_bm ? wm / 2 : 0, wm_in = BM == tall_bm ? wm % 2 : wm;
  int a_lane[2];
  KILN_UNROLL
  for (int ip = 0; ip < 2; ++ip)
    a_lane[ip] =
        mma_conv::a_index(t, wm_in * mma_conv::warp_tile + ip * 16 + g) - ip * 128 + wm_half * T::a_half_floats;
  // B: ldmatrix.x4 lane l gives row n = wn*64 + (l/16)*8 + l%8 of matrix l/8: chunk kk/4 + (l/8)%2.
  int b_lane[2];
  {
    const int mat = lane / 8, n = wn * mma_conv::warp_tile + (mat / 2) * 8 + lane % 8;
    KILN_UNROLL
    for (int kh = 0; kh < 2; ++kh) b_lane[kh] = b_index(n, kh * 2 + mat % 2);
  }

  float acc[4][8][4];
  mma_pipeline::zero(acc);
  mma_pipeline::run<mma_conv::stages>(k_steps, load_stage, [&](int stage) {
    const float* as = shared + stage * T::stage_floats;
    const float* bs = as + T::a_floats;
    KILN_UNROLL
    for (int kh = 0; kh < 2; ++kh) {  // two k8 halves of the step
      std::uint32_t a[4][4], b[8][2];
      KILN_UNROLL
      for (int i = 0; i < 4; ++i) {  // {a0, a1, a2, a3} of m-tile i: one LDS.128
        const float4 v = *reinterpret_cast<const float4*>(as + kh * 1024 + i * 128 + a_lane[i & 1]);
        a[i][0] = __float_as_uint(v.x);
        a[i][1] = __float_as_uint(v.y);
        a[i][2] = __float_as_uint(v.z);
        a[i][3] = __float_as_uint(v.w);
      }
      mma_pipeline::load_b_fragments(b, bs + b_lane[kh], 16 * bk);
      KILN_UNROLL
      for (int i = 0; i < 4; ++i) {
        KILN_UNROLL
        for (int j = 0; j < 8; ++j) mma::mma_tf32_m16n8k8(acc[i][j], a[i], b[j], acc[i][j]);
      }
    }
  });

  if (slices > 1) {  // leaves the block's acc the sum of every slice's, or returns (not the tile's last slice)
    const int tile = static_cast<int>(blockIdx.y * gridDim.x + blockIdx.x);
    if (!mma_pipeline::reduce_split_k<T::threads>(acc, partials, counters, tile, slices, tid, shared)) return;
  }
  mma_pipeline::store_nchw(acc, y, bias, m0 + wm * mma_conv::warp_tile, n0 + wn * mma_conv::warp_tile, pixels, HW, cout,
                           lane);
}

}  // namespace mma_conv

template <int K, int BN, bool NarrowCin>
__global__ void __launch_bounds__(mma_conv::Tile<BN>::threads, 2)
    conv2d_mma_forward_kernel(ConvShape s, const float* x, const float* wp, const float* bias, float* y,
                              float* partials, unsigned* counters) {
  mma_conv::run_forward<K, BN, mma_conv::bm, NarrowCin>(s, x, wp, bias, y, partials, counters);
}
// The same on 256 x 64 tiles (mma_conv::tall): 4 warps stacked in M share each B stage, so a k step
// moves 1.625 shared wavefronts per HMMA instead of the 128 x 64 tile's 1.75. Cin >= 16; no split-K
// (the plan takes it only where 128 x 64 tiles run unsplit). Dynamic shared memory
// Tile<64, tall_bm>::shared_bytes (60 KiB: allow_tall_shared).
template <int K>
__global__ void __launch_bounds__(mma_conv::Tile<64, mma_conv::tall_bm>::threads, 2)
    conv2d_mma_forward_tall_kernel(ConvShape s, const float* x, const float* wp, const float* bias, float* y,
                                   float* partials, unsigned* counters) {
  mma_conv::run_forward<K, 64, mma_conv::tall_bm, false>(s, x, wp, bias, y, partials, counters);
}

namespace mma_conv {

// Whether the kernels take this shape: K = 1 or 3, 32-bit offsets enough.
inline bool supports(const ConvShape& s) {
  const std::int64_t limit = std::int64_t{1} << 31;
  return (s.k == 1 || s.k == 3) && s.n * s.c_in * s.h * s.w < limit && s.n * s.c_out * s.h * s.w < limit &&
         packed_weight_floats(s) < limit;
}

// Whether Cout is wider than the 128 x 64 tile (the BF16 kernels' tile width: 128 x 128 then).
inline bool wide_cout(const ConvShape& s) { return s.c_out > 64; }
inline constexpr int fill_blocks = 132, max_splits = 32;
// Block tile width for a shape: 128 x 128 where Cout > 64 and those tiles give more than a quarter
// of an H100's 132 SMs a block; else 128 x 64: less padding waste where Cout <= 64, and on the deep
// levels (8 x 8 and 16 x 16 images at batch 16) twice the tiles of half the bytes, still split
// (splits below) so that the tile's last block moves S partial tiles of 32 KiB instead of 64 KiB
// alone. (At 34-66 wide tiles, 128 x 64 ones would fill half the SMs unsplit with 2 warps each.)
inline int block_n(const ConvShape& s) {
  const std::int64_t wide_tiles = (s.n * s.h * s.w + bm - 1) / bm * ((s.c_out + 127) / 128);
  return wide_cout(s) && 4 * wide_tiles > fill_blocks ? 128 : 64;
}
// Whether a shape takes the NarrowCin kernels: fewer input channels than one k step.
inline bool narrow(const ConvShape& s) { return s.c_in < bk; }
// The tall 256 x 64 tile (conv2d_mma_forward_tall_kernel) instead of 128 x 64 where those run
// unsplit (more than half of the 132 SMs get a tile) and the busiest SM's work shrinks: per k step
// the tall tile moves 1.625 shared wavefronts per HMMA against 1.75 (its four warps share a B
// stage), a factor 13/14, and an SM runs ceil(tall tiles / 132) of them (two 128-row units each)
// against ceil(tiles / 132) units. Cin >= 16 (no NarrowCin variant).
inline bool tall(const ConvShape& s) {
  if (block_n(s) != 64 || narrow(s)) return false;
  const std::int64_t m = s.n * s.h * s.w, n_tiles = (s.c_out + 63) / 64;
  const std::int64_t units = (m + bm - 1) / bm * n_tiles, tall_tiles = (m + tall_bm - 1) / tall_bm * n_tiles;
  if (2 * units <= fill_blocks) return false;  // split there (splits_for)
  const std::int64_t wave = (units + fill_blocks - 1) / fill_blocks,
                     tall_wave = (tall_tiles + fill_blocks - 1) / fill_blocks;
  return 2 * tall_wave * 13 < wave * 14;
}
// The plan's block tile height: 256 for the tall tile, else 128.
inline int block_m(const ConvShape& s) { return tall(s) ? tall_bm : bm; }

// Split-K where the tiles alone fill few SMs (the deep levels: 8 x 8 and 4 x 4 images at batch 16
// make 16-32 tiles of 128 x 64), into enough slices for 4 warps per SM: an SM has 4 processing
// blocks, each a warp scheduler with its own tensor cores, and a warp stays on one, so fewer warps
// leave tensor cores idle. S = fill_warps (528 on an H100 / H200 SXM) over the tiles' warps (128 x
// 128: 4, 128 x 64: 2), rounded down (rounding up would give some schedulers two slices), and at
// most floor(sqrt(k steps / 2)): a block's main loop shrinks as k / S but the tile's last block
// reads S partial tiles alone, and k / S * a + S * b is least at S = sqrt(k * a / b), a / b ~ 1/2
// for a shared-memory-bound k step of a tile (1.8x its math term) against reading the tile from L2
// at 64 bytes per clock. At least `stages` k steps per slice, at most max_splits; 1 where the tiles
// give half the SMs a block or more (level 1's 128: the partial tiles and the tail would cost more
// than the idle schedulers gain, by tests/emucheck/predict.py's model).
inline constexpr int fill_warps = 4 * fill_blocks;
// The sizes below for block tiles rows x bn (rows 128, or tall_bm with bn 64), the ones
// block_n(fs) and block_m(fs) pick unless a caller that launches one variant itself (the tests'
// kernel table) names them.
inline std::int64_t tiles(const ConvShape& fs, int bn, int rows = bm) {
  return (fs.n * fs.h * fs.w + rows - 1) / rows * ((fs.c_out + bn - 1) / bn);
}
inline std::int64_t tiles(const ConvShape& fs) { return tiles(fs, block_n(fs), block_m(fs)); }
inline int k_steps(const ConvShape& fs) { return static_cast<int>(fs.k * fs.k * (channels_padded(fs.c_in) / bk)); }
// `count` slices of k steps capped by the tail (floor(sqrt(k / tail_divisor)): the tile's last block
// adds the slices alone), by `min_steps` k steps per slice and by max_splits; at least 1. (The
// forwards' split rules: splits_for below, wgmma_conv::splits.)
inline int capped_splits(std::int64_t count, int k, int tail_divisor, int min_steps) {
  int by_tail = 1;
  while (tail_divisor * (by_tail + 1) * (by_tail + 1) <= k) ++by_tail;
  for (const int cap : {by_tail, k / min_steps, max_splits}) count = cap < count ? cap : count;
  return count < 1 ? 1 : static_cast<int>(count);
}
// The rule for block tiles 128 x bn (splits_for(fs, 128) on a shape block_n sends to 128 x 64 is
// the plan before 2026-12-06: 132 / tiles, the same for 4-warp tiles); splits() is the plan's.
// tail_divisor: the tail bound is floor(sqrt(k steps / tail_divisor)), b / a above: 2 for this
// kernel's k step, 4 for the BF16 forward's (mma_bf16::splits: half the main-loop time per step).
// split_half_idle: also split one wave of 2-warp tiles (67-132 tiles of 128 x 64), which leaves half
// of each busy SM's schedulers idle, where the slices keep 32 k steps or more: 2 slices put two
// blocks, 4 warps, on those SMs (by predict.py, down.2.conv1's input gradient at 128² crops 10.1 ->
// 8.9 us, up.2.conv1's forward at 64² 10.3 -> 9.2 us; with fewer k steps the partial tiles cost
// more than the schedulers gain: down.1.conv1's forward at 64², 18 k steps, 2.6 -> 5.0 us).
inline int splits_for(const ConvShape& fs, int bn, int tail_divisor = 2, bool split_half_idle = true) {
  const std::int64_t count_tiles = tiles(fs, bn);
  const std::int64_t warps = count_tiles * ((bn == 128 ? Tile<128>::threads : Tile<64>::threads) / 32);
  const bool half_idle = split_half_idle && bn == 64 && count_tiles <= fill_blocks && k_steps(fs) >= 64;
  if (warps == 0 || (2 * count_tiles > fill_blocks && !half_idle)) return 1;
  return capped_splits(fill_warps / warps, k_steps(fs), tail_divisor, stages);
}
inline int splits(const ConvShape& fs) { return splits_for(fs, block_n(fs)); }
// The forward's workspace (fs: the shape the kernel convolves): the packed weights, then with S > 1
// slices the partial tiles (from a 16-byte boundary: float4 stores) and a counter per tile.
inline std::int64_t partials_offset(const ConvShape& fs) { return (packed_weight_floats(fs) + 3) / 4 * 4; }
inline std::int64_t counters_offset(const ConvShape& fs, int splits, int bn, int rows = bm) {
  return partials_offset(fs) + splits * tiles(fs, bn, rows) * rows * bn;
}
inline std::int64_t counters_offset(const ConvShape& fs, int splits) {
  return counters_offset(fs, splits, block_n(fs), block_m(fs));
}
inline std::int64_t workspace_floats(const ConvShape& fs, int splits, int bn, int rows = bm) {
  return splits > 1 ? counters_offset(fs, splits, bn, rows) + tiles(fs, bn, rows) : packed_weight_floats(fs);
}
inline std::int64_t workspace_floats(const ConvShape& fs, int splits) {
  return workspace_floats(fs, splits, block_n(fs), block_m(fs));
}
inline std::int64_t workspace_floats(const ConvShape& fs) { return workspace_floats(fs, splits(fs)); }
// The counters the weight packing zeroes in a workspace `work` (none for one slice).
inline unsigned* counters(const ConvShape& fs, float* work, int splits, int bn, int rows = bm) {
  return splits > 1 ? reinterpret_cast<unsigned*>(work + counters_offset(fs, splits, bn, rows)) : nullptr;
}
inline unsigned* counters(const ConvShape& fs, float* work, int splits) {
  return counters(fs, work, splits, block_n(fs), block_m(fs));
}
inline int counter_count(const ConvShape& fs, int splits, int bn, int rows = bm) {
  return splits > 1 ? static_cast<int>(tiles(fs, bn, rows)) : 0;
}
inline int counter_count(const ConvShape& fs, int splits) {
  return counter_count(fs, splits, block_n(fs), block_m(fs));
}

// The input gradient as a forward convolution: dy (Cout channels) in, dx (Cin channels) out.
inline ConvShape transposed(const ConvShape& s) { return {s.n, s.c_out, s.c_in, s.h, s.w, s.k}; }
// Floats of the input gradient's packed weights (Cin x K*K x Cout rounded up to 16).
inline std::int64_t packed_dgrad_weight_floats(const ConvShape& s) { return packed_weight_floats(transposed(s)); }
// The forward kernel's grid: tiles x S slices.
inline dim3 grid(const ConvShape& fs, int splits, int bn, int rows = bm) {
  return dim3(static_cast<unsigned>((fs.n * fs.h * fs.w + rows - 1) / rows),
              static_cast<unsigned>((fs.c_out + bn - 1) / bn), static_cast<unsigned>(splits));
}
inline dim3 grid(const ConvShape& fs, int splits) { return grid(fs, splits, block_n(fs), block_m(fs)); }

// The block tile a launcher was given: bn 0 is the plan's (block_n and block_m), rows 0 is 128.
inline void given_tile(const ConvShape& fs, int& bn, int& rows) {
  if (bn == 0) {
    bn = block_n(fs);
    if (rows == 0) rows = block_m(fs);
  }
  if (rows == 0) rows = bm;
}

// The tall kernel's 60 KiB of dynamic shared memory, asked for once per device.
template <int K>
void allow_tall_shared() {
  kiln::gpu::set_max_dynamic_shared_once<conv2d_mma_forward_tall_kernel<K>>(Tile<64, tall_bm>::shared_bytes);
}

// The forward kernel on already packed weights (fs: the shape it convolves; a transposed one for
// the input gradient) in `work` (workspace_floats(fs, splits, bn, rows) floats, the counters zeroed),
// on rows x bn block tiles (bn 0: the plan's, block_n(fs) and block_m(fs); rows 0: 128; the
// benchmarks compare them). One instantiation per (K, block tile, narrow Cin): 8 kernels, and the
// tall tile's 2 (conv2d_mma_forward_tall_kernel<K>).
inline void launch_packed(const ConvShape& fs, const float* x, float* work, const float* b, float* y,
                          kiln::gpu::stream_handle stream, int splits = 1, int bn = 0, int rows = 0) {
  given_tile(fs, bn, rows);
  float* partials = splits > 1 ? work + partials_offset(fs) : nullptr;
  unsigned* counter = counters(fs, work, splits, bn, rows);
  if (rows == tall_bm) {  // (256 x 64, Cin >= 16)
    if (bn != 64 || narrow(fs)) throw kiln::gpu::Error("conv2d_mma: the tall tile is 256 x 64 and takes Cin >= 16");
    using Tall = Tile<64, tall_bm>;
    auto run = [&]<int K>() {
      allow_tall_shared<K>();
      KILN_LAUNCH((conv2d_mma_forward_tall_kernel<K>), grid(fs, splits, 64, tall_bm), dim3(Tall::threads),
                  Tall::shared_bytes, stream, fs, x, static_cast<const float*>(work), b, y, partials, counter);
    };
    return fs.k == 3 ? run.template operator()<3>() : run.template operator()<1>();
  }
  const int variant = (fs.k == 3 ? 4 : 0) + (bn == 128 ? 2 : 0) + (narrow(fs) ? 1 : 0);
  auto run = [&]<int K, int BN, bool NarrowCin>() {
    KILN_LAUNCH((conv2d_mma_forward_kernel<K, BN, NarrowCin>), grid(fs, splits, BN), dim3(Tile<BN>::threads),
                Tile<BN>::shared_bytes, stream, fs, x, static_cast<const float*>(work), b, y, partials, counter);
  };
  switch (variant) {
    case 0:
      return run.template operator()<1, 64, false>();
    case 1:
      return run.template operator()<1, 64, true>();
    case 2:
      return run.template operator()<1, 128, false>();
    case 3:
      return run.template operator()<1, 128, true>();
    case 4:
      return run.template operator()<3, 64, false>();
    case 5:
      return run.template operator()<3, 64, true>();
    case 6:
      return run.template operator()<3, 128, false>();
    default:
      return run.template operator()<3, 128, true>();
  }
}

inline unsigned pack_blocks(std::int64_t count) {
  return static_cast<unsigned>((count + 255) / 256 < 4096 ? (count + 255) / 256 : 4096);
}

// The weight packings' grid (pack_threads each): one block per staged tile of pack_staged, whose
// tiles hold 288-2304 values (the K = 1 forward packings, plain grid-stride copies: one per 256
// values); at most 4096, the loops stride over the rest. The TF32 and BF16 packings tile alike.
inline constexpr unsigned pack_threads = 256;
template <int K, bool Dgrad>
inline unsigned pack_weight_blocks(const ConvShape& s) {
  const std::int64_t n = Dgrad ? s.c_out : s.c_in, rows = Dgrad ? s.c_in : s.c_out;
  constexpr int rows_per_tile = Dgrad ? pack_rows<K>() : 1;
  const std::int64_t work = K == 1 && !Dgrad ? (rows * channels_padded(n) + pack_threads - 1) / pack_threads
                                             : (channels_padded(n) + pack_chunk - 1) / pack_chunk *
                                                   ((rows + rows_per_tile - 1) / rows_per_tile);
  return static_cast<unsigned>(work < 1 ? 1 : work < 4096 ? work : 4096);
}

// y = conv(x, w) + b (b may be null) with the k steps in `splits` slices (1: unsplit) on rows x bn
// block tiles (as launch_packed). `work`: workspace_floats(s, splits, bn, rows) floats of device scratch
// (packed_weight_floats(s) for one slice).
// The forward's weight packing alone: wp[o][t][c] at the start of `work`, the split-K counters of that
// plan zeroed (conv2d_mma_pack_weights_kernel).
inline void pack_weights(const ConvShape& s, const float* w, float* work, kiln::gpu::stream_handle stream = nullptr,
                         int splits = 1, int bn = 0, int rows = 0) {
  given_tile(s, bn, rows);
  unsigned* counter = counters(s, work, splits, bn, rows);
  const int count = counter_count(s, splits, bn, rows);
  if (s.k == 3)
    KILN_LAUNCH((conv2d_mma_pack_weights_kernel<3>), dim3(pack_weight_blocks<3, false>(s)), dim3(pack_threads), 0,
                stream, s, w, work, counter, count);
  else
    KILN_LAUNCH((conv2d_mma_pack_weights_kernel<1>), dim3(pack_weight_blocks<1, false>(s)), dim3(pack_threads), 0,
                stream, s, w, work, counter, count);
}

inline void forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, float* work,
                    kiln::gpu::stream_handle stream = nullptr, int splits = 1, int bn = 0, int rows = 0) {
  if (!supports(s))
    throw kiln::gpu::Error("conv2d_mma: unsupported shape (K must be 1 or 3, tensors under 2^31 elements)");
  if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_out == 0) return;
  given_tile(s, bn, rows);
  pack_weights(s, w, work, stream, splits, bn, rows);
  launch_packed(s, x, work, b, y, stream, splits, bn, rows);
}

// dx = the input gradient of y = conv(x, w) (overwritten) from dy, the k steps in `splits` slices.
// `work`: workspace_floats(transposed(s), splits) floats of device scratch (packed_dgrad_weight_floats(s)
// for one slice).
inline void backward_data(const ConvShape& s, const float* w, const float* dy, float* dx, float* work,
                          kiln::gpu::stream_handle stream = nullptr, int splits = 1) {
  if (!supports(s) || !supports(transposed(s)))
    throw kiln::gpu::Error("conv2d_mma: unsupported shape (K must be 1 or 3, tensors under 2^31 elements)");
  if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_in == 0 || s.c_out == 0) return;
  const ConvShape t = transposed(s);
  unsigned* counter = counters(t, work, splits);
  const int count = counter_count(t, splits);
  if (s.k == 3)
    KILN_LAUNCH((conv2d_mma_pack_weights_dgrad_kernel<3>), dim3(pack_weight_blocks<3, true>(s)), dim3(pack_threads), 0,
                stream, s, w, work, counter, count);
  else
    KILN_LAUNCH((conv2d_mma_pack_weights_dgrad_kernel<1>), dim3(pack_weight_blocks<1, true>(s)), dim3(pack_threads), 0,
                stream, s, w, work, counter, count);
  launch_packed(t, dy, work, nullptr, dx, stream, splits);
}

}  // namespace mma_conv

}  // namespace kiln::cuda::kernels
