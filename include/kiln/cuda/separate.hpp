#pragma once
// The convolution kernels Backend<Cuda> launches are templates of some size (the mma.sync ones above
// all), so every translation unit that runs a Conv2d on the emulator compiles all of them again
// (about 10 CPU-s at -O3 with g++). A program of many units may compile them once instead: define
// KILN_CUDA_SEPARATE in all its units and, in exactly one of them, also KILN_CUDA_IMPLEMENTATION
// before including kiln (kiln's own emu suite and the programs' Cuda device do: kiln_cuda_once in
// CMakeLists.txt). All of them need the same flags. Without the macro, or under nvcc, nothing
// changes: the library stays header-only.
//
// The list names the kernels' specializations one by one: one missing from it (a new kernel, a new
// tile) is compiled where it is used, as without the macro; one that no longer exists is a compile
// error of the KILN_CUDA_IMPLEMENTATION unit.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL && defined(KILN_CUDA_SEPARATE)

#include "conv2d.cuh"
#include "conv2d_igemm.cuh"
#include "conv2d_mma.cuh"
#include "conv2d_mma_bf16.cuh"
#include "conv2d_mma_bf16_wgrad.cuh"
#include "conv2d_mma_wgrad.cuh"
#include "conv2d_simt.cuh"
#include "conv2d_simt_wgrad.cuh"
#include "conv2d_strided.cuh"
#include "conv2d_wgmma.cuh"

#if defined(KILN_CUDA_IMPLEMENTATION)
#define KILN_CUDA_ONCE(...) template decltype(::kiln::cuda::kernels::__VA_ARGS__) kiln::cuda::kernels::__VA_ARGS__;
#else
#define KILN_CUDA_ONCE(...) \
  extern template decltype(::kiln::cuda::kernels::__VA_ARGS__) kiln::cuda::kernels::__VA_ARGS__;
#endif
// name<K, ...> for K = 1 and 3 (the tensor-core kernels' kernel sizes)
#define KILN_CUDA_ONCE_K(name, ...) KILN_CUDA_ONCE(name<1 __VA_ARGS__>) KILN_CUDA_ONCE(name<3 __VA_ARGS__>)

// Strict fp32: the tiled kernels (K = 0: any kernel size) and the strided ones.
KILN_CUDA_ONCE_K(conv2d_forward_kernel)
KILN_CUDA_ONCE_K(conv2d_backward_data_kernel)
KILN_CUDA_ONCE_K(conv2d_backward_weight_kernel)
KILN_CUDA_ONCE(conv2d_forward_kernel<0>)
KILN_CUDA_ONCE(conv2d_backward_data_kernel<0>)
KILN_CUDA_ONCE(conv2d_backward_weight_kernel<0>)
KILN_CUDA_ONCE(conv2d_strided_forward_kernel<float>)
KILN_CUDA_ONCE(conv2d_strided_backward_data_kernel<float>)
KILN_CUDA_ONCE(conv2d_strided_backward_weight_kernel<float>)
KILN_CUDA_ONCE(conv2d_simt_pack_weights_kernel<false>)
KILN_CUDA_ONCE(conv2d_simt_pack_weights_kernel<true>)
KILN_CUDA_ONCE_K(conv2d_simt_forward_kernel, , 64)
KILN_CUDA_ONCE_K(conv2d_simt_forward_kernel, , 128)
KILN_CUDA_ONCE_K(conv2d_simt_wgrad_kernel, , 64)
KILN_CUDA_ONCE(conv2d_simt_wgrad_reduce_kernel<float>)
// TF32 implicit GEMM.
KILN_CUDA_ONCE_K(conv2d_igemm_forward_kernel)
KILN_CUDA_ONCE_K(conv2d_igemm_backward_data_kernel)
KILN_CUDA_ONCE_K(conv2d_igemm_backward_weight_kernel)
KILN_CUDA_ONCE(conv2d_igemm_reduce_splits_kernel<float>)
// mma.sync, TF32 and BF16 (the trailing Bf16 argument).
KILN_CUDA_ONCE_K(conv2d_mma_pack_weights_kernel)
KILN_CUDA_ONCE_K(conv2d_mma_pack_weights_dgrad_kernel)
KILN_CUDA_ONCE_K(conv2d_mma_pack_weights_both_kernel)
KILN_CUDA_ONCE(conv2d_mma_pack_batch_kernel<kiln::cuda::kernels::mma_conv::pack_batch_max>)

KILN_CUDA_ONCE_K(conv2d_mma_forward_kernel, , 64, false)
KILN_CUDA_ONCE_K(conv2d_mma_forward_kernel, , 64, true)
KILN_CUDA_ONCE_K(conv2d_mma_forward_kernel, , 128, false)
KILN_CUDA_ONCE_K(conv2d_mma_forward_kernel, , 128, true)
KILN_CUDA_ONCE_K(conv2d_mma_forward_tall_kernel)
KILN_CUDA_ONCE(conv2d_wgmma_forward_kernel<3, 128>)
KILN_CUDA_ONCE(conv2d_wgmma_forward_kernel<3, 256>)
KILN_CUDA_ONCE(conv2d_wgmma_forward_short_kernel<3>)
KILN_CUDA_ONCE_K(conv2d_mma_wgrad_kernel, , 64, 64, 1, false)
KILN_CUDA_ONCE_K(conv2d_mma_wgrad_kernel, , 64, 64, 1, true)
KILN_CUDA_ONCE_K(conv2d_mma_wgrad_kernel, , 128, 128, 1, false)
KILN_CUDA_ONCE_K(conv2d_mma_wgrad_kernel, , 128, 128, 1, true)
KILN_CUDA_ONCE_K(conv2d_mma_wgrad_stream_k_kernel, , 128, 128, 1, false)
KILN_CUDA_ONCE_K(conv2d_mma_wgrad_stream_k_kernel, , 128, 128, 1, true)
KILN_CUDA_ONCE(conv2d_mma_wgrad_kernel<3, 128, 64, 2, false>)
KILN_CUDA_ONCE(conv2d_mma_wgrad_kernel<3, 64, 128, 2, false>)
KILN_CUDA_ONCE_K(conv2d_mma_wgrad_reduce_kernel)
KILN_CUDA_ONCE(conv2d_mma_wgrad_reduce_batch_kernel<kiln::cuda::kernels::mma_wgrad::reduce_batch_max>)
// BF16 on NHWC copies.
KILN_CUDA_ONCE(conv2d_nhwc_bf16_kernel<float>)
KILN_CUDA_ONCE_K(conv2d_mma_pack_weights_bf16_kernel)
KILN_CUDA_ONCE_K(conv2d_mma_pack_weights_dgrad_bf16_kernel)
KILN_CUDA_ONCE_K(conv2d_mma_pack_weights_both_bf16_kernel)
KILN_CUDA_ONCE(conv2d_mma_pack_batch_bf16_kernel<kiln::cuda::kernels::mma_conv::pack_batch_max>)
KILN_CUDA_ONCE_K(conv2d_mma_bf16_forward_kernel, , 64)
KILN_CUDA_ONCE_K(conv2d_mma_bf16_forward_kernel, , 128)
KILN_CUDA_ONCE_K(conv2d_mma_bf16_wgrad_kernel, , 64)
KILN_CUDA_ONCE_K(conv2d_mma_bf16_wgrad_kernel, , 128)

#undef KILN_CUDA_ONCE_K
#undef KILN_CUDA_ONCE

#endif  // !KILN_GPU_REAL && KILN_CUDA_SEPARATE
