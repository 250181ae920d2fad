#pragma once
// CUDA's synchronisation and warp intrinsics for the emulator (nvcc provides its own). Each takes a
// defaulted CallSite so that the emulator's reports name the call site.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kiln/gpu/emu_sync.hpp"

namespace kiln::gpu::emu {

template <class T>
std::uint64_t to_bits(const T& value) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp shuffles move values of at most 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}

template <class T>
T from_bits(std::uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

template <class T>
T shuffle(const char* name, WarpOp op, unsigned mask, const T& value, int lane_argument, int width,
          const CallSite& where) {
  return from_bits<T>(warp_collective(name, {op, mask, to_bits(value), lane_argument, width}, where));
}

inline std::uint64_t vote(const char* name, WarpOp op, unsigned mask, std::uint64_t value, const CallSite& where) {
  return warp_collective(name, {op, mask, value, 0, 32}, where);
}

}  // namespace kiln::gpu::emu

// ---- block barriers ---------------------------------------------------------------------------
inline void __syncthreads(kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  kiln::gpu::emu::block_barrier("__syncthreads()", true, where);
}
inline int __syncthreads_count(int predicate, kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<int>(kiln::gpu::emu::block_barrier("__syncthreads_count()", predicate != 0, where));
}
inline int __syncthreads_and(int predicate, kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return kiln::gpu::emu::block_barrier("__syncthreads_and()", predicate != 0, where) ==
         blockDim.x * blockDim.y * blockDim.z;
}
inline int __syncthreads_or(int predicate, kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return kiln::gpu::emu::block_barrier("__syncthreads_or()", predicate != 0, where) != 0;
}

// ---- warp collectives -------------------------------------------------------------------------
inline void __syncwarp(unsigned mask = 0xffffffffu,
                       kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  kiln::gpu::emu::vote("__syncwarp()", kiln::gpu::emu::WarpOp::sync, mask, 0, where);
}
template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
              kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return kiln::gpu::emu::shuffle("__shfl_sync()", kiln::gpu::emu::WarpOp::shfl_idx, mask, var, src_lane, width, where);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                 kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return kiln::gpu::emu::shuffle("__shfl_up_sync()", kiln::gpu::emu::WarpOp::shfl_up, mask, var,
                                 static_cast<int>(delta), width, where);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return kiln::gpu::emu::shuffle("__shfl_down_sync()", kiln::gpu::emu::WarpOp::shfl_down, mask, var,
                                 static_cast<int>(delta), width, where);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                  kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return kiln::gpu::emu::shuffle("__shfl_xor_sync()", kiln::gpu::emu::WarpOp::shfl_xor, mask, var, lane_mask, width,
                                 where);
}
inline unsigned __ballot_sync(unsigned mask, int predicate,
                              kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<unsigned>(
      kiln::gpu::emu::vote("__ballot_sync()", kiln::gpu::emu::WarpOp::ballot, mask, predicate != 0, where));
}
inline int __any_sync(unsigned mask, int predicate,
                      kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<int>(
      kiln::gpu::emu::vote("__any_sync()", kiln::gpu::emu::WarpOp::any, mask, predicate != 0, where));
}
inline int __all_sync(unsigned mask, int predicate,
                      kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<int>(
      kiln::gpu::emu::vote("__all_sync()", kiln::gpu::emu::WarpOp::all, mask, predicate != 0, where));
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned value,
                                  kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<unsigned>(
      kiln::gpu::emu::vote("__reduce_add_sync()", kiln::gpu::emu::WarpOp::reduce_add, mask, value, where));
}
inline int __reduce_add_sync(unsigned mask, int value,
                             kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<int>(kiln::gpu::emu::vote("__reduce_add_sync()", kiln::gpu::emu::WarpOp::reduce_add, mask,
                                               static_cast<unsigned>(value), where));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned value,
                                  kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<unsigned>(
      kiln::gpu::emu::vote("__reduce_min_sync()", kiln::gpu::emu::WarpOp::reduce_min_unsigned, mask, value, where));
}
inline int __reduce_min_sync(unsigned mask, int value,
                             kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<int>(static_cast<unsigned>(kiln::gpu::emu::vote(
      "__reduce_min_sync()", kiln::gpu::emu::WarpOp::reduce_min_signed, mask, static_cast<unsigned>(value), where)));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned value,
                                  kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<unsigned>(
      kiln::gpu::emu::vote("__reduce_max_sync()", kiln::gpu::emu::WarpOp::reduce_max_unsigned, mask, value, where));
}
inline int __reduce_max_sync(unsigned mask, int value,
                             kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<int>(static_cast<unsigned>(kiln::gpu::emu::vote(
      "__reduce_max_sync()", kiln::gpu::emu::WarpOp::reduce_max_signed, mask, static_cast<unsigned>(value), where)));
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned value,
                                  kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<unsigned>(
      kiln::gpu::emu::vote("__reduce_and_sync()", kiln::gpu::emu::WarpOp::reduce_and, mask, value, where));
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned value,
                                 kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<unsigned>(
      kiln::gpu::emu::vote("__reduce_or_sync()", kiln::gpu::emu::WarpOp::reduce_or, mask, value, where));
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned value,
                                  kiln::gpu::emu::CallSite where = kiln::gpu::emu::CallSite::current()) {
  return static_cast<unsigned>(
      kiln::gpu::emu::vote("__reduce_xor_sync()", kiln::gpu::emu::WarpOp::reduce_xor, mask, value, where));
}
// The lanes of the caller's warp that have not exited (the emulator has no divergence to report).
inline unsigned __activemask() {
  const kiln::gpu::emu::EmulatedThread& self = kiln::gpu::emu::current("__activemask()");
  const kiln::gpu::emu::BlockContext& b = *self.block;
  const unsigned warp = self.linear_id / 32;
  return kiln::gpu::emu::lanes_present(b, warp) & ~b.warp_exited[warp];
}

// ---- memory ordering ------------------------------------------------------------------------------
namespace kiln::gpu::emu {
#if defined(KILN_EMU_TSAN_DETECTED)
// ThreadSanitizer does not model std::atomic_thread_fence (g++ rejects it under -fsanitize=thread):
// a seq_cst read-modify-write of one process-wide atomic orders memory for it instead.
inline void fence() {
  static std::atomic<unsigned> word{0};
  word.fetch_add(0u, std::memory_order_seq_cst);
}
#else
inline void fence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
#endif
}  // namespace kiln::gpu::emu
inline void __threadfence() { kiln::gpu::emu::fence(); }
inline void __threadfence_block() { kiln::gpu::emu::fence(); }
inline void __threadfence_system() { kiln::gpu::emu::fence(); }

template <class T>
T __ldg(const T* address) {
  return *address;
}

#endif  // !KILN_GPU_REAL
