#pragma once
// DeviceMemory<Cuda>: device allocations and copies through kiln::gpu (the CUDA runtime under
// nvcc, the CPU emulator otherwise), and the stream Backend<Cuda> works on.
//
// Ordering: under nvcc every copy and memset is queued on kiln::cuda::current_stream() (default:
// the legacy default stream), like the kernels, so they run in program order; to_host and
// from_host wait for the stream (the host buffer is usable when they return), so they cannot be
// part of a CUDA graph: copy and zero can (kiln/gpu/graph.hpp).
#include <cstddef>

#include "kiln/core/device.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda {

namespace detail {
inline kiln::gpu::stream_handle& stream_slot() {
  static kiln::gpu::stream_handle stream = nullptr;
  return stream;
}
}  // namespace detail

// The stream every Backend<Cuda> launch and DeviceMemory<Cuda> copy uses (null: default stream).
inline kiln::gpu::stream_handle current_stream() { return detail::stream_slot(); }
inline void set_stream(kiln::gpu::stream_handle stream) { detail::stream_slot() = stream; }

// Sets the stream for a scope: { kiln::cuda::StreamScope s(my_stream); net.forward(...); }
class StreamScope {
 public:
  explicit StreamScope(kiln::gpu::stream_handle stream) : previous_(current_stream()) { set_stream(stream); }
  ~StreamScope() { set_stream(previous_); }
  StreamScope(const StreamScope&) = delete;
  StreamScope& operator=(const StreamScope&) = delete;

 private:
  kiln::gpu::stream_handle previous_;
};

// Waits for the work queued on the current stream.
inline void synchronize_stream() {
#if KILN_GPU_REAL
  kiln::gpu::detail::check_cuda(cudaStreamSynchronize(current_stream()), "cudaStreamSynchronize");
#else
  kiln::gpu::emu::refuse_during_capture("synchronize_stream (cudaStreamSynchronize)");
#endif
}

}  // namespace kiln::cuda

namespace kiln {

template <>
struct DeviceMemory<Cuda> {
  static constexpr std::size_t alignment = 256;  // what cudaMalloc guarantees
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    return kiln::gpu::device_malloc(bytes);
  }
  // Runs from destructors: never throws (an error here is reported by the next checked call).
  static void deallocate(void* p) noexcept {
    if (p == nullptr) return;
#if KILN_GPU_REAL
    (void)cudaFree(p);
#else
    kiln::gpu::device_free(p);
#endif
  }
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes == 0) return;
    kiln::gpu::memcpy_async(dst, src, bytes, kiln::gpu::CopyKind::device_to_device, cuda::current_stream());
  }
  static void zero(void* dst, std::size_t bytes) {
    if (bytes == 0) return;
    kiln::gpu::memset_async(dst, 0, bytes, cuda::current_stream());
  }
  static void to_host(void* host, const void* src, std::size_t bytes) {
    if (bytes == 0) return;
#if KILN_GPU_REAL
    kiln::gpu::detail::check_cuda(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, cuda::current_stream()),
                                  "cudaMemcpyAsync device to host");
    cuda::synchronize_stream();
#else
    kiln::gpu::memcpy_device_to_host(host, src, bytes);
#endif
  }
  static void from_host(void* dst, const void* host, std::size_t bytes) {
    if (bytes == 0) return;
#if KILN_GPU_REAL
    kiln::gpu::detail::check_cuda(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, cuda::current_stream()),
                                  "cudaMemcpyAsync host to device");
    cuda::synchronize_stream();  // the caller may free or reuse `host` on return
#else
    kiln::gpu::memcpy_host_to_device(dst, host, bytes);
#endif
  }
};

}  // namespace kiln
