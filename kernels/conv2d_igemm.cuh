#pragma once
// Conv2d (stride 1, zero padding K/2, NCHW, K = 1 or 3) as implicit GEMMs on tensor cores: TF32
// operands (rounded with __float_to_tf32, round-to-nearest), fp32 accumulation. The strict-fp32
// kernels of conv2d.cuh stay the reference; Backend<Cuda> picks these under MathMode::tf32
// (include/kiln/cuda/math_mode.hpp). CPU oracle: kiln::cpu::reference::conv2d_forward/backward.
//
// The three passes are one GEMM  D[M x N] = A[M x Kg] * B[Kg x N]  whose operands are gathered
// from the tensors on the fly (no im2col buffer), with t = u * K + v the filter tap, P = K / 2:
//
//   pass             M      N          Kg         A(m, k)                          B(k, j)
//   forward          Cout   N*H*W      Cin*K*K    w[o][c][t]      (k = c*KK + t)   x[n][c][y+u-P][x+v-P]   (j = pixel
//   n,y,x) input gradient   Cin    N*H*W      Cout*K*K   w[o][c][t]      (m = c, k = o*KK+t)  dy[n][o][y+P-u][x+P-v]
//   weight gradient  Cout   Cin*K*K    N*H*W      dy[n][o][y][x]  (k = pixel)      x[n][c][y+u-P][x+v-P]   (j = c*KK +
//   t)
//
// Tiling: a block of 128 threads (4 warps, 2 x 2) computes a 64 x 64 tile of D; each warp a 32 x 32
// quarter as 2 x 2 wmma m16n16k8 accumulators. Kg is walked in steps of 16 through two shared-
// memory stages filled with cp.async (4-byte copies, zero-filled outside the tensors and past the
// edges of M, N, Kg): while the tensor cores work on stage s, the copies for stage s^1 are in
// flight (double buffering). Shared rows are padded by 4 floats (bank conflicts; wmma needs 32-byte
// aligned tiles and ldm a multiple of 4 floats). The epilogue goes through shared memory so that
// global stores are coalesced along pixels (forward / input gradient: y = D + bias or dx = D,
// overwritten) or along the weights (weight gradient: dw += D).
//
// The weight gradient's Kg = N*H*W is long and its M x N small, so it is split over blockIdx.z
// (split-K): each split writes its partial D into a workspace, and conv2d_igemm_reduce_splits_kernel
// adds the splits to dw in a fixed order (deterministic, no atomics). With one split the kernel
// accumulates into dw directly.
#include <cstddef>
#include <cstdint>

#include "block_reduce.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

