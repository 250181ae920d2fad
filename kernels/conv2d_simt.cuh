#pragma once
// Conv2d (stride 1, zero padding K/2, NCHW, K = 1 or 3) as a strict-fp32 SIMT implicit GEMM in
// the style of CUTLASS's SIMT sgemm: Backend<Cuda>'s MathMode::strict_fp32 forward and input
// gradient wherever simt_conv::supports() holds and the layer's workspace has room for the packed
// weights (else the direct kernels of conv2d.cuh run). fp32 multiply-adds only: the result is a
// sum of the same products as the CPU reference in another order.
//
// The GEMM, as conv2d_mma.cuh's (pixels as the long M dimension):
//   D[M = N*H*W pixels][N = Cout] = A[M][Kg] * B[Kg][Cout],  Kg = K*K * cin_pad,
//   k = t * cin_pad + c (tap t = u*K + v outer, channel c inner, cin_pad = Cin rounded up to 8),
//   A(p, k) = x[img][c][py+u-P][px+v-P] (0 outside the image and for c >= Cin),
//   B(k, o) = wp[k][o]: the weights packed once per call by conv2d_simt_pack_weights_kernel,
//             k-major with the output channels contiguous (cout_pad = Cout rounded up to 4, zeros
//             after Cout), so a k step's B rows are 16-byte aligned float4 loads.
// The input gradient is the same kernel on transposed(s) (Cin and Cout swapped) with the weights
// transposed and rotated 180 degrees by the packing kernel's Dgrad variant, as in conv2d_mma.cuh.
//
// Tiling: a block of 256 threads computes 128 pixels x BN output channels (BN = 128 or 64); thread
// (tm = tid % 16, tn = tid / 16) holds 8 x BN/16 accumulators: pixels tm*4 + {0..3} and
// 64 + tm*4 + {0..3}, channels tn*4 + {0..3} (and 64 + tn*4 + {0..3} when BN = 128). A k step is 8
// (one tap, 8 channels). Shared memory holds two stages of A [8][128] and B [8][BN]: while the FFMAs
// run on one stage, the next step's global loads are in flight into registers, stored into the other
// stage after the FFMAs; one __syncthreads per step (the stage written at step s was last read at
// step s-1, before the previous barrier). The k loop is unrolled by the two stages, so stage offsets
// are immediates.
//   Fragment reads: per k, two float4 of A (tm*4, 64 + tm*4) and one or two of B; a quarter warp's 8
//   A reads are 8 consecutive 16-byte chunks (conflict-free), its B reads one or two addresses
//   (broadcast).
//   Stage writes: A as 4 scalar stores per thread (column m = tid % 128, rows (tid / 128)*4 + j: a
//   warp writes 32 consecutive floats), B as one float4 per thread (row tid / (BN/4)).
//   Global loads: A per thread 4 floats of one pixel (32 consecutive pixels per warp and channel:
//   coalesced except at row ends), B one float4 of a packed row.
// Offsets are 32-bit and precomputed outside the k loop (supports() keeps tensors under 2^31
// elements); the loop advances (tap, channel) with adds. Epilogue: D + bias written as float4 along
// the pixels when H*W % 4 == 0 (4 pixels of one image, 16-byte aligned), else one float at a time.
// SASS figures and predicted times: docs/kernels.md "Strict fp32 SIMT implicit GEMM".
#include <cstddef>
#include <cstdint>

#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"
#include "vector_access.cuh"

