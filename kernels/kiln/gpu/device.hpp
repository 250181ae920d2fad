#pragma once
// What kiln runs on: `emulated` is a compile-time fact of the translation unit; device_available()
// says whether a real GPU can be used.
#include <string>

#include "kiln/gpu/config.hpp"

#if KILN_GPU_REAL
#include "kiln/gpu/cuda_check.hpp"
#else
#include "kiln/gpu/emu_capture.hpp"
#include "kiln/gpu/emu_worker_pool.hpp"
#endif

namespace kiln::gpu {

inline constexpr bool emulated = !KILN_GPU_REAL;

inline bool device_available() {
#if KILN_GPU_REAL
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return count > 0;
#else
  return false;
#endif
}

// The current device's index (the emulator is device 0).
inline int current_device() {
  int device = 0;
#if KILN_GPU_REAL
  detail::check_cuda(cudaGetDevice(&device), "cudaGetDevice");
#endif
  return device;
}

inline std::string device_name() {
#if KILN_GPU_REAL
  cudaDeviceProp properties{};
  detail::check_cuda(cudaGetDeviceProperties(&properties, current_device()), "cudaGetDeviceProperties");
  return properties.name;
#elif KILN_EMU_THREADS
  return "kiln CPU emulator (one OS thread per CUDA thread)";
#else
  return "kiln CPU emulator (fibers, " + std::to_string(emu::configured_worker_count()) + " worker threads)";
#endif
}

// Waits for all queued GPU work (the emulator runs launches synchronously: nothing to wait for).
inline void synchronize() {
#if KILN_GPU_REAL
  detail::check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
#else
  emu::refuse_during_capture("synchronize (cudaDeviceSynchronize)");
#endif
}

}  // namespace kiln::gpu
