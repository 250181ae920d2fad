#pragma once
// Conv2d weight gradient (stride 1, zero padding K/2, NCHW, K = 1 or 3) as a TF32 GEMM on
// mma.sync m16n8k8, in the style of the forward (conv2d_mma.cuh). Backend<Cuda>'s MathMode::tf32
// weight gradient wherever supports() holds; tested on the emulator (tests/emu/test_conv_mma.cpp,
// the tf32 rows of the kernel table).
//
// Per filter tap t = u*K + v, one GEMM with the pixels as the reduction:
//   D_t[m = Cout][n = Cin] = sum over pixels p of  dy[img][m][p]  *  x[img][n][py+u-P][px+v-P],
//   dw[m][n][t] += D_t[m][n].
// blockIdx.y takes one tap, or a pair of consecutive taps (Taps = 2: the x side's tile holds both
// taps' rows, so a side of 64 channels still makes a four-warp block; geometry()).
// The pixels are split over blockIdx.z (split-K, a block for every SM: splits()): each split writes
// its partial D into a workspace [split][t][Cout][Cin], and conv2d_mma_wgrad_reduce_kernel adds
// the splits to dw in a fixed order (deterministic, bit-identical run to run, no atomics); or, where
// the splits are few (Splits::one_launch), the tile's last split adds them in the same launch
// (mma_pipeline::reduce_split_k, the forward's: the same order, the same bits). With one split the
// kernel adds D to dw itself. Where the tiles do not divide into whole waves (the deep levels' 36-144
// 128 x 128 tiles), conv2d_mma_wgrad_stream_k_kernel runs the same body on a stream-K schedule
// (CUTLASS's): 132 blocks each take an equal run of the tiles' k steps laid end to end, across tile
// boundaries, and each tile's last piece adds its pieces in k order (mma_pipeline::reduce_pieces).
// On sm_90a the four-warp 128-row tiles run the same body on warpgroup MMAs instead
// (conv2d_wgmma_wgrad_kernel, wgmma_tile(); the same sums in the same order), and there a tile's
// 2-8 splits may run as one thread-block cluster that adds them through distributed shared memory
// (Splits::cluster, wgmma_splits(), cluster_sum_wgmma: one cluster per tile, no partial sums leave
// the chip; G clusters per tile, G partial sums for the reduction launch instead of G x C).
//
// Tiling: a block computes BM x (Taps x CT) of D (Tile; 128 x 128 and 64 x 64 of one tap, 128 x 2*64
// and 64 x 2*128 of a pair), each warp a 64 x 64 tile of one tap as 4 x 8 m16n8k8 accumulators.
// k steps of 16 pixels through a 3-stage cp.async pipeline, one __syncthreads per step. Both
// operands are stored [row][16 pixels], pixels contiguous, 16-byte chunk c of row r at slot
// c ^ ((r >> 1) & 3) (the 8 rows of an ldmatrix phase in 8 different bank groups), and loaded by
// ldmatrix.x4: for 32-bit data the plain ldmatrix gives lane l the float (l/4, l%4) of an 8x4 block,
// which is the m16n8k8 A layout for row-major storage (four 8x4 blocks = {a0, a1, a2, a3}) and the
// B layout for n-major storage.
//   A = dy: H*W % 4 == 0 (supports()), so 4 consecutive pixels never straddle two images and are
//     16-byte aligned: 16-byte cp.async, zero-filled past the last pixel. Rows past Cout read a
//     clamped row (their D rows are never stored).
//   B = x at the block's taps: 4-byte cp.async (a tap shifts pixels by v-P, misaligning them),
//     zero-filled outside the image and past the last pixel. Each thread gathers one pixel of the
//     step for CT*16/threads channels of each tap: one tap check per step and tap, a constant
//     channel stride, destinations as immediates off per-thread bases. Cin > CT and not a multiple
//     of it: the last column block's tile is shifted to [Cin - CT, Cin) (every row exists; the
//     columns the block before stores are computed again, not stored). ChannelTail (Cin < CT, one
//     column block, one tap): a thread copies only its rows below Cin (b_rows, fixed for the
//     kernel), in a rolled loop over groups of rows (2 for the 128 x 128 tile, 4 for 64 x 64; the
//     last group's rows past Cin predicated off); the rows never copied are zeroed once and only
//     ever meet D's columns past Cin, which are not stored.
// The pixel positions move by 16 per step: kept incrementally (no division in the k loop).
// Operands: dy and x reach the tensor core as fp32 bits, which it truncates to TF32 (as the
// forward's activations). Offsets are 32-bit (supports() checks N*C*H*W < 2^31).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "conv2d_mma_pipeline.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

namespace mma_wgrad {

inline constexpr int bk = 16;  // pixels per pipeline stage
inline constexpr int stages = 3;
inline constexpr int warp_tile = 64;  // 64 output x 64 input channels per warp
// conv2d_mma_wgrad_reduce_kernel's tile: 32 (o, c) pairs per block, a warp per tap (K = 3: 32
// pairs x 9 taps = 288 threads; K = 1: one warp), so a launch has a thread per partial sum of a split
// and the small weights still spread over many SMs: the shallow 3x3 layers (Cout*Cin of 1K-16K) get
// 32-512 blocks, the 1x1s of 2K-8K 64-256 (256 pairs per K = 1 block left 8-32 SMs reading their
// hundreds of splits).
inline constexpr int reduce_pairs = 32;
__host__ __device__ inline constexpr int reduce_block_threads(int k) { return reduce_pairs * k * k; }

// A block's tile: BM output channels x (Taps x CT) columns, CT input channels at each of Taps
// consecutive filter taps (Taps = 2 only for K = 3; the B rows [h * CT, (h + 1) * CT) are x shifted
// to tap h of the pair). Warps of 64 x 64.
template <int BM, int CT, int Taps = 1>
struct Tile {
  static_assert(BM == 64 || BM == 128, "64 or 128 output channels per block");
  static_assert(CT == 64 || CT == 128, "64 or 128 input channels per tap");
  static_assert(Taps == 1 || Taps == 2, "one tap or a pair");
  static_assert(Taps == 1 || BM * CT == 128 * 64, "a pair tile is four warps");
  static constexpr int bn = CT * Taps;
  static constexpr int warps_m = BM / warp_tile, warps_n = bn / warp_tile;
  static constexpr int threads = 32 * warps_m * warps_n;
  static constexpr int a_floats = BM * bk, b_floats = bn * bk, stage_floats = a_floats + b_floats;
  static constexpr std::size_t shared_bytes = sizeof(float) * stages * stage_floats;
  static constexpr int a_chunks_per_thread = BM * (bk / 4) / threads;  // 16-byte dy copies
  static constexpr int a_rows_per_pass = threads / (bk / 4);
  static constexpr int b_rows_per_pass = threads / bk;                             // x rows a pass of the block covers
  static constexpr int b_copies_per_thread = bn / b_rows_per_pass;                 // 4-byte x copies
  static constexpr int b_copies_per_tap = CT / b_rows_per_pass;                    // of them, at one tap
  static constexpr int b_period = b_rows_per_pass >= 8 ? 1 : 8 / b_rows_per_pass;  // of the row swizzle
  static_assert(BM * (bk / 4) % threads == 0, "every thread copies the same number of dy chunks");
  static_assert(a_rows_per_pass % 8 == 0, "every dy copy of a thread has the same swizzle");
  static_assert(b_rows_per_pass <= 8 && 8 % b_rows_per_pass == 0, "periodic x swizzle");
  static_assert(CT % b_rows_per_pass == 0, "a thread's x rows of one tap are consecutive copies");
  static_assert(shared_bytes <= 64 * 1024, "at most 64 KiB (above 48: set_max_dynamic_shared, backward_weight)");
  static_assert(shared_bytes >= sizeof(float) * 32 * threads, "room for mma_pipeline::reduce_split_k's stash");
};

// The warpgroup-MMA variant of the four-warp 128-row tiles (128 x 128 of one tap, 128 x 2*64 of a
// pair; wgmma_tile): the same copies into the same stage layout, which is the canonical K-major
// 64-byte swizzle (index() below: chunk c of row r at (r / 8) * 512 + (r % 8) * 64 + (c ^ (r / 2 % 4))
// * 16 bytes, SBO 512), read by the tensor cores through descriptors instead of ldmatrix: per k8 the
// warpgroup's two m64n128k8 instructions (dy rows 0-63 and 64-127, each against all 128 x rows) read
// 12 KiB, 0.75 wavefronts per m16n8k8-equivalent, and the copies store 0.5: 1.25 against mma.sync's
// 1.5. Four stages, two steps ahead, one group of instructions in flight (conv2d_wgmma.cuh's loop),
// the stages 1024-byte aligned (+ 1 KiB).
inline constexpr int wgmma_stages = 4;
template <int BM, int CT, int Taps>
inline constexpr std::size_t wgmma_shared_bytes =
    static_cast<std::size_t>(Tile<BM, CT, Taps>::stage_floats) * wgmma_stages * sizeof(float) + 1024;

// Float (row, k) of a stage operand [BT][16], 16-byte chunks swizzled.
__device__ __forceinline__ int index(int row, int k) {
  return row * bk + (((k >> 2) ^ ((row >> 1) & 3)) << 2) + (k & 3);
}

// Block tile of one tap: 128 x 128 when both channel counts exceed 64, else 64 x 64.
inline int block_tile(const ConvShape& s) { return s.c_out > 64 && s.c_in > 64 ? 128 : 64; }

// A launch's tile (Tile<bm, ct, taps>) and whether its x rows have a channel tail (Cin < ct).
struct Geometry {
  int bm = 64, ct = 64, taps = 1;
  bool tail = false;
  int warps() const { return bm / warp_tile * (ct * taps / warp_tile); }
  friend bool operator==(const Geometry&, const Geometry&) = default;
};
// One tap per block, BT x BT (BT = block_tile): the BF16 kernel's tiles.
inline Geometry single_tap(const ConvShape& s) {
  const int bt = block_tile(s);
  return {bt, bt, 1, s.c_in < bt};
}
// The TF32 kernel's: where one side has 64 channels and the other at least 65 (Cin = 64, or
// Cout <= 64 with Cin >= 128) and K = 3, a block takes a pair of taps: 128 x (2 x 64) for Cin = 64,
// 64 x (2 x 128) for Cout <= 64, both four warps. One-tap 64 x 64 tiles are one warp: an SM's shared
// memory then moves two wavefronts per HMMA (the copies' one and the fragments' one), against 1.5
// (1.64 for 64 x 2*128) for four warps, which kept these levels' weight gradients near 54 % of the
// TF32 peak (docs/kernels.md). The ninth tap's pair is one tap: the block's second-tap warps copy
// and compute nothing. (A 64 x 2*64 pair of two warps for 64 channels both ways needs 4.1 SASS
// instructions per HMMA, past the limit of 4: not built.)
inline Geometry geometry(const ConvShape& s) {
  if (s.k == 3 && s.c_in == 64 && s.c_out > 64) return {128, 64, 2, false};
  if (s.k == 3 && s.c_in >= 128 && s.c_out <= 64) return {64, 128, 2, false};
  return single_tap(s);
}
// Whether tile g has the warpgroup-MMA variant (conv2d_wgmma_wgrad_kernel): the 128-row four-warp
// tiles, 128 x 128 of one tap (with or without a channel tail) and 128 x 2*64 of a pair. Where it
// runs (kiln::gpu::wgmma::runs_here) it replaces the mma.sync kernel: the same sums, 1.25 shared
// wavefronts per m16n8k8-equivalent instead of 1.5 (docs/kernels.md, "The weight gradient on wgmma").
inline bool wgmma_tile(const Geometry& g) { return g.bm == 128 && g.ct * g.taps == 128; }

}  // namespace mma_wgrad

