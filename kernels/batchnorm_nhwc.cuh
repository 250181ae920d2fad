#pragma once
// BatchNorm + ReLU that also write the NHWC BF16 copy a BF16 convolution reads (conv2d_mma_bf16.cuh):
//   batchnorm_apply_nhwc_kernel        y as batchnorm_apply_kernel<V, true>, and copy[q][c] = bf16(y)
//   batchnorm_backward_dx_nhwc_kernel  dx as batchnorm_backward_dx_kernel<V, true>, and copy = bf16(dx)
// where the next convolution reads the BatchNorm + ReLU output (its x) or the previous one reads
// its input gradient (its dy): Sequential hands the convolution's slot over (kiln/nn/sequential.hpp),
// and the copy kernel of that convolution no longer runs (docs/kernels.md "BF16 copies written by
// the BatchNorm kernels").
//
// A per-channel block (the plain kernels' grid) would write the copy 2 bytes at a stride of the
// padded row: a sector per element. These take 16 channels per block (grid (blocks over the
// pixels, ceil(C / 16))): a thread keeps one pixel q = n * HW + p at a time, reads and writes its
// 16 channels' fp32 values as the plain kernels do (coalesced along the pixels), and stores their
// 16 BF16 as two 16-byte stores, one whole 32-byte sector of row q of the copy (cpad = C rounded
// up to 16 BF16 per row; channels C..cpad-1 written as zeros, as conv2d_nhwc_bf16_kernel does).
// Each block derives its 16 channels' maps from the same fixed-order sums as the plain kernels
// (block_sum_partials with reduce_threads threads; bn_channel_affine), so y and dx have the same
// bits, and the copy the bits of conv2d_nhwc_bf16_kernel on them (pack_bf16x2: to nearest even).
#include <cstdint>

#include "batchnorm.cuh"
#include "kiln/gpu/gpu.hpp"
#include "kiln/gpu/mma.hpp"

// The per-channel statistics loops stay rolled: each holds a block reduction (16 copies of it
// would be most of the kernel's code).
#if KILN_GPU_REAL
#define KILN_BN_ROLLED _Pragma("unroll 1")
#else
#define KILN_BN_ROLLED
#endif

