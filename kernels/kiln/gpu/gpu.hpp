#pragma once
// kiln's GPU layer: the one header kernels and host code include. Under nvcc it maps onto the
// CUDA runtime; compiled by g++/clang it provides the same names on the CPU through an emulator
// with CUDA semantics (see docs/emulator.md). Kernels are written once, in CUDA C++, using:
//   __global__ __device__ __host__ __forceinline__ __shared__ dim3 threadIdx blockIdx blockDim
//   gridDim warpSize __syncthreads __syncwarp __shfl_*_sync __ballot_sync __any_sync __all_sync
//   atomics, __threadfence, __ldg, math intrinsics and kiln::gpu::dynamic_shared<T>(),
//   tensor-core fragments (kiln::gpu::wmma = nvcuda::wmma, wmma.hpp), per-lane mma.sync and
//   ldmatrix (kiln::gpu::mma, mma.hpp), sm_90a's warpgroup MMAs (kiln::gpu::wgmma, wgmma.hpp),
//   thread-block clusters and their shared memory (kiln::gpu::cluster, cluster.hpp), __nv_bfloat16 and
//   cp.async (kiln::gpu::cp_async / cp_async_commit / cp_async_wait, async_copy.hpp).
// Host side (namespace kiln::gpu): Error, device_malloc/free, memcpy_*, memset_device,
// synchronize, Stream, Event, Graph, PinnedBuffer, memcpy_async, memset_async, launch / KILN_LAUNCH,
// launch_cluster / KILN_LAUNCH_CLUSTER, set_max_dynamic_shared, emulated, device_available, device_name.
#include "kiln/gpu/config.hpp"

#if KILN_GPU_REAL
#include <cuda_runtime.h>
#endif

#include "kiln/gpu/async_copy.hpp"
#include "kiln/gpu/atomics.hpp"
#include "kiln/gpu/bfloat16.hpp"
#include "kiln/gpu/cluster.hpp"
#include "kiln/gpu/device.hpp"
#include "kiln/gpu/dynamic_shared.hpp"
#include "kiln/gpu/error.hpp"
#include "kiln/gpu/graph.hpp"
#include "kiln/gpu/intrinsics.hpp"
#include "kiln/gpu/keywords.hpp"
#include "kiln/gpu/launch.hpp"
#include "kiln/gpu/launch_limits.hpp"
#include "kiln/gpu/math.hpp"
#include "kiln/gpu/memory.hpp"
#include "kiln/gpu/mma.hpp"
#include "kiln/gpu/stream.hpp"
#include "kiln/gpu/vector_types.hpp"
#include "kiln/gpu/wgmma.hpp"
#include "kiln/gpu/wmma.hpp"
