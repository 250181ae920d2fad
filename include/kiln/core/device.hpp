#pragma once
// Device tags. A layer knows its device only through this tag; the tag picks
// the implementation (kiln::cpu:: functions or the CUDA kernel launchers) and
// the memory routines below.
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace kiln {

struct Cpu {
  static constexpr const char* name = "cpu";
};
struct Cuda {
  static constexpr const char* name = "cuda";
};

// Memory routines per device. Cuda's specialisation lives in
// <kiln/cuda/memory.hpp> (real CUDA under nvcc, the emulator otherwise).
template <class Device>
struct DeviceMemory;

template <>
struct DeviceMemory<Cpu> {
  // 64-byte alignment: one cache line, and a full AVX-512 vector.
  static constexpr std::size_t alignment = 64;
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* p = std::aligned_alloc(alignment, rounded);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void deallocate(void* p) { std::free(p); }
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void zero(void* dst, std::size_t bytes) {
    if (bytes) std::memset(dst, 0, bytes);
  }
  static void to_host(void* host, const void* src, std::size_t bytes) { copy(host, src, bytes); }
  static void from_host(void* dst, const void* host, std::size_t bytes) { copy(dst, host, bytes); }
};

// True when the backend for Device has been included (used for a readable
// static_assert when a Cuda layer is instantiated without <kiln/cuda.hpp>).
template <class Device>
inline constexpr bool backend_included = false;
template <>
inline constexpr bool backend_included<Cpu> = true;

}  // namespace kiln