// grid (ceil(Cin / CT), ceil(Cout / BM) * ceil(K*K / Taps), splits), block Tile<BM, CT, Taps>::threads,
// dynamic shared memory Tile<BM, CT, Taps>::shared_bytes. Split z reduces k steps
// [z * steps_per_split, ...) and writes `out` = workspace [splits][K*K][Cout][Cin] (splits > 1) or
// adds to `out` = dw (one split). With `counters` (splits > 1, Splits::one_launch): out = dw, the
// splits' partial tiles go to `partials` (mma_wgrad::partial_floats) and the tile's last split adds
// them all to dw; counters: one per tile (mma_wgrad::tiles), 0 at launch and left at 0.
// conv2d_mma_wgrad_stream_k_kernel (128 x 128 tiles; Splits::stream_k): grid (blocks), the tiles' k steps
// laid end to end (tile t = blockIdx.y * tiles_x + blockIdx.x of the grid above, its step k at
// iteration t * k_steps + k), block b takes iterations [b * steps_per_split, (b + 1) * steps_per_split):
// a segment of one tile or more. A whole tile it adds to out = dw; a piece of one goes to its slot of
// `partials` (stream_slots per tile: mma_wgrad::partial_floats) and the tile's last piece adds them
// all in k order (reduce_pieces), so no block waits for another. The same `counters` as above.
// (BF16 runs conv2d_mma_bf16_wgrad.cuh's kernel on NHWC BF16 copies; the fp32-staged BF16 variant
// that lived here is retired: docs/kernels.md "BF16".)
namespace mma_wgrad {
// The wgmma variant's epilogue (run_kernel's Wgmma), one accumulator at a time: warp w of the
// warpgroup holds dy rows 64 * half + 16w + g (+ 8) and tile columns 8j + 2t (+ 1), j < 16, in
// d[64 * half + 4j + 2 * (+ 8) + e] (kiln/gpu/wgmma.hpp's accumulator layout); tile column c is
// channel n0 + c % CT of tap tap0 + c / CT. v, this thread's accumulator i, goes into `partial`
// ([KK][Cout][Cin] of one split) where that is given, else is added to dw; not stored: rows past
// Cout, the last pair's missing tap, columns past Cin or (Shifted) before n_own, as
// mma_pipeline::store_wgrad.
template <int KK, int CT, bool Shifted>
__device__ __forceinline__ void store_wgmma_element(float v, int i, float* dw, float* partial, int tap0, int taps,
                                                    int m0, int n0, [[maybe_unused]] int n_own, int cout, int cin,
                                                    int tid) {
  const int half = i / 64, j = i % 64 / 4, hh = i % 4 / 2, col = 8 * j + 2 * (tid % 4) + i % 2, h = col / CT;
  const int m = m0 + 64 * half + 16 * (tid / 32) + tid % 32 / 4 + 8 * hh, n = n0 + col % CT;
  if (m >= cout || h >= taps || n >= cin || (Shifted && n < n_own)) return;
  if (partial != nullptr)
    partial[((tap0 + h) * cout + m) * cin + n] = v;
  else
    dw[(m * cin + n) * KK + tap0 + h] += v;
}
// ... all 128 of them: `split`: out is the workspace, this split's partial sum (blockIdx.z), else dw.
template <int KK, int CT, bool Shifted>
__device__ __forceinline__ void store_wgrad_wgmma(const float (&d)[128], float* out, bool split, int tap0, int taps,
                                                  int m0, int n0, int n_own, int cout, int cin, int tid) {
  float* partial = split ? out + static_cast<int>(blockIdx.z) * KK * cout * cin : nullptr;
  KILN_UNROLL
  for (int i = 0; i < 128; ++i)
    store_wgmma_element<KK, CT, Shifted>(d[i], i, out, partial, tap0, taps, m0, n0, n_own, cout, cin, tid);
}

// The wgmma kernel launched in clusters of a tile's splits (Splits::cluster; cluster dims (1, 1, C),
// so the cluster's blocks are C consecutive splits and rank = split - first): after its k loop each
// block leaves its partial tile in its own shared memory, float i of thread t at i * 128 + t (a
// warp's 32 floats in one 128-byte row), and after the cluster barrier block r adds the floats i = r,
// r + C, ... over the C blocks in rank order, the other blocks' read through distributed shared
// memory: into dw where the cluster holds all the tile's splits (gridDim.z = C: reduce_split_k's
// order of sums, the same bits, no partial tile off the chip, no block adding alone), else as
// partial sum blockIdx.z / C of the workspace `out` ([G][KK][Cout][Cin], the reduction launch's).
// (Call after the k loop's last wait: the stages are overwritten.)
template <int KK, int CT, bool Shifted>
__device__ __forceinline__ void cluster_sum_wgmma(const float (&d)[128], float* shared, float* out, int tap0, int taps,
                                                  int m0, int n0, int n_own, int cout, int cin, int tid) {
  namespace cl = kiln::gpu::cluster;
  __syncthreads();  // every warp past its last wait: the stages are free
  KILN_UNROLL
  for (int i = 0; i < 128; ++i) shared[i * 128 + tid] = d[i];
  cl::sync();  // every block's partial tile in place
  const int count = static_cast<int>(cl::size());
  // one cluster per tile: into dw; else this cluster's partial sum (its group of splits)
  float* partial =
      static_cast<int>(gridDim.z) == count ? nullptr : out + static_cast<int>(blockIdx.z) / count * KK * cout * cin;
  KILN_MMA_ROLLED
  for (int i = static_cast<int>(cl::rank()); i < 128; i += count) {
    float sum = cl::load_shared(shared + i * 128 + tid, 0u);
    for (int b = 1; b < count; ++b) sum += cl::load_shared(shared + i * 128 + tid, static_cast<unsigned>(b));
    store_wgmma_element<KK, CT, Shifted>(sum, i, out, partial, tap0, taps, m0, n0, n_own, cout, cin, tid);
  }
  cl::sync();  // no block leaves while another reads its shared memory
}

// The kernels' body (conv2d_mma_wgrad_kernel, conv2d_mma_wgrad_stream_k_kernel below; with Wgmma,
// conv2d_wgmma_wgrad_kernel and conv2d_wgmma_wgrad_stream_k_kernel: wgmma_shared_bytes above).
template <int K, int BM, int CT, int Taps, bool ChannelTail, bool StreamK, bool Wgmma = false>
__device__ __forceinline__ void run_kernel(const ConvShape& s, const float* x, const float* dy, float* out,
                                           int steps_per_split, float* partials, unsigned* counters,
                                           [[maybe_unused]] int stream_slots) {
  namespace mma = kiln::gpu::mma;
  using T = mma_wgrad::Tile<BM, CT, Taps>;
  static_assert(Taps == 1 || (K == 3 && !ChannelTail), "tap pairs: K = 3, every x row of the tile exists");
  static_assert(!StreamK || (BM == 128 && CT == 128 && Taps == 1),
                "stream-K: 128 x 128 tiles (mma_wgrad::stream_k_of)");
  static_assert(!Wgmma || (BM == 128 && CT * Taps == 128), "wgmma: the 128-row four-warp tiles (wgmma_tile)");
  constexpr int stage_count = Wgmma ? mma_wgrad::wgmma_stages : mma_wgrad::stages;
  using mma_pipeline::at_byte;
  using mma_wgrad::bk;
  using mma_wgrad::index;
  constexpr int KK = K * K, P = K / 2;
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w), HW = H * W;
  const int cin = static_cast<int>(s.c_in), cout = static_cast<int>(s.c_out);
  const int pixels = static_cast<int>(s.n) * HW;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int wm = warp % T::warps_m, wn = warp / T::warps_m;
  const int tiles_m = (cout + BM - 1) / BM, tiles_x = (cin + CT - 1) / CT;
  const int k_steps_total = (pixels + bk - 1) / bk;
  float* shared = kiln::gpu::dynamic_shared<float>();
  if constexpr (Wgmma) {  // swizzled stages start 1024-byte aligned (the emulator's dynamic memory is not)
    auto* raw = reinterpret_cast<unsigned char*>(shared);
    shared = reinterpret_cast<float*>(raw + (1024 - kiln::gpu::wgmma::shared_address(raw) % 1024) % 1024);
  }
  // The block's first segment: tile, k steps [step_begin, step_end); under stream-K, iterations
  // [iteration, iteration_end) are left.
  constexpr bool stream = StreamK;
  int tile = 0, step_begin = 0, step_end = 0;  // (tile: stream-K's; the grid's is blockIdx.(x, y))
  int iteration = 0, iteration_end = 0;
  if constexpr (stream) {
    const int tiles = tiles_x * tiles_m * ((KK + Taps - 1) / Taps);
    iteration = static_cast<int>(blockIdx.x) * steps_per_split;
    iteration_end =
        iteration + steps_per_split < tiles * k_steps_total ? iteration + steps_per_split : tiles * k_steps_total;
    tile = iteration / k_steps_total;
    step_begin = iteration - tile * k_steps_total;
    step_end = step_begin + (iteration_end - iteration) < k_steps_total ? step_begin + (iteration_end - iteration)
                                                                        : k_steps_total;
  } else {
    step_begin = static_cast<int>(blockIdx.z) * steps_per_split;
    step_end = step_begin + steps_per_split < k_steps_total ? step_begin + steps_per_split : k_steps_total;
  }
  for (;;) {
    const int tile_y = stream ? tile / tiles_x : static_cast<int>(blockIdx.y);
    const int tile_x = stream ? tile - tile_y * tiles_x : static_cast<int>(blockIdx.x);
    const int tap_block = tile_y / tiles_m, tap0 = tap_block * Taps;
    const int m0 = (tile_y - tap_block * tiles_m) * BM;
    // The block's taps: tap0 + h for h < taps (a pair's second may be past the last tap); x rows
    // [h * CT, (h + 1) * CT) of the tile are x shifted by tap h's (du, dv).
    const int taps = Taps == 1 || tap0 + 1 < KK ? Taps : 1;
    int du[Taps], dv[Taps];
    KILN_UNROLL
    for (int h = 0; h < Taps; ++h) {
      du[h] = (tap0 + h) / K - P;
      dv[h] = (tap0 + h) % K - P;
    }
    // Input channels: the block stores columns [n_own, n_own + CT) below Cin; without ChannelTail the
    // last block's tile starts at Cin - CT instead (Cin >= CT), so all its rows exist, and the columns
    // before n_own it computes again are not stored.
    const int n_own = tile_x * CT, n0 = ChannelTail || n_own + CT <= cin ? n_own : cin - CT;
    const int k_steps = step_end - step_begin;

    // ---- per-thread copy state, computed once ----
    // A = dy: chunk c = tid % 4 (pixels p_a .. p_a+3 of the step), rows tid / 4 + i * a_rows_per_pass.
    int a_pixel = step_begin * bk + (tid % 4) * 4;
    int a_hw = a_pixel % HW, a_offset = a_pixel / HW * cout * HW + a_hw;
    int a_row[T::a_chunks_per_thread];
    KILN_UNROLL
    for (int i = 0; i < T::a_chunks_per_thread; ++i) {
      const int m = m0 + tid / 4 + i * T::a_rows_per_pass;
      a_row[i] = (m < cout ? m : cout - 1) * HW;  // a row past Cout reads a real one; its D is dropped
    }
    const int a_dst = index(tid / 4, (tid % 4) * 4) * 4;  // bytes, as b_dst: register + immediate addresses
    // B = x: pixel p_b = step start + tid % 16, rows r0 + j * b_rows_per_pass (channels n0 + row).
    const int r0 = tid / bk;
    int b_pixel = step_begin * bk + tid % bk;
    int b_px, b_py, b_offset;
    {
      const int img = b_pixel / HW, hw = b_pixel - img * HW;
      b_py = hw / W;
      b_px = hw - b_py * W;
      b_offset = img * cin * HW + hw + (n0 + r0) * HW;
    }
    // Rows of this thread that exist: j < b_rows (ChannelTail only).
    const int b_rows_left = cin - n0 - r0;
    const int b_rows = b_rows_left > 0 ? (b_rows_left + T::b_rows_per_pass - 1) / T::b_rows_per_pass : 0;
    const int rows = b_rows < T::b_copies_per_thread ? b_rows : T::b_copies_per_thread;
    if constexpr (ChannelTail) {
      // the rows past Cin's last group are never copied: zero them before any copy lands (each segment:
      // a piece's sum stashes its values over stage 0)
      KILN_UNROLL
      for (int st = 0; st < stage_count; ++st)
        for (int q = tid; q < T::b_floats; q += T::threads) shared[st * T::stage_floats + T::a_floats + q] = 0.0f;
      __syncthreads();
    }
    if constexpr (Wgmma && Taps > 1) {
      if (taps < Taps) {  // the last pair's missing tap: the instructions read its rows, never copied
        KILN_UNROLL
        for (int st = 0; st < stage_count; ++st)
          for (int q = tid; q < CT * bk; q += T::threads)
            shared[st * T::stage_floats + T::a_floats + CT * bk + q] = 0.0f;
        __syncthreads();
      }
    }
    int b_dst[T::b_period];
    KILN_UNROLL
    for (int j = 0; j < T::b_period; ++j) b_dst[j] = index(r0 + j * T::b_rows_per_pass, tid % bk) * 4;
    const int a_image_skip = (cout - 1) * HW, b_image_skip = (cin - 1) * HW, b_row_stride = T::b_rows_per_pass * HW;

    auto load_stage = [&](int stage) {
      float* as = shared + stage * T::stage_floats;
      float* bs = as + T::a_floats;
      const bool a_ok = a_pixel < pixels;  // 4 pixels: all or none exist (H*W % 4 == 0)
      KILN_UNROLL
      for (int i = 0; i < T::a_chunks_per_thread; ++i)
        kiln::gpu::cp_async<16>(at_byte(as, a_dst) + i * T::a_rows_per_pass * bk, dy + (a_offset + a_row[i]), a_ok);
      // Row j of the thread lands at b_dst[j % b_period] + (j / b_period) * 8 * bk floats.
      if constexpr (ChannelTail) {
        const int iy = b_py + du[0], ix = b_px + dv[0];
        const bool b_ok = b_pixel < pixels && static_cast<unsigned>(iy) < static_cast<unsigned>(H) &&
                          static_cast<unsigned>(ix) < static_cast<unsigned>(W);
        const float* src = x + b_offset + du[0] * W + dv[0];  // where !b_ok it may lie outside x: not read
        constexpr int G = T::b_period > 1 ? T::b_period : 2;  // rows per iteration, a multiple of b_period
        KILN_MMA_ROLLED
        for (int jg = 0; jg < rows; jg += G) {
          KILN_UNROLL
          for (int jp = 0; jp < G; ++jp) {
            kiln::gpu::cp_async<4>(
                at_byte(bs, b_dst[jp % T::b_period]) + (jg / T::b_period + jp / T::b_period) * 8 * bk, src,
                b_ok && jg + jp < rows);
            src += b_row_stride;
          }
        }
      } else {
        KILN_UNROLL
        for (int h = 0; h < Taps; ++h) {
          if (h >= taps) break;  // the last pair's missing tap: its rows are never read
          const int iy = b_py + du[h], ix = b_px + dv[h];
          const bool b_ok = b_pixel < pixels && static_cast<unsigned>(iy) < static_cast<unsigned>(H) &&
                            static_cast<unsigned>(ix) < static_cast<unsigned>(W);
          const float* src = x + b_offset + du[h] * W + dv[h];  // where !b_ok it may lie outside x: not read
          KILN_UNROLL
          for (int jt = 0; jt < T::b_copies_per_tap; ++jt) {
            const int j = h * T::b_copies_per_tap + jt;
            kiln::gpu::cp_async<4>(at_byte(bs, b_dst[j % T::b_period]) + (j / T::b_period) * 8 * bk, src, b_ok);
            src += b_row_stride;
          }
        }
      }
      // Next step: 16 pixels further.
      a_pixel += bk;
      a_offset += bk;
      a_hw += bk;
      while (a_hw >= HW) {  // into the next image (more than once only when H*W < 16)
        a_hw -= HW;
        a_offset += a_image_skip;
      }
      b_pixel += bk;
      b_offset += bk;
      b_px += bk;
      while (b_px >= W) {
        b_px -= W;
        ++b_py;
      }
      while (b_py >= H) {
        b_py -= H;
        b_offset += b_image_skip;
      }
    };

    // ---- per-lane ldmatrix row addresses inside a stage, computed once ----
    // ldmatrix.x4 lane l gives the address of row l % 8 of matrix l / 8.
    const int mat = lane / 8;
    int a_lane[2], b_lane[2];
    {
      // A m-tile i, k half kh: matrices {rows 0-7, rows 8-15} x {k 0-3, k 4-7} = {a0, a1, a2, a3}.
      const int m = wm * mma_wgrad::warp_tile + (mat % 2) * 8 + lane % 8;
      // B n-tiles 2jp, 2jp+1: matrices {n 0-7, n 8-15} x {k 0-3, k 4-7} in the order b[2jp], b[2jp+1].
      const int n = wn * mma_wgrad::warp_tile + (mat / 2) * 8 + lane % 8;
      KILN_UNROLL
      for (int kh = 0; kh < 2; ++kh) {
        a_lane[kh] = index(m, kh * 8 + (mat / 2) * 4);
        b_lane[kh] = index(n, kh * 8 + (mat % 2) * 4);
      }
    }

    // The warp's 64 columns lie in one tap of the tile: h = wn * 64 / CT.
    const int warp_half = wn * mma_wgrad::warp_tile / CT, warp_tap = tap0 + warp_half;
    const bool warp_active = warp_half < taps;
    float acc[4][8][4];
    mma_pipeline::zero(acc);
    if constexpr (Wgmma) {  // conv2d_wgmma.cuh's loop; acc holds the two m64n128 accumulators
      namespace wg = kiln::gpu::wgmma;
      float(&d)[128] = *reinterpret_cast<float(*)[128]>(&acc[0][0][0]);
      float(&rows_low)[64] = *reinterpret_cast<float(*)[64]>(&acc[0][0][0]);   // dy rows 0-63
      float(&rows_high)[64] = *reinterpret_cast<float(*)[64]>(&acc[2][0][0]);  // dy rows 64-127
      KILN_UNROLL
      for (int st = 0; st < stage_count - 2; ++st) {
        if (st < k_steps) load_stage(st);
        kiln::gpu::cp_async_commit();
      }
      for (int step = 0; step < k_steps; ++step) {
        kiln::gpu::cp_async_wait<stage_count - 3>();  // this thread's copies of `step` have landed
        wg::fence_proxy_async();                      // ... and are visible to the tensor cores
        __syncthreads();                              // everyone's; every instruction of step - 2 done
        if (step + stage_count - 2 < k_steps) load_stage((step + stage_count - 2) % stage_count);
        kiln::gpu::cp_async_commit();
        const float* as = shared + (step % stage_count) * T::stage_floats;
        const std::uint64_t a_low = wg::descriptor(as, 16, 512, wg::Swizzle::bytes64);
        const std::uint64_t a_high = wg::descriptor(as + 64 * bk, 16, 512, wg::Swizzle::bytes64);
        const std::uint64_t b = wg::descriptor(as + T::a_floats, 16, 512, wg::Swizzle::bytes64);
        wg::fence();
        wg::mma_tf32<128>(rows_low, a_low, b, true);  // k 0-7 of the step, then 8-15: mma.sync's order
        wg::mma_tf32<128>(rows_high, a_high, b, true);
        wg::mma_tf32<128>(rows_low, wg::advance(a_low, 32), wg::advance(b, 32), true);
        wg::mma_tf32<128>(rows_high, wg::advance(a_high, 32), wg::advance(b, 32), true);
        wg::commit_group();
        wg::wait_group<1>(d);
      }
      wg::wait_group<0>(d);
      kiln::gpu::cp_async_wait<0>();  // (only empty groups are left: none may be pending at exit)
    } else {
      mma_pipeline::run<mma_wgrad::stages>(k_steps, load_stage, [&](int stage) {
        if (Taps > 1 && !warp_active) return;  // warp-uniform: the last pair's missing tap
        const float* as = shared + stage * T::stage_floats;
        const float* bs = as + T::a_floats;
        KILN_UNROLL
        for (int kh = 0; kh < 2; ++kh) {  // two k8 halves of the step
          std::uint32_t a[4][4], b[8][2];
          KILN_UNROLL
          for (int i = 0; i < 4; ++i) mma::ldmatrix_x4(a[i], as + i * 16 * bk + a_lane[kh]);
          mma_pipeline::load_b_fragments(b, bs + b_lane[kh], 16 * bk);
          KILN_UNROLL
          for (int i = 0; i < 4; ++i) {
            KILN_UNROLL
            for (int j = 0; j < 8; ++j) mma::mma_tf32_m16n8k8(acc[i][j], a[i], b[j], acc[i][j]);
          }
        }
      });
    }

    if constexpr (Wgmma && !stream) {
      if (kiln::gpu::cluster::size() > 1) {  // launched in clusters of the tile's splits: added on chip
        cluster_sum_wgmma<KK, CT, !ChannelTail>(*reinterpret_cast<const float(*)[128]>(&acc[0][0][0]), shared, out,
                                                tap0, taps, m0, n0, n_own, cout, cin, tid);
        return;
      }
    }
    bool split = false, store = true;
    if constexpr (!stream) {
      store = mma_pipeline::wgrad_stores<T::threads>(acc, partials, counters, tid, shared, split);
    } else if (step_begin != 0 || step_end != k_steps_total) {   // a piece of the tile: block `first` holds piece 0
      const int first = tile * k_steps_total / steps_per_split;  // (mma_wgrad::stream_k_pieces_of)
      const int pieces = ((tile + 1) * k_steps_total - 1) / steps_per_split - first + 1;
      store = mma_pipeline::reduce_pieces<T::threads>(acc, partials + tile * stream_slots * T::threads * 128,
                                                      counters + tile, static_cast<int>(blockIdx.x) - first, pieces,
                                                      tid, shared);
    }
    if constexpr (Wgmma) {
      if (store)
        store_wgrad_wgmma<KK, CT, !ChannelTail>(*reinterpret_cast<const float(*)[128]>(&acc[0][0][0]), out, split, tap0,
                                                taps, m0, n0, n_own, cout, cin, tid);
    } else if (store && warp_active) {
      mma_pipeline::store_wgrad<KK, !ChannelTail>(acc, out, split, warp_tap, m0 + wm * mma_wgrad::warp_tile,
                                                  n0 + wn * mma_wgrad::warp_tile % CT, n_own, cout, cin, lane);
    }
    if constexpr (!stream) return;
    // The next tile, from its first k step.
    iteration += k_steps;
    if (iteration >= iteration_end) return;
    ++tile;
    step_begin = 0;
    step_end = iteration_end - iteration < k_steps_total ? iteration_end - iteration : k_steps_total;
    __syncthreads();  // every warp is done with the stages (and the stash) the next segment refills
  }
}

}  // namespace mma_wgrad