namespace kiln::cuda::kernels {

namespace bn_nhwc {

inline constexpr int group = 16;  // channels per block: one 32-byte sector of a copy row

// The grid (blocks along the m = N*HW pixels, channel groups): enough blocks for 4 of
// reduce_threads per SM of an H100 (132 SMs), at least one pixel per thread; `chunk` pixels each.
struct Grid {
  std::int64_t chunk = 1;
  dim3 blocks;
};
inline Grid grid(std::int64_t m, std::int64_t channels) {
  const std::int64_t groups = (channels + group - 1) / group, target = 4 * 132;
  std::int64_t per_block = (m * groups + target - 1) / target;
  per_block =
      per_block < reduce_threads ? reduce_threads : (per_block + reduce_threads - 1) / reduce_threads * reduce_threads;
  const std::int64_t blocks = m > 0 ? (m + per_block - 1) / per_block : 1;
  return {per_block, dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(groups))};
}

__device__ __forceinline__ uint4 shuffle_xor_1(uint4 v) {
  return make_uint4(__shfl_xor_sync(0xffffffffu, v.x, 1), __shfl_xor_sync(0xffffffffu, v.y, 1),
                    __shfl_xor_sync(0xffffffffu, v.z, 1), __shfl_xor_sync(0xffffffffu, v.w, 1));
}

// Rounds of blockDim.x pixels in this block's chunk of the m: the same for every thread.
__device__ __forceinline__ int rounds(std::int64_t m, std::int64_t chunk) {
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * chunk, end = first + chunk < m ? first + chunk : m;
  return static_cast<int>((end - first + blockDim.x - 1) / blockDim.x);
}

// Row q's 16 channels from c0 as BF16 (v[i] for c0 + i < C, zeros past it; `ok`: this thread has
// a pixel), 32 bytes. A thread's own two 16-byte stores would each fill half of every sector they
// touch (rows are cpad >= 16 BF16 apart), so lanes pair up: the first store writes the even lane's
// row (its first half from the even lane, its second from the odd one), the second the odd lane's,
// each a whole sector per pair. All 32 lanes of the warp call it (shuffles).
__device__ __forceinline__ void store_copy_row(__nv_bfloat16* copy, std::int64_t q, bool ok, int cpad, int c0,
                                               const float (&v)[group]) {
  uint4 lo, hi;
  lo.x = kiln::gpu::mma::pack_bf16x2(v[0], v[1]);
  lo.y = kiln::gpu::mma::pack_bf16x2(v[2], v[3]);
  lo.z = kiln::gpu::mma::pack_bf16x2(v[4], v[5]);
  lo.w = kiln::gpu::mma::pack_bf16x2(v[6], v[7]);
  hi.x = kiln::gpu::mma::pack_bf16x2(v[8], v[9]);
  hi.y = kiln::gpu::mma::pack_bf16x2(v[10], v[11]);
  hi.z = kiln::gpu::mma::pack_bf16x2(v[12], v[13]);
  hi.w = kiln::gpu::mma::pack_bf16x2(v[14], v[15]);
  const bool odd = (threadIdx.x & 1u) != 0;
  const uint4 give = odd ? lo : hi, got = shuffle_xor_1(give);  // even: the odd lane's lo; odd: the even's hi
  const long long partner_q = __shfl_xor_sync(0xffffffffu, static_cast<long long>(q), 1);
  const bool partner_ok = __shfl_xor_sync(0xffffffffu, ok ? 1 : 0, 1) != 0;
  uint4* own = reinterpret_cast<uint4*>(copy + q * cpad + c0);
  uint4* other = reinterpret_cast<uint4*>(copy + partner_q * cpad + c0);
  // the even lane's row
  if (odd ? partner_ok : ok) (odd ? other[1] : own[0]) = odd ? got : lo;
  // the odd lane's row
  if (odd ? ok : partner_ok) (odd ? own[1] : other[0]) = odd ? hi : got;
}

// Every pixel of block blockIdx.x's chunk of channels [c0, c0 + G), in rounds that keep every lane in
// the loop (store_copy_row shuffles): value(o, i) computes and writes channel c0 + i's fp32 result
// at element offset o and returns it; the pixel's copy row takes the G results, zeros past C.
template <int G, class Value>
__device__ __forceinline__ void write_rows(const BatchNormArgs& a, int c0, std::int64_t chunk, __nv_bfloat16* copy,
                                           Value value) {
  const int channels = static_cast<int>(a.c), cpad = (channels + G - 1) / G * G;
  const std::int64_t hw = a.hw;
  ChannelCursor<1> k(hw, a.c, c0, a.n * hw, chunk);
  for (int it = 0, count = rounds(a.n * hw, chunk); it < count; ++it, k.next()) {  // uniform
    const bool ok = k.valid();
    float v[G];
    KILN_UNROLL
    for (int i = 0; i < G; ++i) v[i] = ok && c0 + i < channels ? value(k.offset + i * hw, i) : 0.0f;
    store_copy_row(copy, k.q, ok, cpad, c0, v);
  }
}

}  // namespace bn_nhwc