namespace igemm {
inline constexpr int bm = 64, bn = 64, bk = 16;  // block tile of D and the k step
inline constexpr int threads = 128;              // 4 warps as 2 x 2, each 32 x 32
inline constexpr int a_ld = bk + 4;              // A stage [bm][a_ld]
inline constexpr int b_ld = bn + 4;              // B stage [bk][b_ld]
inline constexpr int c_ld = bn + 4;              // epilogue tile [bm][c_ld] (reuses the stages)
inline constexpr int stage_floats = bm * a_ld + bk * b_ld;
inline constexpr int shared_floats = 2 * stage_floats > bm* c_ld ? 2 * stage_floats : bm* c_ld;
inline constexpr std::size_t shared_bytes = sizeof(float) * shared_floats;
static_assert(bm * bk == 8 * threads && bk * bn == 8 * threads,
              "each thread copies 8 elements of A and of B per stage");
static_assert((stage_floats * 4) % 32 == 0 && (bm * a_ld * 4) % 32 == 0, "wmma tiles must stay 32-byte aligned");
static_assert(shared_bytes <= 48 * 1024, "fits the default dynamic shared memory limit");

enum class Pass { forward, backward_data, backward_weight };

__host__ __device__ inline constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// The GEMM of a pass (see the table above).
struct Gemm {
  std::int64_t m, n, k;
};
__host__ __device__ inline Gemm gemm_of(const ConvShape& s, Pass p) {
  const std::int64_t kk = s.k * s.k, pixels = s.n * s.h * s.w;
  switch (p) {
    case Pass::forward:
      return {s.c_out, pixels, s.c_in * kk};
    case Pass::backward_data:
      return {s.c_in, pixels, s.c_out * kk};
    case Pass::backward_weight:
      return {s.c_out, s.c_in * kk, pixels};
  }
  return {0, 0, 0};
}

// Split-K of the weight gradient: enough blocks to fill a large GPU (~512), at least 8 k steps
// (128 pixels) per split, at most 16M floats (64 MiB) of partial sums; no split is empty.
struct Splits {
  int count = 1;
  int k_tiles_per_split = 1;
};
inline Splits weight_grad_splits(const ConvShape& s) {
  const Gemm g = gemm_of(s, Pass::backward_weight);
  const std::int64_t tiles = ceil_div(g.m, bm) * ceil_div(g.n, bn), k_tiles = ceil_div(g.k, bk);
  std::int64_t want = 512 / tiles, by_k = k_tiles / 8, by_workspace = (std::int64_t{1} << 24) / (g.m * g.n);
  std::int64_t count = want < by_k ? want : by_k;
  if (by_workspace < count) count = by_workspace;
  if (count > 1024) count = 1024;
  if (count < 1) count = 1;
  Splits sp;
  sp.k_tiles_per_split = static_cast<int>(ceil_div(k_tiles, count));
  sp.count = static_cast<int>(ceil_div(k_tiles, sp.k_tiles_per_split));
  if (sp.count < 1) sp.count = 1;
  return sp;
}
// Floats of workspace the weight gradient uses (0 with a single split).
inline std::int64_t weight_grad_workspace_floats(const ConvShape& s) {
  const Splits sp = weight_grad_splits(s);
  const Gemm g = gemm_of(s, Pass::backward_weight);
  return sp.count > 1 ? sp.count * g.m * g.n : 0;
}

// Copies the k-th step's A and B tiles of the block's D tile into one stage (cp.async, 8 + 8 per thread).
// a_src / b_src: forward w / x, input gradient w / dy, weight gradient dy / x.
template <int K, Pass P>
__device__ __forceinline__ void load_stage(float* stage, const ConvShape& s, const Gemm& g, const float* a_src,
                                           const float* b_src, std::int64_t m0, std::int64_t j0, std::int64_t k0,
                                           int tid) {
  constexpr int KK = K * K, PAD = K / 2;
  float* as = stage;              // [bm][a_ld]
  float* bs = stage + bm * a_ld;  // [bk][b_ld]
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w);
  const std::int64_t HW = s.h * s.w;
  if constexpr (P != Pass::backward_weight) {
    // A: thread -> row tid / 2, 8 consecutive k from (tid % 2) * 8.
    const int row = tid / 2, kc = tid % 2 * 8;
    const std::int64_t m = m0 + row;
    KILN_UNROLL
    for (int e = 0; e < 8; ++e) {
      const std::int64_t k = k0 + kc + e;
      const bool valid = m < g.m && k < g.k;
      std::int64_t offset = 0;
      if constexpr (P == Pass::forward)
        offset = m * g.k + k;  // w[o = m][k = c*KK + t]
      else
        offset = ((k / KK) * s.c_in + m) * KK + k % KK;  // w[o = k / KK][c = m][t = k % KK]
      kiln::gpu::cp_async<4>(&as[row * a_ld + kc + e], valid ? a_src + offset : a_src, valid);
    }
    // B: thread -> pixel column tid % 64, 8 consecutive k from (tid / 64) * 8.
    const int col = tid % bn, kr = tid / bn * 8;
    const std::int64_t j = j0 + col;
    const bool pixel_ok = j < g.n;
    const std::int64_t img = pixel_ok ? j / HW : 0;
    const int hw = static_cast<int>(pixel_ok ? j % HW : 0), py = hw / W, px = hw % W;
    const std::int64_t channels = P == Pass::forward ? s.c_in : s.c_out;
    KILN_UNROLL
    for (int e = 0; e < 8; ++e) {
      const std::int64_t k = k0 + kr + e;
      const std::int64_t c = k / KK;
      const int t = static_cast<int>(k % KK), u = t / K, v = t % K;
      // forward: x[img][c][py+u-P][px+v-P]; input gradient: dy[img][o=c][py+P-u][px+P-v]
      const int iy = P == Pass::forward ? py + u - PAD : py + PAD - u;
      const int ix = P == Pass::forward ? px + v - PAD : px + PAD - v;
      const bool valid = pixel_ok && k < g.k && iy >= 0 && iy < H && ix >= 0 && ix < W;
      const std::int64_t offset = ((img * channels + c) * H + iy) * W + ix;
      kiln::gpu::cp_async<4>(&bs[(kr + e) * b_ld + col], valid ? b_src + offset : b_src, valid);
    }
  } else {
    // Both operands: thread -> pixel q = k0 + tid % 16 (consecutive threads, consecutive pixels).
    const int ql = tid % bk, r0 = tid / bk;  // rows of A / columns of B: r0 + 8 e
    const std::int64_t q = k0 + ql;
    const bool pixel_ok = q < g.k;
    const std::int64_t img = pixel_ok ? q / HW : 0;
    const int hw = static_cast<int>(pixel_ok ? q % HW : 0), py = hw / W, px = hw % W;
    KILN_UNROLL
    for (int e = 0; e < 8; ++e) {
      // A(o, q) = dy[img][o][hw]
      const int row = r0 + 8 * e;
      const std::int64_t o = m0 + row;
      const bool valid = pixel_ok && o < g.m;
      kiln::gpu::cp_async<4>(&as[row * a_ld + ql], valid ? a_src + (img * s.c_out + o) * HW + hw : a_src, valid);
    }
    KILN_UNROLL
    for (int e = 0; e < 8; ++e) {
      // B(q, j = c*KK + t) = x[img][c][py+u-P][px+v-P]
      const int cl = r0 + 8 * e;
      const std::int64_t j = j0 + cl, c = j / KK;
      const int t = static_cast<int>(j % KK), u = t / K, v = t % K;
      const int iy = py + u - PAD, ix = px + v - PAD;
      const bool valid = pixel_ok && j < g.n && iy >= 0 && iy < H && ix >= 0 && ix < W;
      const std::int64_t offset = ((img * s.c_in + c) * H + iy) * W + ix;
      kiln::gpu::cp_async<4>(&bs[ql * b_ld + cl], valid ? b_src + offset : b_src, valid);
    }
  }
}