template <int K, int BM, int CT, int Taps, bool ChannelTail>
__global__ void __launch_bounds__(mma_wgrad::Tile<BM, CT, Taps>::threads, 2)
    conv2d_mma_wgrad_kernel(ConvShape s, const float* x, const float* dy, float* out, int steps_per_split,
                            float* partials, unsigned* counters) {
  mma_wgrad::run_kernel<K, BM, CT, Taps, ChannelTail, false>(s, x, dy, out, steps_per_split, partials, counters, 0);
}
// The stream-K schedule (above): out = dw, steps_per_split k steps per block, stream_slots partial
// tiles per tile in `partials`.
template <int K, int BM, int CT, int Taps, bool ChannelTail>
__global__ void __launch_bounds__(mma_wgrad::Tile<BM, CT, Taps>::threads, 2)
    conv2d_mma_wgrad_stream_k_kernel(ConvShape s, const float* x, const float* dy, float* dw, int steps_per_split,
                                     float* partials, unsigned* counters, int stream_slots) {
  mma_wgrad::run_kernel<K, BM, CT, Taps, ChannelTail, true>(s, x, dy, dw, steps_per_split, partials, counters,
                                                            stream_slots);
}
// The same two on sm_90a's warpgroup MMAs (mma_wgrad::wgmma_tile: 128 x 128 of one tap or 128 x 2*64
// of a pair, one warpgroup; the same arguments, the same sums in the same order, the same bits;
// dynamic shared memory mma_wgrad::wgmma_shared_bytes). Trap where sm_90a code does not run
// (kiln::gpu::wgmma::runs_here).
template <int K, int CT, int Taps, bool ChannelTail>
__global__ void __launch_bounds__(mma_wgrad::Tile<128, CT, Taps>::threads, 2)
    conv2d_wgmma_wgrad_kernel(ConvShape s, const float* x, const float* dy, float* out, int steps_per_split,
                              float* partials, unsigned* counters) {
  mma_wgrad::run_kernel<K, 128, CT, Taps, ChannelTail, false, true>(s, x, dy, out, steps_per_split, partials, counters,
                                                                    0);
}
template <int K, bool ChannelTail>
__global__ void __launch_bounds__(mma_wgrad::Tile<128, 128, 1>::threads, 2)
    conv2d_wgmma_wgrad_stream_k_kernel(ConvShape s, const float* x, const float* dy, float* dw, int steps_per_split,
                                       float* partials, unsigned* counters, int stream_slots) {
  mma_wgrad::run_kernel<K, 128, 128, 1, ChannelTail, true, true>(s, x, dy, dw, steps_per_split, partials, counters,
                                                                 stream_slots);
}

