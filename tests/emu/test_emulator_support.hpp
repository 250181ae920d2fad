#pragma once
// Helpers for the emulator's tests: a launch's error message, a typed device buffer and a scoped
// schedule choice.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kiln/gpu/gpu.hpp"

namespace kiln_emu_test {

// The message of the kiln::gpu::Error that `launch` throws, or "" if it throws none.
inline std::string launch_error(const std::function<void()>& launch) {
  try {
    launch();
  } catch (const kiln::gpu::Error& e) {
    return e.what();
  }
  return "";
}

// n values spread evenly over [lo, hi) by a fixed LCG: the same inputs on every run and platform.
inline std::vector<float> uniform(std::size_t n, std::uint64_t seed, float lo, float hi) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 3;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = lo + (hi - lo) * static_cast<float>((s >> 40) & 0xffffff) / 16777216.0f;
  }
  return v;
}

// n small halves in [-4, 4], exact in TF32 and BF16, whose products and short sums are exact in fp32
// (the tensor-core instructions' tests compare bit for bit with them).
inline std::vector<float> exact_values(std::size_t n, unsigned seed) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 7;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<int>((s >> 33) % 17) - 8) * 0.5f;
  }
  return v;
}

template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t count)
      : count_(count), data_(static_cast<T*>(kiln::gpu::device_malloc(count * sizeof(T)))) {}
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { kiln::gpu::device_free(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return data_; }
  std::size_t size() const { return count_; }
  void upload(const std::vector<T>& host) {
    kiln::gpu::memcpy_host_to_device(data_, host.data(), host.size() * sizeof(T));
  }
  void zero() { kiln::gpu::memset_device(data_, 0, count_ * sizeof(T)); }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    kiln::gpu::memcpy_device_to_host(host.data(), data_, count_ * sizeof(T));
    return host;
  }

 private:
  std::size_t count_;
  T* data_;
};

#if !KILN_GPU_REAL
// Runs the fibers of each block in the given order for the scope's duration.
class ScopedSchedule {
 public:
  explicit ScopedSchedule(kiln::gpu::emu::Schedule schedule) : saved_(kiln::gpu::emu::schedule()) {
    kiln::gpu::emu::set_schedule(schedule);
  }
  ~ScopedSchedule() { kiln::gpu::emu::set_schedule(saved_); }
  ScopedSchedule(const ScopedSchedule&) = delete;
  ScopedSchedule& operator=(const ScopedSchedule&) = delete;

 private:
  kiln::gpu::emu::Schedule saved_;
};
#endif

}  // namespace kiln_emu_test