// One block: the D tile (blockIdx.y: rows m0.., blockIdx.x: columns j0..) over the k steps of
// split blockIdx.z, then the pass's epilogue.
template <int K, Pass P>
__device__ __forceinline__ void conv_gemm_block(const ConvShape& s, const float* a_src, const float* b_src,
                                                const float* bias, float* out, int k_tiles_per_split) {
  namespace wmma = kiln::gpu::wmma;
  const Gemm g = gemm_of(s, P);
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, wm = warp / 2, wn = warp % 2;
  const std::int64_t m0 = std::int64_t{blockIdx.y} * bm, j0 = std::int64_t{blockIdx.x} * bn;
  const std::int64_t k_tiles = ceil_div(g.k, bk);
  const std::int64_t kt_begin = std::int64_t{blockIdx.z} * k_tiles_per_split;
  const std::int64_t kt_end = kt_begin + k_tiles_per_split < k_tiles ? kt_begin + k_tiles_per_split : k_tiles;
  float* shared = kiln::gpu::dynamic_shared<float>();  // two stages, later the epilogue tile

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
  KILN_UNROLL
  for (int i = 0; i < 2; ++i) {
    KILN_UNROLL
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  }

  if (kt_begin < kt_end) load_stage<K, P>(shared, s, g, a_src, b_src, m0, j0, kt_begin * bk, tid);
  kiln::gpu::cp_async_commit();
  for (std::int64_t kt = kt_begin; kt < kt_end; ++kt) {
    const int stage = static_cast<int>((kt - kt_begin) & 1);
    if (kt + 1 < kt_end)  // prefetch the next step into the other stage
      load_stage<K, P>(shared + (stage ^ 1) * stage_floats, s, g, a_src, b_src, m0, j0, (kt + 1) * bk, tid);
    kiln::gpu::cp_async_commit();
    kiln::gpu::cp_async_wait<1>();  // this thread's copies of step kt have landed ...
    __syncthreads();                // ... and everyone's
    const float* as = shared + stage * stage_floats;
    const float* bs = as + bm * a_ld;
    KILN_UNROLL
    for (int kk = 0; kk < bk; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
      KILN_UNROLL
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], as + (wm * 32 + i * 16) * a_ld + kk, a_ld);
        KILN_UNROLL
        for (int e = 0; e < fa[i].num_elements; ++e) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
      }
      KILN_UNROLL
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(fb[j], bs + kk * b_ld + wn * 32 + j * 16, b_ld);
        KILN_UNROLL
        for (int e = 0; e < fb[j].num_elements; ++e) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
      }
      KILN_UNROLL
      for (int i = 0; i < 2; ++i) {
        KILN_UNROLL
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
    }
    __syncthreads();  // the stage is overwritten by the prefetch of the next iteration
  }
  kiln::gpu::cp_async_wait<0>();  // nothing may land in the epilogue tile later
  __syncthreads();

  float* cs = shared;  // [bm][c_ld]
  KILN_UNROLL
  for (int i = 0; i < 2; ++i) {
    KILN_UNROLL
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(cs + (wm * 32 + i * 16) * c_ld + wn * 32 + j * 16, acc[i][j], c_ld, wmma::mem_row_major);
  }
  __syncthreads();
  const std::int64_t HW = s.h * s.w;
  for (int e = tid; e < bm * bn; e += threads) {
    const int row = e / bn, col = e % bn;  // consecutive threads: consecutive columns
    const std::int64_t m = m0 + row, j = j0 + col;
    if (m >= g.m || j >= g.n) continue;
    const float d = cs[row * c_ld + col];
    if constexpr (P == Pass::backward_weight) {
      if (gridDim.z == 1)
        out[m * g.n + j] += d;  // dw[o][c*KK + t] +=
      else
        out[std::int64_t{blockIdx.z} * g.m * g.n + m * g.n + j] = d;  // this split's partial sum
    } else {
      // y[img][m][hw] = D + bias (forward) / dx[img][m][hw] = D
      out[(j / HW * g.m + m) * HW + j % HW] = d + (bias != nullptr ? bias[m] : 0.0f);
    }
  }
}

}  // namespace igemm