namespace mma_wgrad {
// dw[o][c][t] += sum over splits of partial[split][t][o][c], splits in order (deterministic), over
// the tiles of Pairs consecutive oc = o*Cin + c this block takes (the block-th of `blocks`,
// grid-stride). A tiled transpose: thread j = t*Pairs + i sums oc first+i's splits for tap t (a warp
// reads consecutive partial sums of one tap) into sums[i*KK + t] (KK odd: a warp's stride-KK stores
// hit distinct banks); then the block adds the tile's Pairs*KK contiguous dw values, consecutive
// threads on consecutive addresses. blockDim.x = Pairs * KK; `sums` as many floats of shared memory.
template <int K, int Pairs>
__device__ __forceinline__ void reduce_tiles(const ConvShape& s, const float* partial, int splits, float* dw, int block,
                                             int blocks, float* sums) {
  constexpr int KK = K * K;
  const int pairs = static_cast<int>(s.c_out * s.c_in), count = pairs * KK, j = static_cast<int>(threadIdx.x);
  const int t = j / Pairs, i = j - t * Pairs;
  for (int first = block * Pairs; first < pairs; first += blocks * Pairs) {
    const int own = pairs - first < Pairs ? pairs - first : Pairs;  // the tile's oc (the last may be short)
    if (i < own) {
      const float* p = partial + t * pairs + first + i;  // partial[0][t][oc]
      float sum = 0.0f;
      for (int sp = 0; sp < splits; ++sp) sum += p[sp * count];
      sums[i * KK + t] = sum;
    }
    __syncthreads();
    if (j < own * KK) dw[first * KK + j] += sums[j];
    __syncthreads();  // before the next tile overwrites sums
  }
}

// One convolution's split-K partial sums for the batched reduction (conv2d_mma_wgrad_reduce_batch_kernel).
struct ReduceEntry {
  ConvShape s;
  const float* partial;  // [splits][K*K][Cout][Cin]
  float* dw;
  int splits;
  int first_block;  // where this entry's blocks begin in the batch
};
// Up to reduce_batch_max convolutions' reductions per launch, in blocks of reduce_batch_threads:
// K = 3 entries in tiles of reduce_pairs = 32 pairs (reduce_block_threads(3)), K = 1 entries in
// tiles of 288 pairs (the same threads, one pair each).
inline constexpr int reduce_batch_max = 24;
inline constexpr int reduce_batch_threads = reduce_block_threads(3);
template <int Entries>
using ReduceBatch = mma_pipeline::Batch<Entries, ReduceEntry>;
__host__ __device__ inline constexpr int reduce_batch_pairs(int k) { return reduce_batch_threads / (k * k); }
}  // namespace mma_wgrad

