#pragma once
// dynamic_shared<T>(): the block's dynamic shared memory (the launch's shared-bytes argument) as a
// T*. Use it instead of `extern __shared__ T name[]`, which cannot be emulated and which nvcc
// rejects when two kernels declare it with different types. Aligned to 128 bytes.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL
#include "kiln/gpu/emu_state.hpp"
#endif

namespace kiln::gpu {

#if KILN_GPU_REAL
// 128-byte alignment: wmma tiles in shared memory must be 32-byte aligned (kernels/conv2d_igemm.cuh).
template <class T>
__device__ __forceinline__ T* dynamic_shared() {
  extern __shared__ __align__(128) unsigned char kiln_dynamic_shared_memory[];
  return reinterpret_cast<T*>(kiln_dynamic_shared_memory);
}
#else
// In the emulator the memory is 128-byte aligned and filled with NaN (0x7fc00000) before each block.
template <class T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(emu::current("kiln::gpu::dynamic_shared()").block->dynamic_shared);
}
#endif

}  // namespace kiln::gpu
