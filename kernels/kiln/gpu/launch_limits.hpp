#pragma once
// Launch-configuration checks done before every launch in both modes, so that the emulator refuses
// what a GPU would refuse, with a message that names the kernel. Also the registry of kernels that
// opted in to more than 48 KiB of dynamic shared memory.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>

#include "kiln/gpu/config.hpp"
#include "kiln/gpu/device.hpp"
#include "kiln/gpu/error.hpp"

#if KILN_GPU_REAL
#include "kiln/gpu/cuda_check.hpp"
#else
#include "kiln/gpu/vector_types.hpp"
#endif

namespace kiln::gpu {

inline constexpr unsigned max_threads_per_block = 1024;
inline constexpr std::size_t default_max_dynamic_shared_bytes = 48 * 1024;
inline constexpr std::size_t max_dynamic_shared_bytes = 227 * 1024;  // sm_80/sm_90 opt-in limit

namespace detail {

using kernel_key = void (*)();

struct SharedOptIns {
  std::mutex mutex;
  std::map<kernel_key, std::size_t> bytes;
};
inline SharedOptIns& shared_opt_ins() {
  static SharedOptIns registry;
  return registry;
}

inline std::size_t opted_in_shared_bytes(kernel_key kernel) {
  SharedOptIns& registry = shared_opt_ins();
  std::lock_guard lock(registry.mutex);
  const auto found = registry.bytes.find(kernel);
  return found == registry.bytes.end() ? default_max_dynamic_shared_bytes : found->second;
}

KILN_EMU_ENTRY std::string dims(const dim3& d);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string dims(const dim3& d) {
  char text[40];  // not a chain of string +: g++ 12 warns falsely on it (-Wrestrict)
  std::snprintf(text, sizeof text, "(%u,%u,%u)", d.x, d.y, d.z);
  return text;
}
#endif

// Thread-block clusters (sm_90): at most 8 blocks, the portable limit (16 needs an opt-in kiln does
// not make), and whole clusters in every grid dimension.
inline constexpr unsigned max_cluster_blocks = 8;
KILN_EMU_ENTRY void validate_cluster(const char* name, dim3 grid, dim3 cluster);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void validate_cluster(const char* name, dim3 grid, dim3 cluster) {
  const std::string who = std::string("kiln::gpu::launch_cluster(") + name + "): ";
  const std::uint64_t blocks = std::uint64_t{cluster.x} * cluster.y * cluster.z;
  if (blocks == 0) throw Error(who + "cluster " + dims(cluster) + " has no blocks");
  if (blocks > max_cluster_blocks)
    throw Error(who + "cluster " + dims(cluster) + " has " + std::to_string(blocks) + " blocks; at most " +
                std::to_string(max_cluster_blocks) + " (the portable cluster size)");
  if (grid.x % cluster.x != 0 || grid.y % cluster.y != 0 || grid.z % cluster.z != 0)
    throw Error(who + "grid " + dims(grid) + " is not a whole number of clusters " + dims(cluster));
}
#endif

KILN_EMU_ENTRY void validate_launch(const char* name, kernel_key kernel, dim3 grid, dim3 block,
                                    std::size_t dynamic_shared_bytes);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void validate_launch(const char* name, kernel_key kernel, dim3 grid, dim3 block,
                                    std::size_t dynamic_shared_bytes) {
  const std::string who = std::string("kiln::gpu::launch(") + name + "): ";
  const std::uint64_t threads = std::uint64_t{block.x} * block.y * block.z;
  if (threads == 0) throw Error(who + "block " + dims(block) + " has no threads");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) throw Error(who + "grid " + dims(grid) + " has no blocks");
  if (threads > max_threads_per_block)
    throw Error(who + "block " + dims(block) + " has " + std::to_string(threads) + " threads; CUDA allows at most " +
                std::to_string(max_threads_per_block) + " per block");
  if (block.x > 1024 || block.y > 1024 || block.z > 64)
    throw Error(who + "block " + dims(block) + " exceeds the per-dimension limits (1024,1024,64)");
  if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    throw Error(who + "grid " + dims(grid) + " exceeds the limits (2147483647,65535,65535)");
  if (dynamic_shared_bytes > max_dynamic_shared_bytes)
    throw Error(who + "asks for " + std::to_string(dynamic_shared_bytes) +
                " bytes of dynamic shared memory; a block can have at most " +
                std::to_string(max_dynamic_shared_bytes) + " (227 KiB)");
  if (dynamic_shared_bytes > default_max_dynamic_shared_bytes) {
    const std::size_t allowed = opted_in_shared_bytes(kernel);
    if (dynamic_shared_bytes > allowed)
      throw Error(who + "asks for " + std::to_string(dynamic_shared_bytes) +
                  " bytes of dynamic shared memory, more than the " + std::to_string(allowed) +
                  " it may use; above 48 KiB call kiln::gpu::set_max_dynamic_shared(kernel, bytes) first");
  }
}
#endif

}  // namespace detail

// Lets `kernel` use up to `bytes` of dynamic shared memory (CUDA needs this opt-in above 48 KiB).
template <class... Params>
void set_max_dynamic_shared(void (*kernel)(Params...), std::size_t bytes) {
  if (bytes > max_dynamic_shared_bytes)
    throw Error("kiln::gpu::set_max_dynamic_shared: " + std::to_string(bytes) + " bytes is more than the " +
                std::to_string(max_dynamic_shared_bytes) + " a block can have");
#if KILN_GPU_REAL
  detail::check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
                     "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
#endif
  detail::SharedOptIns& registry = detail::shared_opt_ins();
  std::lock_guard lock(registry.mutex);
  registry.bytes[reinterpret_cast<detail::kernel_key>(kernel)] = bytes;
}

// set_max_dynamic_shared(Kernel, bytes) once per device (the opt-in is the device's): asked before
// the first launch there, not on every launch of a training step, nor inside a graph's capture once
// an uncaptured step has run. Devices 0-63 are remembered; others ask every time.
template <auto Kernel>
void set_max_dynamic_shared_once(std::size_t bytes) {
  static std::array<std::atomic<bool>, 64> asked{};
  const int device = current_device();
  const bool cached = device >= 0 && device < 64;
  if (cached && asked[static_cast<std::size_t>(device)].load(std::memory_order_acquire)) return;
  set_max_dynamic_shared(Kernel, bytes);
  if (cached) asked[static_cast<std::size_t>(device)].store(true, std::memory_order_release);
}

}  // namespace kiln::gpu