// dw += the splits in order: the tiles of reduce_pairs (o, c) (mma_wgrad::reduce_tiles).
// blockDim.x = reduce_block_threads(K); grid-stride over the tiles.
template <int K>
__global__ void conv2d_mma_wgrad_reduce_kernel(ConvShape s, const float* partial, int splits, float* dw) {
  __shared__ float sums[mma_wgrad::reduce_block_threads(K)];
  mma_wgrad::reduce_tiles<K, mma_wgrad::reduce_pairs>(s, partial, splits, dw, static_cast<int>(blockIdx.x),
                                                      static_cast<int>(gridDim.x), sums);
}

// A network's weight gradients' reductions in one launch (Backend<Cuda>::conv2d_flush_wgrad_reductions,
// at the end of Network::backward): block b reduces for the last entry whose first_block <= b, as
// block b - first_block of that entry's range (mma_pipeline::batch_entry), the same sums in the same
// order as conv2d_mma_wgrad_reduce_kernel (the same bits). blockDim.x = reduce_batch_threads.
template <int Entries>
__global__ void __launch_bounds__(mma_wgrad::reduce_batch_threads)
    conv2d_mma_wgrad_reduce_batch_kernel(mma_wgrad::ReduceBatch<Entries> batch) {
  __shared__ float sums[mma_wgrad::reduce_batch_threads];
  int local = 0, blocks = 0;
  const mma_wgrad::ReduceEntry e = mma_pipeline::batch_entry(batch, static_cast<int>(blockIdx.x), local, blocks);
  if (e.s.k == 3)
    mma_wgrad::reduce_tiles<3, mma_wgrad::reduce_batch_pairs(3)>(e.s, e.partial, e.splits, e.dw, local, blocks, sums);
  else
    mma_wgrad::reduce_tiles<1, mma_wgrad::reduce_batch_pairs(1)>(e.s, e.partial, e.splits, e.dw, local, blocks, sums);
}

