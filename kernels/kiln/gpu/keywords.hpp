#pragma once
// CUDA's declaration keywords. Under nvcc they are the compiler's own; for the emulator they
// vanish, except __shared__ (see below). __noinline__ is deliberately not defined: libstdc++
// uses it as an attribute name.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __launch_bounds__(...)

// __shared__ variables live once per block. With fibers, a block runs entirely on one worker OS
// thread and several workers run blocks at once, so one copy per OS thread is exactly one per
// running block. In OS-thread mode every CUDA thread is an OS thread, so the copy must be a plain
// static, and blocks run one after another.
// Checking builds (KILN_EMU_CHECK) run one block at a time and put every __shared__ variable in
// one linker section, whose bounds (__start_/__stop_kiln_emu_shared) tell the race checker which
// addresses are static shared memory.
#if KILN_EMU_THREADS
#define __shared__ static
#elif KILN_EMU_CHECK
#define __shared__ __attribute__((section("kiln_emu_shared"))) static
#else
#define __shared__ static thread_local
#endif

#endif  // !KILN_GPU_REAL

// `#pragma unroll` makes g++ -Wall warn (and no header can silence it); write KILN_UNROLL instead.
#if KILN_GPU_REAL || defined(__clang__)
#define KILN_UNROLL _Pragma("unroll")
#else
#define KILN_UNROLL
#endif
