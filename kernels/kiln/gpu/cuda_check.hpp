#pragma once
// Under nvcc: turns a cudaError_t into a kiln::gpu::Error naming what failed.
#include "kiln/gpu/config.hpp"

#if KILN_GPU_REAL

#include <cuda_runtime.h>

#include <string>

#include "kiln/gpu/error.hpp"

namespace kiln::gpu::detail {

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(std::string("kiln::gpu: ") + what + " failed: " + cudaGetErrorName(status) + ": " +
                cudaGetErrorString(status));
}

}  // namespace kiln::gpu::detail

#endif  // KILN_GPU_REAL
