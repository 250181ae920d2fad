#pragma once
// Device memory: cudaMalloc & co. under nvcc; aligned host memory in the emulator. Fresh
// emulated allocations are filled with NaN (0x7fc00000) because cudaMalloc does not zero either.
// Under AddressSanitizer and in checking builds (KILN_EMU_CHECK) an allocation has exactly the
// bytes asked for, so that an overrun by one element is reported (by ASan, or by the checker,
// which leaves a guard gap after each allocation); otherwise sizes are rounded up to 256 bytes.
// Asynchronous copies and memsets are queued on a stream (cudaMemcpyAsync / cudaMemsetAsync); the
// emulator runs them at once, or records them while the stream is captured into a graph, and
// refuses the blocking calls and allocations during a capture (emu_capture.hpp). PinnedBuffer is
// page-locked host memory (cudaMallocHost), which an asynchronous copy needs to be asynchronous.
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>

#include "kiln/gpu/config.hpp"
#include "kiln/gpu/error.hpp"
#include "kiln/gpu/stream.hpp"

#if KILN_GPU_REAL
#include "kiln/gpu/cuda_check.hpp"
#else
#include <cstdint>
#include <cstdlib>

#include "kiln/gpu/emu_allocations.hpp"
#include "kiln/gpu/emu_capture.hpp"
#endif

namespace kiln::gpu {

enum class CopyKind { host_to_device, device_to_host, device_to_device };

#if KILN_GPU_REAL

inline cudaMemcpyKind cuda_copy_kind(CopyKind kind) {
  switch (kind) {
    case CopyKind::host_to_device:
      return cudaMemcpyHostToDevice;
    case CopyKind::device_to_host:
      return cudaMemcpyDeviceToHost;
    case CopyKind::device_to_device:
      break;
  }
  return cudaMemcpyDeviceToDevice;
}
inline void memcpy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind, stream_handle stream) {
  if (bytes == 0) return;
  detail::check_cuda(cudaMemcpyAsync(dst, src, bytes, cuda_copy_kind(kind), stream), "cudaMemcpyAsync");
}
inline void memset_async(void* dst, int value, std::size_t bytes, stream_handle stream) {
  if (bytes == 0) return;
  detail::check_cuda(cudaMemsetAsync(dst, value, bytes, stream), "cudaMemsetAsync");
}
inline void* pinned_malloc(std::size_t bytes) {
  void* pointer = nullptr;
  detail::check_cuda(cudaMallocHost(&pointer, bytes == 0 ? 1 : bytes),
                     ("cudaMallocHost of " + std::to_string(bytes) + " bytes").c_str());
  return pointer;
}
inline void pinned_free(void* pointer) noexcept {
  if (pointer != nullptr) (void)cudaFreeHost(pointer);
}