// y = conv(x, w) + b. grid (ceil(N*H*W / 64), ceil(Cout / 64)), block 128, shared igemm::shared_bytes.
template <int K>
__global__ void conv2d_igemm_forward_kernel(ConvShape s, const float* x, const float* w, const float* b, float* y) {
  igemm::conv_gemm_block<K, igemm::Pass::forward>(s, w, x, b, y, 1 << 30);
}

// dx = conv of dy with the flipped, transposed weights (overwritten).
// grid (ceil(N*H*W / 64), ceil(Cin / 64)), block 128, shared igemm::shared_bytes.
template <int K>
__global__ void conv2d_igemm_backward_data_kernel(ConvShape s, const float* w, const float* dy, float* dx) {
  igemm::conv_gemm_block<K, igemm::Pass::backward_data>(s, w, dy, nullptr, dx, 1 << 30);
}

// dw += sum over pixels of dy x (one split: into dw; several: partial sums into `out` = workspace
// [splits][Cout][Cin*K*K]). grid (ceil(Cin*K*K / 64), ceil(Cout / 64), splits), block 128.
template <int K>
__global__ void conv2d_igemm_backward_weight_kernel(ConvShape s, const float* x, const float* dy, float* out,
                                                    int k_tiles_per_split) {
  igemm::conv_gemm_block<K, igemm::Pass::backward_weight>(s, dy, x, nullptr, out, k_tiles_per_split);
}

// dw[i] += sum over splits of partial[split][i], splits in order (deterministic). Grid-stride.
template <class Float>
__global__ void conv2d_igemm_reduce_splits_kernel(const Float* partial, int splits, std::int64_t count, Float* dw) {
  KILN_GRID_STRIDE_LOOP(i, count) {
    Float sum = 0;
    for (int sp = 0; sp < splits; ++sp) sum += partial[sp * count + i];
    dw[i] += sum;
  }
}

}  // namespace kiln::cuda::kernels