// y = max(x * scale + shift, 0) for channels [G blockIdx.y, +G) of the pixels of block
// blockIdx.x (bn_nhwc::grid's chunk), and their row of `copy`. Block reduce_threads; G = bn_nhwc::group.
template <int G>
__global__ void __launch_bounds__(reduce_threads, 4)
    batchnorm_apply_nhwc_kernel(BatchNormArgs a, ReducePlan plan, const double2* partials, const double* shifts,
                                const float* x, const float* weight, const float* bias, float* running_mean,
                                float* running_var, float* save_mean, float* save_invstd, float* y, __nv_bfloat16* copy,
                                std::int64_t chunk) {
  static_assert(G == bn_nhwc::group, "a copy row's sector: 16 channels");
  const int c0 = static_cast<int>(blockIdx.y) * G, channels = static_cast<int>(a.c);
  __shared__ float2 affine[G];
  KILN_BN_ROLLED
  for (int i = 0; i < G; ++i) {
    if (c0 + i >= channels) break;  // uniform
    double2 total = make_double2(0.0, 0.0);
    if (a.training) total = block_sum_partials(partials + (c0 + i) * plan.chunks, plan.chunks);
    if (threadIdx.x == 0)
      affine[i] = bn_channel_affine(a, c0 + i, total, shifts, weight, bias, running_mean, running_var, save_mean,
                                    save_invstd, blockIdx.x == 0);
  }
  __syncthreads();
  bn_nhwc::write_rows<G>(a, c0, chunk, copy, [&](std::int64_t o, int i) {
    const float2 map = affine[i];  // a broadcast read: 16 maps in registers would halve the occupancy
    const float t = x[o] * map.x + map.y, r = t > 0.0f ? t : 0.0f;
    y[o] = r;
    return r;
  });
}

// dx = k·g + slope·(x - mean) + offset (batchnorm_backward_dx_kernel<V, true>: g the ReLU-masked
// dy) for channels [G blockIdx.y, +G) of block blockIdx.x's pixels, and their row of `copy`;
// blocks (0, *) add dbias and dweight (either may be null). Block reduce_threads; G = bn_nhwc::group.
template <int G>
__global__ void __launch_bounds__(reduce_threads, 4)
    batchnorm_backward_dx_nhwc_kernel(BatchNormArgs a, ReducePlan plan, const double2* partials, const float* x,
                                      const float* weight, const float* save_mean, const float* save_invstd,
                                      const float* relu_y, const float* dy, float* dx, float* dweight, float* dbias,
                                      __nv_bfloat16* copy, std::int64_t chunk) {
  static_assert(G == bn_nhwc::group, "a copy row's sector: 16 channels");
  const int c0 = static_cast<int>(blockIdx.y) * G, channels = static_cast<int>(a.c);
  __shared__ float4 coefficients[G];  // mean, k, slope, offset
  KILN_BN_ROLLED
  for (int i = 0; i < G; ++i) {
    if (c0 + i >= channels) break;  // uniform
    const int c = c0 + i;
    const double2 total = block_sum_partials(partials + c * plan.chunks, plan.chunks);
    if (threadIdx.x == 0) {
      if (blockIdx.x == 0) {
        if (dbias) dbias[c] += static_cast<float>(total.x);
        if (dweight) dweight[c] += static_cast<float>(total.y * static_cast<double>(save_invstd[c]));
      }
      // batchnorm_backward_dx_kernel's arithmetic, in the same order
      const double invstd = save_invstd[c], sum_dy = total.x, sum_dy_xhat = total.y * invstd;
      const double m = static_cast<double>(a.n * a.hw);
      const double gain = static_cast<double>(weight[c]) * invstd;
      const double mean_dy = a.training ? sum_dy / m : 0.0, mean_dy_xhat = a.training ? sum_dy_xhat / m : 0.0;
      coefficients[i] =
          make_float4(save_mean[c], static_cast<float>(gain), static_cast<float>(-gain * invstd * mean_dy_xhat),
                      static_cast<float>(-gain * mean_dy));
    }
  }
  __syncthreads();
  bn_nhwc::write_rows<G>(a, c0, chunk, copy, [&](std::int64_t o, int i) {
    const float4 f = coefficients[i];  // a broadcast read, as the apply kernel's map
    const float g = relu_y[o] > 0.0f ? dy[o] : 0.0f, r = f.y * g + f.z * (x[o] - f.x) + f.w;
    dx[o] = r;
    return r;
  });
}

}  // namespace kiln::cuda::kernels