namespace kiln::cuda::kernels {

namespace simt_conv {

inline constexpr int bm = 128;  // pixels per block tile
inline constexpr int bk = 8;    // k per step: 8 channels of one tap
inline constexpr int threads = 256;

template <int BN>
struct Tile {
  static_assert(BN == 64 || BN == 128, "block tiles are 128 x 64 or 128 x 128");
  static constexpr int tn = BN / 16;  // channels per thread (two float4 groups when 8)
  static constexpr int a_floats = bk * bm, b_floats = bk * BN, stage_floats = a_floats + b_floats;
  static constexpr std::size_t shared_bytes = sizeof(float) * 2 * stage_floats;
  static constexpr int b_loaders = b_floats / 4;  // threads that copy one float4 of B per step
  static_assert(bm * bk == 4 * threads && b_loaders <= threads, "whole copies per thread");
};

__host__ __device__ inline constexpr int channels_padded(std::int64_t c) { return static_cast<int>((c + 7) / 8 * 8); }
__host__ __device__ inline constexpr int outputs_padded(std::int64_t c) { return static_cast<int>((c + 3) / 4 * 4); }
inline std::int64_t packed_weight_floats(const ConvShape& s) {
  return s.k * s.k * channels_padded(s.c_in) * static_cast<std::int64_t>(outputs_padded(s.c_out));
}

// The input gradient as a forward convolution: dy (Cout channels) in, dx (Cin channels) out.
inline ConvShape transposed(const ConvShape& s) { return {s.n, s.c_out, s.c_in, s.h, s.w, s.k}; }

// Whether the kernel takes this shape: K = 1 or 3, 32-bit offsets enough (the input gradient's
// transposed shape included).
inline bool supports(const ConvShape& s) {
  const std::int64_t limit = std::int64_t{1} << 31;
  return (s.k == 1 || s.k == 3) && s.n * s.c_in * s.h * s.w < limit && s.n * s.c_out * s.h * s.w < limit &&
         packed_weight_floats(s) < limit && packed_weight_floats(transposed(s)) < limit;
}

// Block tile width: 128 x 128 where Cout > 64 and that still gives every SM of an H100 (132) a
// block, else 128 x 64 (less padding waste on narrow layers, twice the blocks on small images).
inline int block_n(const ConvShape& s) {
  const std::int64_t m_tiles = (s.n * s.h * s.w + bm - 1) / bm;
  return s.c_out > 64 && m_tiles * ((s.c_out + 127) / 128) >= 132 ? 128 : 64;
}

// One k step of a thread's 8 x TN accumulators from a shared-memory stage, shared by the forward and
// the weight gradient (conv2d_simt_wgrad.cuh): as / bs point at the thread's A rows (tm*4) and B
// columns (tn*4) of k = 0; A_ROW / B_ROW are the stage row strides in floats.
template <int TN, int A_ROW, int B_ROW>
__device__ __forceinline__ void fma_step(const float* as, const float* bs, float (&acc)[8][TN]) {
  KILN_UNROLL
  for (int k = 0; k < bk; ++k) {
    const float4 a0 = *reinterpret_cast<const float4*>(as + k * A_ROW);
    const float4 a1 = *reinterpret_cast<const float4*>(as + k * A_ROW + 64);
    const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
    float b[TN];
    const float4 b0 = *reinterpret_cast<const float4*>(bs + k * B_ROW);
    b[0] = b0.x;
    b[1] = b0.y;
    b[2] = b0.z;
    b[3] = b0.w;
    if constexpr (TN == 8) {
      const float4 b1 = *reinterpret_cast<const float4*>(bs + k * B_ROW + 64);
      b[4] = b1.x;
      b[5] = b1.y;
      b[6] = b1.z;
      b[7] = b1.w;
    }
    KILN_UNROLL
    for (int i = 0; i < 8; ++i) {
      KILN_UNROLL
      for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

}  // namespace simt_conv

// The packed B of the forward on shape fs: wp[(t * cin_pad + c) * cout_pad + o] with
//   forward (Dgrad = false, fs = s):        w[o][c][t]           (w is [Cout][Cin][K*K])
//   input gradient (Dgrad = true, fs = transposed(s)): w[c][o][K*K-1-t] (w is [fs.c_in][fs.c_out][K*K]),
// zero for c >= fs.c_in or o >= fs.c_out. Grid-stride, 32-bit indices (supports() bounds them).
template <bool Dgrad>
__global__ void conv2d_simt_pack_weights_kernel(ConvShape fs, const float* w, float* wp) {
  const int KK = static_cast<int>(fs.k * fs.k);
  const int cin = static_cast<int>(fs.c_in), cout = static_cast<int>(fs.c_out);
  const int cin_pad = simt_conv::channels_padded(fs.c_in), cout_pad = simt_conv::outputs_padded(fs.c_out);
  const int count = KK * cin_pad * cout_pad;
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < count;
       i += static_cast<int>(gridDim.x * blockDim.x)) {
    const int o = i % cout_pad, row = i / cout_pad, c = row % cin_pad, t = row / cin_pad;
    float value = 0.0f;
    if (c < cin && o < cout) value = Dgrad ? w[(c * cout + o) * KK + (KK - 1 - t)] : w[(o * cin + c) * KK + t];
    wp[i] = value;
  }
}

// y = conv(x, w) + b (bias may be null) from the packed weights. grid (ceil(N*H*W / 128),
// ceil(Cout / BN)), block simt_conv::threads, dynamic shared memory Tile<BN>::shared_bytes.
template <int K, int BN>
__global__ void __launch_bounds__(simt_conv::threads, 2)
    conv2d_simt_forward_kernel(ConvShape s, const float* x, const float* wp, const float* bias, float* y) {
  using Tl = simt_conv::Tile<BN>;
  using simt_conv::bk;
  using simt_conv::bm;
  constexpr int P = K / 2, TN = Tl::tn, BQ = BN / 4;  // BQ: float4 per B row
  const int H = static_cast<int>(s.h), W = static_cast<int>(s.w), HW = H * W;
  const int cin = static_cast<int>(s.c_in), cout = static_cast<int>(s.c_out);
  const int pixels = static_cast<int>(s.n) * HW;
  const int cin_pad = simt_conv::channels_padded(s.c_in), cout_pad = simt_conv::outputs_padded(s.c_out);
  const int k_steps = K * K * (cin_pad / bk);
  const int tid = static_cast<int>(threadIdx.x), tm = tid % 16, tn = tid / 16;
  const int m0 = static_cast<int>(blockIdx.x) * bm, n0 = static_cast<int>(blockIdx.y) * BN;
  float* shared = kiln::gpu::dynamic_shared<float>();

  // ---- per-thread copy state, computed once ----
  // A: pixel column am = tid % 128, channels kb + j (j < 4) of each step.
  const int am = tid % bm, kb = (tid / bm) * 4;
  int a_py, a_px, a_offset;
  {
    const int p = m0 + am, img = p / HW, hw = p - img * HW;
    a_py = p < pixels ? hw / W : -(1 << 20);  // a pixel past the end is outside every tap
    a_px = hw % W;
    a_offset = (img * cin + kb) * HW + hw;  // x[img][kb][py][px]
  }
  // B: one float4 of row br, columns bq*4 .. bq*4+3 (threads past Tl::b_loaders copy nothing).
  const int br = tid / BQ, bq = tid % BQ;
  const bool b_loader = tid < Tl::b_loaders && n0 + bq * 4 < cout_pad;
  const float* b_src = wp + (b_loader ? br * cout_pad + n0 + bq * 4 : 0);
  const int b_step = bk * cout_pad;
  // Where this thread's copies land in a stage.
  const int a_dst = kb * bm + am, b_dst = Tl::a_floats + br * BN + bq * 4;

  // The step being loaded: tap (u, v), first channel c0.
  int c0 = 0, u = 0, v = 0;
  float a_next[4];
  Floats<4> b_next;  // one 16-byte access (vector_access.cuh: also one access on the emulator)
  auto load_global = [&]() {
    const int iy = a_py + u - P, ix = a_px + v - P;
    const bool tap_ok =
        static_cast<unsigned>(iy) < static_cast<unsigned>(H) && static_cast<unsigned>(ix) < static_cast<unsigned>(W);
    const float* src = x + (a_offset + c0 * HW + (u - P) * W + (v - P));
    KILN_UNROLL
    for (int j = 0; j < 4; ++j) a_next[j] = tap_ok && c0 + kb + j < cin ? src[j * HW] : 0.0f;
    b_next = b_loader ? load_floats<4>(b_src) : Floats<4>{{0.0f, 0.0f, 0.0f, 0.0f}};
    b_src += b_step;
    c0 += bk;
    if (c0 >= cin_pad) {  // next tap
      c0 = 0;
      if (++v == K) {
        v = 0;
        ++u;
      }
    }
  };
  auto store_shared = [&](int stage) {
    float* st = shared + stage * Tl::stage_floats;
    KILN_UNROLL
    for (int j = 0; j < 4; ++j) st[a_dst + j * bm] = a_next[j];
    if (tid < Tl::b_loaders) store_floats<4>(st + b_dst, b_next);
  };

  float acc[8][TN];
  KILN_UNROLL
  for (int i = 0; i < 8; ++i) {
    KILN_UNROLL
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
  }
  auto compute = [&](int stage) {
    simt_conv::fma_step<TN, bm, BN>(shared + stage * Tl::stage_floats + tm * 4,
                                    shared + stage * Tl::stage_floats + Tl::a_floats + tn * 4, acc);
  };
  // One step on stage `stage`: the next step's loads go out before the FFMAs and land in the other
  // stage after them.
  auto step = [&](int stage, int k_step) {
    const bool more = k_step + 1 < k_steps;
    if (more) load_global();
    compute(stage);
    if (more) {
      store_shared(stage ^ 1);
      __syncthreads();
    }
  };

  load_global();
  store_shared(0);
  __syncthreads();
  for (int k_step = 0; k_step < k_steps; k_step += 2) {
    step(0, k_step);
    if (k_step + 1 < k_steps) step(1, k_step + 1);
  }

  // ---- epilogue: y[img][o][hw] = D + bias ----
  float bias_of[TN];
  KILN_UNROLL
  for (int j = 0; j < TN; ++j) {
    const int o = n0 + (j / 4) * 64 + tn * 4 + j % 4;
    bias_of[j] = bias != nullptr && o < cout ? bias[o] : 0.0f;
  }
  const bool vector_out = HW % 4 == 0;
  KILN_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int p0 = m0 + h * 64 + tm * 4;
    if (p0 >= pixels) continue;
    if (vector_out) {  // pixels p0 .. p0+3: one image, 16-byte aligned
      const int img = p0 / HW, hw = p0 - img * HW;
      float* out = y + img * cout * HW + hw;
      KILN_UNROLL
      for (int j = 0; j < TN; ++j) {
        const int o = n0 + (j / 4) * 64 + tn * 4 + j % 4;
        if (o < cout)
          store_floats<4>(out + o * HW, Floats<4>{{acc[h * 4][j] + bias_of[j], acc[h * 4 + 1][j] + bias_of[j],
                                                   acc[h * 4 + 2][j] + bias_of[j], acc[h * 4 + 3][j] + bias_of[j]}});
      }
    } else {
      KILN_UNROLL
      for (int r = 0; r < 4; ++r) {
        const int p = p0 + r;
        if (p >= pixels) break;
        const int img = p / HW, hw = p - img * HW;
        float* out = y + img * cout * HW + hw;
        KILN_UNROLL
        for (int j = 0; j < TN; ++j) {
          const int o = n0 + (j / 4) * 64 + tn * 4 + j % 4;
          if (o < cout) out[o * HW] = acc[h * 4 + r][j] + bias_of[j];
        }
      }
    }
  }
}

}  // namespace kiln::cuda::kernels