namespace mma_wgrad {

// Whether the kernel takes this shape: K = 1 or 3, H*W % 4 == 0 (16-byte dy copies), 32-bit
// offsets enough. dy must also be 16-byte aligned (aligned(), checked at the call).
inline bool supports(const ConvShape& s) {
  const std::int64_t limit = std::int64_t{1} << 31;
  return (s.k == 1 || s.k == 3) && (s.h * s.w) % 4 == 0 && s.n * s.c_in * s.h * s.w < limit &&
         s.n * s.c_out * s.h * s.w < limit && s.c_out * s.c_in * s.k * s.k < limit;
}
inline bool aligned(const float* dy) { return reinterpret_cast<std::uintptr_t>(dy) % 16 == 0; }

// Split-K, at least 8 k steps (128 pixels) per split, at most 16M floats (64 MiB) of partial sums, at
// most 1024 splits, no split empty. One-warp 64 x 64 tiles: as many splits as give each of a 132-SM
// GPU's 4 x 132 warp schedulers at most one warp (an SM's 4 processing blocks have their own tensor
// cores, and a warp stays on one: 528 blocks; one more puts two warps on some scheduler and doubles
// the launch's time, the wave quantization of NVIDIA's "Matrix Multiplication Background User's
// Guide"; each split also costs the reduction a read of all Cout*Cin*K*K partial sums); none where
// the unsplit grid already fills half the schedulers. Four-warp tiles: the count (up to 64) that the
// H100 model (predicted_seconds: the busiest SM's blocks, the reduction in the GEMM's launch or its
// own, one_launch below) says is fastest, none where the unsplit grid fills half the SMs and no split
// pays: in the U-Net at batch 16 the deep levels' 36, 72 and 144 tiles take 3-11 splits that end
// near a whole wave (a second wave of 12 blocks on 144 tiles costs as much as the first). That is
// split_k; the plan (splits) runs stream-K instead where the model says so (stream_k_seconds).
// one_launch: the splits are added in the GEMM's launch by each tile's last split (reduce_split_k)
// stream_k: count blocks of steps_per_split k steps each over the tiles laid end to end (the
// kernel's stream-K schedule), `slots` partial tiles per tile, added in the launch (one_launch).
// cluster: the wgmma kernel's grid launched in clusters of `cluster` (2-8) consecutive splits of a
// tile, added on chip through distributed shared memory (cluster_sum_wgmma; wgmma_splits plans it):
// with count = cluster, into dw (no workspace, no reduction launch); with count = G x cluster, each
// cluster's sum is partial sum g of G, [G][K*K][Cout][Cin] in the workspace, for the reduction launch.
struct Splits {
  int count = 1;
  int steps_per_split = 1;
  bool one_launch = false;
  bool stream_k = false;
  int slots = 0;
  int cluster = 0;
};
namespace plan_model {  // H100 SXM (predict.py's GPUS table and model)
inline constexpr double sms = 132, tf32_flops = 494.7e12, hbm_bytes = 3.35e12, launch_seconds = 2e-6;
inline constexpr double clock = 1.98e9, sm_l2_bytes_per_clock = 64;  // one SM's reads from L2 (predict.py)
// One SM's reads from other SMs' shared memory (a cluster's): assumed the L2 rate until a GPU
// measures it (kiln_bench_gpu's cluster_dsmem rows; docs/kernels.md "The weight gradient on wgmma").
inline constexpr double sm_dsmem_bytes_per_clock = 64;
// The 128 x 128 tile's main loop is bound by shared memory: per k8 step its warps' 64 x 64 fragments
// load one wavefront per HMMA and its copies store 64 wavefronts for 128 HMMA; an SM moves a wavefront
// per clock and does 0.924 HMMA per clock at the TF32 peak (the emulator's counters agree: 1.39).
inline constexpr double shared_over_math = 1.5 * 0.924;
// ... on the wgmma variant: 1.25 wavefronts per m16n8k8-equivalent (wgmma_stages' comment).
inline constexpr double wgmma_shared_over_math = 1.25 * 0.924;
// How much longer than an even share of the SMs `blocks` four-warp blocks take: the busiest SM runs
// ceil(blocks / SMs) of them (two at a time, each at half the rate), predict.py's busiest().
inline double wave_load(std::int64_t blocks) {
  const auto per_sm = static_cast<double>((blocks + 131) / 132);
  return blocks > 0 ? per_sm * sms / static_cast<double>(blocks) : 1.0;
}
}  // namespace plan_model
// A tile's floats (its partial sum in the one-launch reduction) and the launch's tiles.
inline std::int64_t tile_floats(const Geometry& g) { return std::int64_t{g.bm} * g.ct * g.taps; }
inline std::int64_t tiles(const ConvShape& s, const Geometry& g) {
  return (s.c_out + g.bm - 1) / g.bm * ((s.c_in + g.ct - 1) / g.ct) * ((s.k * s.k + g.taps - 1) / g.taps);
}
// The split-K reduction in its own launch: the partial sums read, dw read and written, at least a launch.
inline double reduction_seconds(std::int64_t count, std::int64_t dw_floats) {
  namespace m = plan_model;
  return std::max(m::launch_seconds,
                  static_cast<double>(count + 2) * 4.0 * static_cast<double>(dw_floats) / m::hbm_bytes);
}
// ... in the GEMM's launch: after its k loop, a tile's last split writes its partial tile and reads the
// count - 1 others alone (predict.py's split-K tail), while the other SMs have finished.
inline double tail_seconds(std::int64_t count, const Geometry& g) {
  namespace m = plan_model;
  return static_cast<double>(count) * 4.0 * static_cast<double>(tile_floats(g)) / (m::sm_l2_bytes_per_clock * m::clock);
}
// Whether the splits go in one launch: a four-warp tile (a lone warp's loads in flight could not read
// L2 at the assumed rate) whose tail costs less than the reduction launch.
inline bool one_launch(std::int64_t count, const Geometry& g, std::int64_t dw_floats) {
  return count > 1 && g.warps() >= 4 && tail_seconds(count, g) < reduction_seconds(count, dw_floats);
}
// The predicted time of the weight gradient on `blocks` 128 x 128 tiles (four warps each; the tap
// pairs' four-warp tiles are priced the same) over
// `steps` k steps in `count` splits: the GEMM launch (shared memory of the busiest SM, the partial
// sums' or dw's DRAM traffic, at least a launch) and, split, the reduction: the
// tail in the GEMM's launch or its own launch (one_launch).
// (gemm_seconds: the GEMM launch alone; `partials`: whether its splits write partial sums to DRAM.)
inline double gemm_seconds(std::int64_t blocks, double steps, std::int64_t count, std::int64_t dw_floats,
                           bool partials = true, double shared_over_math = plan_model::shared_over_math) {
  namespace m = plan_model;
  const double grid = static_cast<double>(blocks * count), fraction = grid < m::sms ? grid / m::sms : 1.0;
  const double math = static_cast<double>(blocks) * 128 * 128 * steps * bk * 2 / m::tf32_flops;
  const double dw_bytes = 4.0 * static_cast<double>(dw_floats);
  return std::max({math * shared_over_math * m::wave_load(blocks * count),
                   (partials && count > 1 ? count : 2) * dw_bytes / m::hbm_bytes / fraction, m::launch_seconds});
}
inline double predicted_seconds(std::int64_t blocks, std::int64_t steps, std::int64_t count, std::int64_t dw_floats) {
  const double gemm = gemm_seconds(blocks, static_cast<double>(steps), count, dw_floats);
  if (count == 1) return gemm;
  const Geometry tile{128, 128, 1, false};
  return gemm + (one_launch(count, tile, dw_floats) ? tail_seconds(count, tile) : reduction_seconds(count, dw_floats));
}
// `count` splits of the k steps (at most one per k step, none empty), and where their sum goes.
inline Splits splits_of(const ConvShape& s, const Geometry& g, std::int64_t count) {
  const std::int64_t steps = (s.n * s.h * s.w + bk - 1) / bk;
  Splits sp;
  sp.steps_per_split = static_cast<int>((steps + count - 1) / (count > 0 ? count : 1));
  if (sp.steps_per_split < 1) sp.steps_per_split = 1;
  sp.count = static_cast<int>((steps + sp.steps_per_split - 1) / sp.steps_per_split);
  if (sp.count < 1) sp.count = 1;
  sp.one_launch = one_launch(sp.count, g, s.c_out * s.c_in * s.k * s.k);
  return sp;
}
// The grid's split-K plan (gridDim.z slices of every tile).
inline Splits split_k(const ConvShape& s, const Geometry& g) {
  const std::int64_t kk = s.k * s.k, dw_floats = s.c_out * s.c_in * kk;
  const std::int64_t blocks = tiles(s, g);
  const std::int64_t steps = (s.n * s.h * s.w + bk - 1) / bk;
  const std::int64_t fill = 132 * 4 / g.warps();
  const std::int64_t by_workspace = (std::int64_t{1} << 24) / (dw_floats > 0 ? dw_floats : 1);
  const std::int64_t cap = std::min({steps / 8, by_workspace, std::int64_t{1024}});
  std::int64_t count = std::max(std::int64_t{1}, std::min(fill / (blocks > 0 ? blocks : 1), cap));
  if (2 * blocks >= fill) count = 1;  // half full unsplit: none unless some pay
  if (g.warps() == 4) {               // four-warp tiles: the count the model says is fastest
    double best = predicted_seconds(blocks, (steps + count - 1) / count * count, count, dw_floats);
    for (std::int64_t c = 1; c <= std::min(cap, std::int64_t{64}); ++c) {
      const std::int64_t per = (steps + c - 1) / c;
      const double t = predicted_seconds(blocks, per * c, c, dw_floats);
      if (t < best) best = t, count = c;
    }
  }
  return splits_of(s, g, count);
}
// The pieces of tile t when blocks of `per` k steps run the tiles' `steps` laid end to end (1: whole
// in one block); the stream-K kernel counts them the same way (run_kernel).
inline std::int64_t stream_k_pieces_of(std::int64_t t, std::int64_t steps, std::int64_t per) {
  return ((t + 1) * steps - 1) / per - t * steps / per + 1;
}
// Stream-K on `blocks` blocks (the plan's: 132, one per SM) of equal runs of the tiles' k steps laid
// end to end, at least 8 each, for 128 x 128 tiles (the stream-K kernel's; none where the iterations
// overflow 32 bits or the partial tiles exceed 16M floats: count 0). slots: the most pieces of a tile.
inline Splits stream_k_of(const ConvShape& s, const Geometry& g, std::int64_t blocks) {
  const std::int64_t steps = (s.n * s.h * s.w + bk - 1) / bk, tile_count = tiles(s, g), iterations = tile_count * steps;
  Splits sp{0, 0, true, true, 0};
  if (!(g == Geometry{128, 128, 1, g.tail}) || iterations >= (std::int64_t{1} << 31) || blocks < 1) return sp;
  const std::int64_t per = std::max<std::int64_t>(8, (iterations + blocks - 1) / blocks);
  std::int64_t slots = 0;
  for (std::int64_t t = 0; t < tile_count; ++t) slots = std::max(slots, stream_k_pieces_of(t, steps, per));
  if (tile_count * slots * tile_floats(g) > (std::int64_t{1} << 24)) return sp;
  sp.count = static_cast<int>((iterations + per - 1) / per);
  sp.steps_per_split = static_cast<int>(per);
  sp.slots = static_cast<int>(slots);
  return sp;
}
// The partial tiles a stream-K plan writes: a piece of every tile that is not one block's whole.
inline std::int64_t stream_k_pieces(const ConvShape& s, const Geometry& g, const Splits& sp) {
  const std::int64_t steps = (s.n * s.h * s.w + bk - 1) / bk, per = sp.steps_per_split;
  std::int64_t pieces = 0;
  for (std::int64_t t = 0, count = tiles(s, g); t < count && per > 0; ++t) {
    const std::int64_t n = stream_k_pieces_of(t, steps, per);
    pieces += n > 1 ? n : 0;
  }
  return pieces;
}
// Its predicted time (the model of predicted_seconds): the busiest SM's k steps of 128 x 128 tiles,
// the partial tiles' DRAM traffic (written once; read back from L2, as the grid's splits) beside dw's,
// and, serial at the end, a block adding its last tile's pieces (`slots` partial tiles moved, the SM's
// resident blocks at once).
inline double stream_k_seconds(const ConvShape& s, const Geometry& g, const Splits& sp,
                               double shared_over_math = plan_model::shared_over_math) {
  namespace m = plan_model;
  const double step = 128.0 * 128 * bk * 2 / m::tf32_flops, blocks = sp.count;
  const double math = blocks * sp.steps_per_split * step * shared_over_math * m::wave_load(sp.count);
  const double tile_bytes = 4.0 * static_cast<double>(tile_floats(g));
  const double dram = (static_cast<double>(stream_k_pieces(s, g, sp)) * tile_bytes +
                       8.0 * static_cast<double>(s.c_out * s.c_in * s.k * s.k)) /
                      m::hbm_bytes / std::min(1.0, blocks / m::sms);
  const double at_once = std::min(2.0, std::ceil(blocks / m::sms));
  return std::max({math, dram, m::launch_seconds}) + at_once * tail_seconds(sp.slots, g);
}
// The plan: stream-K on one block per SM where the model says it beats the grid's best split count
// (128 x 128 tiles that do not divide into whole waves: the U-Net's deep levels), else split_k. (Two
// blocks per SM double the tail and never win by the model.)
inline Splits splits(const ConvShape& s, const Geometry& g) {
  const Splits grid_plan = split_k(s, g);
  const Splits stream = stream_k_of(s, g, 132);
  if (stream.count == 0) return grid_plan;
  const std::int64_t blocks = tiles(s, g), dw_floats = s.c_out * s.c_in * s.k * s.k;
  const double grid_seconds =
      predicted_seconds(blocks, std::int64_t{grid_plan.steps_per_split} * grid_plan.count, grid_plan.count, dw_floats);
  return stream_k_seconds(s, g, stream) < grid_seconds ? stream : grid_plan;
}
inline Splits splits(const ConvShape& s) { return splits(s, geometry(s)); }

// The cluster sum's tail (cluster_sum_wgmma): after the k loop each block reads the (C - 1) / C of
// a partial tile that other blocks hold, at the assumed DSMEM rate, while nothing else runs.
inline double cluster_tail_seconds(std::int64_t count, const Geometry& g) {
  namespace m = plan_model;
  return static_cast<double>(count - 1) / static_cast<double>(count) * 4.0 * static_cast<double>(tile_floats(g)) /
         (m::sm_dsmem_bytes_per_clock * m::clock);
}
// A weight gradient on `blocks` tiles in `groups` clusters of `cluster` splits each (wgmma): the
// GEMM, whose shared memory also moves the cluster sum's own traffic (its partial tile written, 512
// wavefronts, and its own 1/C of the reads: as many k steps as that is at a step's 320 wavefronts,
// 1.25 per m16n8k8-equivalent) and the tail once per wave of resident blocks (two per SM); with
// several groups their partial sums' reduction comes on top (wgmma_splits).
inline double cluster_seconds(std::int64_t blocks, std::int64_t steps, std::int64_t cluster, std::int64_t groups,
                              std::int64_t dw_floats, const Geometry& g) {
  namespace m = plan_model;
  const std::int64_t count = cluster * groups;
  const double per = static_cast<double>((steps + count - 1) / count);
  const double sum_wavefronts =
      4.0 * static_cast<double>(tile_floats(g)) / 128 * (1.0 + 1.0 / static_cast<double>(cluster));
  const double extra_steps = sum_wavefronts / 320.0;
  const double waves = std::ceil(static_cast<double>(blocks * count) / (m::sms * 2));
  return gemm_seconds(blocks, (per + extra_steps) * static_cast<double>(count), count, dw_floats, groups > 1,
                      m::wgmma_shared_over_math) +
         waves * cluster_tail_seconds(cluster, g);
}
// The wgmma kernel's plan (wgmma_tile(g)): splits(s, g), or G clusters of C = 2-8 splits per tile
// (Splits::cluster; G = 1: into dw) where the model says that is faster than splits(s, g) on this
// kernel: cluster_seconds (the GEMM at wgmma's 1.25 wavefronts per m16n8k8-equivalent with the
// cluster sum's own traffic, the DSMEM tail; at least 8 k steps a split) against gemm_seconds at the
// same rate, each with its partial sums' reduction priced by the bytes it moves (the backward adds
// every layer's in one launch, Backend<Cuda>::conv2d_flush_wgrad_reductions, so a layer's share of
// that launch is its bytes, not a launch; predict.py shares it out alike) or splits(s, g)'s
// one-launch tail.
inline Splits wgmma_splits(const ConvShape& s, const Geometry& g) {
  namespace m = plan_model;
  const Splits planned = splits(s, g);
  if (!wgmma_tile(g)) return planned;
  const std::int64_t blocks = tiles(s, g), dw_floats = s.c_out * s.c_in * s.k * s.k;
  const std::int64_t steps = (s.n * s.h * s.w + bk - 1) / bk;
  const auto reduction_share = [&](std::int64_t sums) {  // sums read, dw read and written
    return static_cast<double>(sums + 2) * 4.0 * static_cast<double>(dw_floats) / m::hbm_bytes;
  };
  double best = 0;
  if (planned.stream_k) {
    best = stream_k_seconds(s, g, planned, m::wgmma_shared_over_math);
  } else {
    const std::int64_t c = planned.count, per = planned.steps_per_split;
    best = gemm_seconds(blocks, static_cast<double>(per * c), c, dw_floats, true, m::wgmma_shared_over_math);
    if (c > 1) best += one_launch(c, g, dw_floats) ? tail_seconds(c, g) : reduction_share(c);
  }
  Splits chosen = planned;
  const std::int64_t max_groups = std::min<std::int64_t>(64, (std::int64_t{1} << 24) / (dw_floats > 0 ? dw_floats : 1));
  for (std::int64_t c = 2; c <= 8; ++c) {
    for (std::int64_t groups = 1; groups <= max_groups && c * groups <= steps / 8; ++groups) {
      const std::int64_t count = c * groups, per = (steps + count - 1) / count;
      if ((steps + per - 1) / per != count) continue;  // no split empty
      const double t =
          cluster_seconds(blocks, steps, c, groups, dw_floats, g) + (groups > 1 ? reduction_share(groups) : 0.0);
      if (t < best) {
        best = t;
        chosen = Splits{static_cast<int>(count), static_cast<int>(per), false, false, 0, static_cast<int>(c)};
      }
    }
  }
  return chosen;
}
// The plan before the busiest-SM model (2026-12-07): the fewest splits that give every scheduler a
// warp, one block past a whole wave (ceil((132 x 4 / warps + 1) / tiles): 135 blocks for 9 or 5 tiles,
// 144 for 18, 36, 72 or 144). kiln_bench_gpu times it beside the plan, so a GPU checks the model.
inline Splits past_a_wave(const ConvShape& s, const Geometry& g) {
  const std::int64_t blocks = tiles(s, g), fill = 132 * 4 / g.warps();
  return splits_of(s, g, (fill + blocks) / (blocks > 0 ? blocks : 1));
}
// Floats of the split partial sums: [splits][K*K][Cout][Cin] for the reduction launch, or a padded
// tile per split and tile for the one-launch reduction (reduce_split_k's layout).
inline std::int64_t partial_floats(const ConvShape& s, const Geometry& g, const Splits& sp) {
  if (sp.stream_k) return tiles(s, g) * sp.slots * tile_floats(g);
  if (sp.cluster > 1) return sp.count > sp.cluster ? sp.count / sp.cluster * s.c_out * s.c_in * s.k * s.k : 0;
  if (sp.count <= 1) return 0;
  return sp.one_launch ? sp.count * tiles(s, g) * tile_floats(g) : sp.count * s.c_out * s.c_in * s.k * s.k;
}
// Floats of workspace the weight gradient uses (0 with a single split).
// (A stream-K plan's, or the grid split-K's it falls back to without counters: the larger.)
inline std::int64_t workspace_floats(const ConvShape& s, const Geometry& g) {
  return std::max({partial_floats(s, g, splits(s, g)), partial_floats(s, g, split_k(s, g)),
                   partial_floats(s, g, wgmma_splits(s, g))});
}
inline std::int64_t workspace_floats(const ConvShape& s) { return workspace_floats(s, geometry(s)); }

// The TF32 kernel of a shape on tile g (geometry(s), or single_tap(s): the comparison rows of
// bench/gpu_tf32_cases.hpp): K, tile, channel tail.
template <class Run>
void dispatch(const ConvShape& s, const Geometry& g, Run&& run) {
  if (g.taps == 2)  // K = 3
    return g.bm == 128 ? run.template operator()<3, 128, 64, 2, false>()
                       : run.template operator()<3, 64, 128, 2, false>();
  const int variant = (s.k == 3 ? 4 : 0) + (g.bm == 128 ? 2 : 0) + (g.tail ? 1 : 0);
  switch (variant) {
    case 0:
      return run.template operator()<1, 64, 64, 1, false>();
    case 1:
      return run.template operator()<1, 64, 64, 1, true>();
    case 2:
      return run.template operator()<1, 128, 128, 1, false>();
    case 3:
      return run.template operator()<1, 128, 128, 1, true>();
    case 4:
      return run.template operator()<3, 64, 64, 1, false>();
    case 5:
      return run.template operator()<3, 64, 64, 1, true>();
    case 6:
      return run.template operator()<3, 128, 128, 1, false>();
    default:
      return run.template operator()<3, 128, 128, 1, true>();
  }
}
template <class Run>
void dispatch(const ConvShape& s, Run&& run) {
  dispatch(s, geometry(s), std::forward<Run>(run));
}

// Before a launch of the kernel: its tile may need more than the 48 KiB of dynamic shared memory
// CUDA gives without asking (the 64 x 2*128 pair: 60 KiB). The opt-in belongs to the current device:
// asked once per device (not on every launch of a training step, nor inside a graph's capture once
// an uncaptured step has run).
template <int K, int BM, int CT, int Taps, bool Tail>
void allow_shared() {
  if constexpr (Tile<BM, CT, Taps>::shared_bytes > 48 * 1024)
    kiln::gpu::set_max_dynamic_shared_once<conv2d_mma_wgrad_kernel<K, BM, CT, Taps, Tail>>(
        Tile<BM, CT, Taps>::shared_bytes);
}

template <int K, int CT, int Taps, bool Tail>
void allow_wgmma_shared() {
  constexpr auto bytes = wgmma_shared_bytes<128, CT, Taps>;
  kiln::gpu::set_max_dynamic_shared_once<conv2d_wgmma_wgrad_kernel<K, CT, Taps, Tail>>(bytes);
  if constexpr (CT == 128 && Taps == 1)
    kiln::gpu::set_max_dynamic_shared_once<conv2d_wgmma_wgrad_stream_k_kernel<K, Tail>>(bytes);
}

// A reduction's blocks: one per tile of `pairs` (o, c), at most 4096 (grid-stride past them).
inline int reduce_tile_blocks(const ConvShape& s, std::int64_t pairs) {
  const std::int64_t tiles = (s.c_out * s.c_in + pairs - 1) / pairs;
  return static_cast<int>(tiles < 4096 ? tiles : 4096);
}
// conv2d_mma_wgrad_reduce_kernel's grid (tiles of reduce_pairs), and an entry's blocks in a batched
// reduction (tiles of reduce_batch_pairs(K)).
inline unsigned reduce_blocks(const ConvShape& s) { return static_cast<unsigned>(reduce_tile_blocks(s, reduce_pairs)); }
inline int reduce_batch_blocks(const ConvShape& s) {
  return reduce_tile_blocks(s, reduce_batch_pairs(static_cast<int>(s.k)));
}

inline dim3 grid(const ConvShape& s, const Geometry& g, int split_count) {
  const std::int64_t kk = s.k * s.k;
  return dim3(static_cast<unsigned>((s.c_in + g.ct - 1) / g.ct),
              static_cast<unsigned>((s.c_out + g.bm - 1) / g.bm * ((kk + g.taps - 1) / g.taps)),
              static_cast<unsigned>(split_count));
}
inline dim3 grid(const ConvShape& s, const Geometry& g, const Splits& sp) {
  return sp.stream_k ? dim3(static_cast<unsigned>(sp.count)) : grid(s, g, sp.count);
}

// dw += the weight gradient of y = conv(x, w) from dy on tile g in the splits sp (splits(s, g): the
// plan's; splits_of(s, g, n): n of them). `workspace`: partial_floats(s, g, sp) floats of device
// scratch (may be null when that is 0). `counters`: tiles(s, g) of them at 0 (each launch leaves them
// at 0): where sp says one_launch, the splits are added in the GEMM's launch; null: in the
// reduction's own launch (a stream-K plan, which needs them, runs as split_k(s, g) instead).
// `wgmma`: the warpgroup-MMA variant of the tile (wgmma_tile(g); throws where it is not or where the
// device does not run sm_90a code).
inline void backward_weight(const ConvShape& s, const Geometry& g, const Splits& sp, const float* x, const float* dy,
                            float* dw, float* workspace, kiln::gpu::stream_handle stream = nullptr,
                            unsigned* counters = nullptr, bool wgmma = false) {
  if (!supports(s) || !aligned(dy))
    throw kiln::gpu::Error(
        "conv2d_mma_wgrad: unsupported shape (K must be 1 or 3, H*W a multiple of 4, dy 16-byte aligned, "
        "tensors under 2^31 elements)");
  if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_in == 0 || s.c_out == 0) return;
  const bool pair_tile = (g.bm == 128 && g.ct == 64) || (g.bm == 64 && g.ct == 128);
  if (g.taps == 2 && !(s.k == 3 && pair_tile && !g.tail && s.c_in >= g.ct))
    throw kiln::gpu::Error(
        "conv2d_mma_wgrad: a tap pair is 128 x 2*64 or 64 x 2*128, for K = 3 and Cin at least its channels per tap");
  if (wgmma && !wgmma_tile(g)) throw kiln::gpu::Error("conv2d_wgmma_wgrad: the tile is 128 x 128 or 128 x 2*64");
  if (wgmma && !kiln::gpu::wgmma::runs_here())
    throw kiln::gpu::Error(
        "conv2d_wgmma_wgrad: this device does not run the binary's sm_90a code (wgmma needs an "
        "H100/H200 and KILN_CUDA_ARCHITECTURES with 90a)");
  if (sp.stream_k && counters == nullptr)
    return backward_weight(s, g, split_k(s, g), x, dy, dw, workspace, stream, nullptr, wgmma);
  if (sp.stream_k && !(g == Geometry{128, 128, 1, g.tail}))
    throw kiln::gpu::Error("conv2d_mma_wgrad: stream-K runs on 128 x 128 tiles only");
  const bool on_chip = sp.cluster > 1;  // the splits added in clusters (wgmma_splits)
  if (on_chip && !(wgmma && !sp.stream_k && sp.count % sp.cluster == 0 && sp.cluster <= 8))
    throw kiln::gpu::Error(
        "conv2d_wgmma_wgrad: a cluster plan runs on the wgmma kernel, whole clusters of 2-8 splits of a tile");
  const int groups = on_chip ? sp.count / sp.cluster : 0;  // the clusters' partial sums (1: into dw)
  const bool one = sp.count > 1 && sp.one_launch && counters != nullptr && !on_chip;
  float* out = sp.count > 1 && !one && !(on_chip && groups == 1) ? workspace : dw;
  dispatch(s, g, [&]<int K, int BM, int CT, int Taps, bool Tail>() {
    using T = Tile<BM, CT, Taps>;
    bool launched = false;
    if constexpr (BM == 128 && CT * Taps == 128) {
      if (wgmma) {
        constexpr auto bytes = wgmma_shared_bytes<BM, CT, Taps>;
        allow_wgmma_shared<K, CT, Taps, Tail>();
        if constexpr (CT == 128) {
          if (sp.stream_k) {
            KILN_LAUNCH((conv2d_wgmma_wgrad_stream_k_kernel<K, Tail>), grid(s, g, sp), dim3(T::threads), bytes, stream,
                        s, x, dy, dw, sp.steps_per_split, workspace, counters, sp.slots);
            return;
          }
        }
        if (on_chip) {
          KILN_LAUNCH_CLUSTER((conv2d_wgmma_wgrad_kernel<K, CT, Taps, Tail>), grid(s, g, sp), dim3(T::threads),
                              dim3(1, 1, static_cast<unsigned>(sp.cluster)), bytes, stream, s, x, dy, out,
                              sp.steps_per_split, static_cast<float*>(nullptr), static_cast<unsigned*>(nullptr));
          if (groups > 1)
            KILN_LAUNCH(conv2d_mma_wgrad_reduce_kernel<K>, dim3(reduce_blocks(s)), dim3(reduce_block_threads(K)), 0,
                        stream, s, static_cast<const float*>(workspace), groups, dw);
          return;
        }
        KILN_LAUNCH((conv2d_wgmma_wgrad_kernel<K, CT, Taps, Tail>), grid(s, g, sp), dim3(T::threads), bytes, stream, s,
                    x, dy, out, sp.steps_per_split, one ? workspace : nullptr, one ? counters : nullptr);
        launched = true;
      }
    }
    if (!launched) {
      allow_shared<K, BM, CT, Taps, Tail>();
      if constexpr (BM == 128 && CT == 128 && Taps == 1) {
        if (sp.stream_k) {
          KILN_LAUNCH((conv2d_mma_wgrad_stream_k_kernel<K, BM, CT, Taps, Tail>), grid(s, g, sp), dim3(T::threads),
                      T::shared_bytes, stream, s, x, dy, dw, sp.steps_per_split, workspace, counters, sp.slots);
          return;
        }
      }
      KILN_LAUNCH((conv2d_mma_wgrad_kernel<K, BM, CT, Taps, Tail>), grid(s, g, sp), dim3(T::threads), T::shared_bytes,
                  stream, s, x, dy, out, sp.steps_per_split, one ? workspace : nullptr, one ? counters : nullptr);
    }
    if (sp.count > 1 && !one)
      KILN_LAUNCH(conv2d_mma_wgrad_reduce_kernel<K>, dim3(reduce_blocks(s)), dim3(reduce_block_threads(K)), 0, stream,
                  s, static_cast<const float*>(workspace), sp.count, dw);
  });
}

// ... in the plan's splits, or with `unsplit` one (the kernel adds to dw itself); `workspace`:
// workspace_floats(s, g) floats.
inline void backward_weight(const ConvShape& s, const Geometry& g, const float* x, const float* dy, float* dw,
                            float* workspace, bool unsplit = false, kiln::gpu::stream_handle stream = nullptr,
                            unsigned* counters = nullptr) {
  backward_weight(s, g, unsplit ? splits_of(s, g, 1) : splits(s, g), x, dy, dw, workspace, stream, counters);
}
// ... on the shape's tile (geometry(s)).
inline void backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw, float* workspace,
                            bool unsplit = false, kiln::gpu::stream_handle stream = nullptr,
                            unsigned* counters = nullptr) {
  backward_weight(s, geometry(s), x, dy, dw, workspace, unsplit, stream, counters);
}

}  // namespace mma_wgrad

}  // namespace kiln::cuda::kernels