KILN_EMU_ENTRY void* device_malloc(std::size_t bytes);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void* device_malloc(std::size_t bytes) {
  void* pointer = nullptr;
  detail::check_cuda(cudaMalloc(&pointer, bytes), ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
  return pointer;
}
#endif
KILN_EMU_ENTRY void device_free(void* pointer);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void device_free(void* pointer) {
  if (pointer != nullptr) detail::check_cuda(cudaFree(pointer), "cudaFree");
}
#endif
inline void memcpy_host_to_device(void* dst, const void* src, std::size_t bytes) {
  detail::check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host to device");
}
inline void memcpy_device_to_host(void* dst, const void* src, std::size_t bytes) {
  detail::check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy device to host");
}
inline void memcpy_device_to_device(void* dst, const void* src, std::size_t bytes) {
  detail::check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy device to device");
}
inline void memset_device(void* dst, int value, std::size_t bytes) {
  detail::check_cuda(cudaMemset(dst, value, bytes), "cudaMemset");
}

#else  // emulator

KILN_EMU_ENTRY void* device_malloc(std::size_t bytes);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void* device_malloc(std::size_t bytes) {
  emu::refuse_during_capture("device_malloc (cudaMalloc) of " + std::to_string(bytes) + " bytes");
#if KILN_EMU_ASAN || KILN_EMU_CHECK
  // Exact size (ASan poisons from the first byte past it); the checker's guard gap after it.
  const std::size_t usable = bytes == 0 ? 1 : bytes;
  std::size_t reserved = usable;
#if KILN_EMU_CHECK
  reserved += emu::allocation_guard_bytes;
#endif
  void* pointer = nullptr;
  if (posix_memalign(&pointer, 256, reserved) != 0) pointer = nullptr;
#else
  const std::size_t usable = (bytes == 0 ? 1 : bytes + 255) / 256 * 256;
  void* pointer = std::aligned_alloc(256, usable);
#endif
  if (pointer == nullptr)
    throw Error("kiln::gpu::device_malloc: out of memory allocating " + std::to_string(bytes) + " bytes");
  const std::uint32_t nan_bits = 0x7fc00000u;
  std::size_t i = 0;
  for (; i + 4 <= usable; i += 4) std::memcpy(static_cast<unsigned char*>(pointer) + i, &nan_bits, 4);
  if (i < usable) std::memcpy(static_cast<unsigned char*>(pointer) + i, &nan_bits, usable - i);
#if KILN_EMU_CHECK
  emu::register_allocation(pointer, bytes);
#endif
  return pointer;
}
#endif
KILN_EMU_ENTRY void device_free(void* pointer);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void device_free(void* pointer) {
  if (pointer != nullptr) emu::invalidate_capture("device_free (cudaFree)");  // may run in a destructor
#if KILN_EMU_CHECK
  if (pointer != nullptr) emu::unregister_allocation(pointer);
#endif
  std::free(pointer);
}
#endif

namespace detail {
inline void checked_copy(void* dst, const void* src, std::size_t bytes, const char* what) {
  if (bytes == 0) return;
  if (dst == nullptr || src == nullptr) throw Error(std::string("kiln::gpu::") + what + ": null pointer");
  std::memmove(dst, src, bytes);
}
inline void blocking_copy(void* dst, const void* src, std::size_t bytes, const char* what) {
  std::string message(what);  // appended, not operator+: g++ 12 -Warray-bounds false positive at -O1
  message += " (a blocking cudaMemcpy)";
  emu::refuse_during_capture(message);
  checked_copy(dst, src, bytes, what);
}
inline const char* copy_name(CopyKind kind) {
  switch (kind) {
    case CopyKind::host_to_device:
      return "host to device";
    case CopyKind::device_to_host:
      return "device to host";
    case CopyKind::device_to_device:
      break;
  }
  return "device to device";
}
}  // namespace detail

inline void memcpy_host_to_device(void* dst, const void* src, std::size_t bytes) {
  detail::blocking_copy(dst, src, bytes, "memcpy_host_to_device");
}
inline void memcpy_device_to_host(void* dst, const void* src, std::size_t bytes) {
  detail::blocking_copy(dst, src, bytes, "memcpy_device_to_host");
}
inline void memcpy_device_to_device(void* dst, const void* src, std::size_t bytes) {
  detail::blocking_copy(dst, src, bytes, "memcpy_device_to_device");
}
inline void memset_device(void* dst, int value, std::size_t bytes) {
  if (bytes == 0) return;
  emu::refuse_during_capture("memset_device (a blocking cudaMemset)");
  if (dst == nullptr) throw Error("kiln::gpu::memset_device: null pointer");
  std::memset(dst, value, bytes);
}

// Queued on `stream`: run now, or recorded while the stream is captured (the source is read when
// the copy runs, at each replay, as on the GPU).
inline void memcpy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind, stream_handle stream) {
  if (bytes == 0) return;
  if (dst == nullptr || src == nullptr) throw Error("kiln::gpu::memcpy_async: null pointer");
  emu::run_or_capture(stream,
                      std::string("memcpy_async ") + detail::copy_name(kind) + " (" + std::to_string(bytes) + " bytes)",
                      [=] { std::memmove(dst, src, bytes); });
}
inline void memset_async(void* dst, int value, std::size_t bytes, stream_handle stream) {
  if (bytes == 0) return;
  if (dst == nullptr) throw Error("kiln::gpu::memset_async: null pointer");
  emu::run_or_capture(stream, "memset_async (" + std::to_string(bytes) + " bytes)",
                      [=] { std::memset(dst, value, bytes); });
}
inline void* pinned_malloc(std::size_t bytes) {
  emu::refuse_during_capture("pinned_malloc (cudaMallocHost) of " + std::to_string(bytes) + " bytes");
  void* pointer = std::aligned_alloc(256, (bytes == 0 ? 1 : bytes + 255) / 256 * 256);
  if (pointer == nullptr)
    throw Error("kiln::gpu::pinned_malloc: out of memory allocating " + std::to_string(bytes) + " bytes");
  return pointer;
}
inline void pinned_free(void* pointer) noexcept { std::free(pointer); }

#endif

// Page-locked host memory of `bytes` bytes (RAII): the host side of asynchronous copies. Its
// address is fixed, so a copy captured into a CUDA graph reads what the host wrote before each
// replay. Contents start undefined.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(std::size_t bytes) : data_(pinned_malloc(bytes)), bytes_(bytes) {}
  ~PinnedBuffer() { pinned_free(data_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept {
    if (this != &other) {
      pinned_free(data_);
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }

  void* data() const noexcept { return data_; }
  template <class T>
  T* as() const noexcept {
    return static_cast<T*>(data_);
  }
  std::size_t bytes() const noexcept { return bytes_; }
  bool empty() const noexcept { return data_ == nullptr; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace kiln::gpu
