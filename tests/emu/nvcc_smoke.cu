// Compile-only check that kernels written against kiln/gpu/gpu.hpp build with nvcc for real GPUs:
//   nvcc -std=c++20 -arch=sm_80 -I kernels -c tests/emu/nvcc_smoke.cu -o /tmp/nvcc_smoke.o
// (not part of the CMake test globs; CI with a GPU runs the same kernels through tests/gpu).
#include "kiln/gpu/gpu.hpp"

namespace {

__global__ void smoke_reduce(const float* in, float* out, int n) {
  __shared__ float cache[256];
  float* scratch = kiln::gpu::dynamic_shared<float>();
  const unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  cache[t] = i < static_cast<unsigned>(n) ? __ldg(in + i) : 0.0f;
  scratch[t] = cache[t];
  __syncthreads();
  float v = cache[t] + scratch[t];
  for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  v += __shfl_xor_sync(0xffffffffu, v, 1) + __shfl_up_sync(0xffffffffu, v, 1) + __shfl_sync(0xffffffffu, v, 0);
  const unsigned ballot = __ballot_sync(0xffffffffu, v > 0.0f);
  if (__any_sync(0xffffffffu, ballot != 0) && __all_sync(0xffffffffu, 1)) __syncwarp();
  if (__syncthreads_count(v > 0.0f) > 0 && t % warpSize == 0) atomicAdd(out, rsqrtf(fabsf(v) + 1.0f) + __expf(0.0f));
  __threadfence();
}

template <class T, int Scale>
__global__ void smoke_scale(T* data, int n, int* counter) {
  KILN_UNROLL
  for (int k = 0; k < 4; ++k) {
    const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x) * 4 + k;
    if (i < n) data[i] = __fmaf_rn(data[i], static_cast<T>(Scale), 0.0f);
  }
  atomicMax(counter, static_cast<int>(threadIdx.x));
  atomicMin(counter + 1, -static_cast<int>(threadIdx.x));
  atomicCAS(counter + 2, 0, 1);
  atomicExch(counter + 3, 5);
  atomicAdd(reinterpret_cast<unsigned*>(counter + 4), 1u);
}

}  // namespace

void nvcc_smoke(float* in, float* out, int n, int* counter) {
  kiln::gpu::Stream stream;
  kiln::gpu::set_max_dynamic_shared(smoke_reduce, 64 * 1024);
  KILN_LAUNCH(smoke_reduce, dim3((n + 255) / 256), dim3(256), 256 * sizeof(float), stream, in, out, n);
  KILN_LAUNCH((smoke_scale<float, 2>), (n + 1023) / 1024, 256, 0, kiln::gpu::Stream::default_stream(), in, n, counter);
  kiln::gpu::launch("smoke_scale", smoke_scale<float, 3>, 1, 32, 0, nullptr, in, n, counter);
  stream.synchronize();
  kiln::gpu::synchronize();
  static_assert(!kiln::gpu::emulated);
  if (kiln::gpu::device_available()) (void)kiln::gpu::device_name();
  void* p = kiln::gpu::device_malloc(16);
  kiln::gpu::memset_device(p, 0, 16);
  kiln::gpu::memcpy_device_to_device(p, in, 16);
  kiln::gpu::memcpy_device_to_host(out, p, 4);
  kiln::gpu::memcpy_host_to_device(p, out, 4);
  kiln::gpu::device_free(p);
}
