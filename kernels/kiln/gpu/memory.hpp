#pragma once
// Device memory: cudaMalloc & co. under nvcc; aligned host memory in the emulator. Fresh
// emulated allocations are filled with NaN (0x7fc00000) because cudaMalloc does not zero either.
// Under AddressSanitizer and in checking builds (KILN_EMU_CHECK) an allocation has exactly the
// bytes asked for, so that an overrun by one element is reported (by ASan, or by the checker,
// which leaves a guard gap after each allocation); otherwise sizes are rounded up to 256 bytes.
#include <cstddef>
#include <cstring>
#include <string>

#include "kiln/gpu/config.hpp"
#include "kiln/gpu/error.hpp"

#if KILN_GPU_REAL
#include "kiln/gpu/cuda_check.hpp"
#else
#include <cstdint>
#include <cstdlib>

#include "kiln/gpu/emu_allocations.hpp"
#endif

namespace kiln::gpu {

#if KILN_GPU_REAL

inline void* device_malloc(std::size_t bytes) {
  void* pointer = nullptr;
  detail::check_cuda(cudaMalloc(&pointer, bytes), ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
  return pointer;
}
inline void device_free(void* pointer) {
  if (pointer != nullptr) detail::check_cuda(cudaFree(pointer), "cudaFree");
}
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

inline void* device_malloc(std::size_t bytes) {
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
inline void device_free(void* pointer) {
#if KILN_EMU_CHECK
  if (pointer != nullptr) emu::unregister_allocation(pointer);
#endif
  std::free(pointer);
}

namespace detail {
inline void checked_copy(void* dst, const void* src, std::size_t bytes, const char* what) {
  if (bytes == 0) return;
  if (dst == nullptr || src == nullptr) throw Error(std::string("kiln::gpu::") + what + ": null pointer");
  std::memmove(dst, src, bytes);
}
}  // namespace detail

inline void memcpy_host_to_device(void* dst, const void* src, std::size_t bytes) {
  detail::checked_copy(dst, src, bytes, "memcpy_host_to_device");
}
inline void memcpy_device_to_host(void* dst, const void* src, std::size_t bytes) {
  detail::checked_copy(dst, src, bytes, "memcpy_device_to_host");
}
inline void memcpy_device_to_device(void* dst, const void* src, std::size_t bytes) {
  detail::checked_copy(dst, src, bytes, "memcpy_device_to_device");
}
inline void memset_device(void* dst, int value, std::size_t bytes) {
  if (bytes == 0) return;
  if (dst == nullptr) throw Error("kiln::gpu::memset_device: null pointer");
  std::memset(dst, value, bytes);
}

#endif

}  // namespace kiln::gpu
