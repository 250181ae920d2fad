#pragma once
// Asynchronous global -> shared copies (Ampere's cp.async), the building block of double-buffered
// shared-memory tiles:
//
//   kiln::gpu::cp_async<4>(&tile[i], &global[j], in_bounds);  // 4, 8 or 16 bytes; zeros if !in_bounds
//   kiln::gpu::cp_async_commit();                              // closes a group of copies
//   kiln::gpu::cp_async_wait<1>();                             // all but the newest 1 group have landed
//   __syncthreads();                                           // ... and are visible to the block
//
// Under nvcc for sm_80+ these are the PTX instructions cp.async.ca.shared.global (with src-size 0
// for the zero fill), cp.async.commit_group and cp.async.wait_group; below sm_80 a plain copy.
// A wait only covers the calling thread's own copies: reading another thread's copies needs a
// __syncthreads() after the wait, exactly as on the GPU.
//
// In the emulator a copy is recorded and performed by the wait that covers it, and its destination
// is filled with NaN when it is issued: a thread that reads the tile before waiting, or before the
// barrier that follows other threads' waits, reads NaN instead of silently getting the data.
// When !valid, `src` is not read (pass any valid address, e.g. the tensor's base).
#include <cstdint>
#include <cstring>

#include "kiln/gpu/config.hpp"
#include "kiln/gpu/keywords.hpp"

#if !KILN_GPU_REAL
#include <string>

#include "kiln/gpu/emu_state.hpp"
#if KILN_EMU_CHECK
#include "kiln/gpu/emu_check.hpp"
#endif
#include "kiln/gpu/error.hpp"
#endif

namespace kiln::gpu {

#if KILN_GPU_REAL

template <int Bytes>
__device__ __forceinline__ void cp_async(void* shared_dst, const void* global_src, bool valid = true) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const auto dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(global_src), "n"(Bytes),
               "r"(valid ? Bytes : 0)
               : "memory");
#else
  if (valid)
    memcpy(shared_dst, global_src, Bytes);
  else
    memset(shared_dst, 0, Bytes);
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  static_assert(N >= 0 && N <= 7, "cp.async.wait_group takes 0..7");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

#else  // the emulator

namespace emu {

inline void check_async_alignment(const void* p, unsigned bytes, const char* which) {
  if (reinterpret_cast<std::uintptr_t>(p) % bytes != 0)
    throw Error(std::string("kiln::gpu::cp_async<") + std::to_string(bytes) + ">: the " + which +
                " address is not aligned to " + std::to_string(bytes) + " bytes (misaligned address on the GPU)");
}

// The destination of an issued copy reads NaN until the copy is waited for. Out of line: inlined
// into a kernel, these stores would be instrumented as the kernel's own (clang's trace-stores runs
// after inlining) and the traffic counters would count a second shared-memory store per copy.
[[gnu::noinline]] inline void poison_async_destination(void* dst, unsigned bytes) {
  const std::uint32_t nan_bits = 0x7fc00000u;
  for (unsigned i = 0; i < bytes; i += 4) std::memcpy(static_cast<unsigned char*>(dst) + i, &nan_bits, 4);
}

// Performs the thread's oldest `count` copies.
inline void complete_async_copies(EmulatedThread& t, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    const AsyncCopy& c = t.async_copies[i];
#if KILN_EMU_CHECK
    check_async_copy_done(c.dst, c.bytes);
#endif
    if (c.zero_fill)
      std::memset(c.dst, 0, c.bytes);
    else
      std::memcpy(c.dst, c.src, c.bytes);
  }
  t.async_copies.erase(t.async_copies.begin(), t.async_copies.begin() + static_cast<std::ptrdiff_t>(count));
}

// cp.async.wait_group n: every committed group but the newest n is complete.
inline void wait_async_groups(std::size_t newest_pending) {
  EmulatedThread& t = current("kiln::gpu::cp_async_wait()");
  const std::size_t groups = t.async_group_ends.size();
  if (groups <= newest_pending) return;
  const std::size_t done_groups = groups - newest_pending;
  const std::size_t copies = t.async_group_ends[done_groups - 1];
  complete_async_copies(t, copies);
  t.async_group_ends.erase(t.async_group_ends.begin(),
                           t.async_group_ends.begin() + static_cast<std::ptrdiff_t>(done_groups));
  for (std::size_t& end : t.async_group_ends) end -= copies;
}

}  // namespace emu

template <int Bytes>
void cp_async(void* shared_dst, const void* global_src, bool valid = true,
              [[maybe_unused]] const emu::CallSite& where = emu::CallSite::current()) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
  emu::EmulatedThread& t = emu::current("kiln::gpu::cp_async()");
#if KILN_EMU_CHECK  // the global read, for the checker and the traffic counters (memcpy is not instrumented)
  emu::check_async_copy_issued(global_src, shared_dst, Bytes, valid, where);
#endif
  emu::check_async_alignment(shared_dst, Bytes, "shared-memory destination");
  if (valid) emu::check_async_alignment(global_src, Bytes, "global source");
  emu::poison_async_destination(shared_dst, Bytes);
  t.async_copies.push_back({shared_dst, global_src, static_cast<unsigned>(Bytes), !valid});
}

inline void cp_async_commit() {
  emu::EmulatedThread& t = emu::current("kiln::gpu::cp_async_commit()");
  t.async_group_ends.push_back(t.async_copies.size());
}

template <int N>
void cp_async_wait() {
  static_assert(N >= 0 && N <= 7, "cp.async.wait_group takes 0..7");
  emu::wait_async_groups(static_cast<std::size_t>(N));
}

// cp.async.wait_all: commits the open group and waits for everything.
inline void cp_async_wait_all() {
  emu::EmulatedThread& t = emu::current("kiln::gpu::cp_async_wait_all()");
  emu::complete_async_copies(t, t.async_copies.size());
  t.async_group_ends.clear();
}

#endif

}  // namespace kiln::gpu
