#pragma once
// Compile-time selection of kiln's GPU backend.
//
//   KILN_GPU_REAL      1 when nvcc compiles this translation unit (__CUDACC__): the CUDA runtime is used.
//   KILN_EMU_THREADS   1: the emulator runs every CUDA thread on its own std::thread (for ThreadSanitizer).
//                      0 (default): the threads of a block are fibers on one OS thread.
//   KILN_EMU_UCONTEXT  1: fibers switch with ucontext (portable, slower); default on non-x86-64.
//   KILN_EMU_ASAN      1 when AddressSanitizer instruments this translation unit (fiber switches are annotated).
//   KILN_EMU_CHECK     1: a checking build (CMake -DKILN_EMU_CHECK=ON, clang): kernel loads and stores are
//                      instrumented and seen by the race checker and the traffic counters (emu_check.hpp).

#if defined(__CUDACC__)
#define KILN_GPU_REAL 1
#else
#define KILN_GPU_REAL 0
#endif

#if defined(__SANITIZE_THREAD__)
#define KILN_EMU_TSAN_DETECTED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KILN_EMU_TSAN_DETECTED 1
#endif
#endif

#ifndef KILN_EMU_THREADS
// ThreadSanitizer does not understand hand-made fiber switches: use OS threads under it.
#if defined(KILN_EMU_TSAN_DETECTED)
#define KILN_EMU_THREADS 1
#else
#define KILN_EMU_THREADS 0
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define KILN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_EMU_ASAN 1
#endif
#endif
#ifndef KILN_EMU_ASAN
#define KILN_EMU_ASAN 0
#endif

#ifndef KILN_EMU_UCONTEXT
#if defined(__x86_64__)
#define KILN_EMU_UCONTEXT 0
#else
#define KILN_EMU_UCONTEXT 1
#endif
#endif

#ifndef KILN_EMU_CHECK
#define KILN_EMU_CHECK 0
#endif
#if KILN_EMU_CHECK && !KILN_GPU_REAL && KILN_EMU_THREADS
#error "KILN_EMU_CHECK needs the fiber emulator (not OS-thread mode / ThreadSanitizer)"
#endif

// The emulator's larger run-time functions (the grid runner, barriers and warp collectives,
// diagnostics, launch checks, device memory, stream capture) are declared with KILN_EMU_ENTRY and
// defined under #if KILN_EMU_DEFINITIONS. They are inline, so every unit that launches a kernel
// compiles them again (about 1.5 CPU-s at -O3). A program of many units may compile them once:
// KILN_EMU_SEPARATE in all its units and, in exactly one of them, also KILN_EMU_IMPLEMENTATION
// before including kiln (kiln's own targets do: kiln_emu_once in CMakeLists.txt). All of them need
// the same flags (KILN_EMU_THREADS, sanitizers). Without the macro the library is header-only as
// before.
#if !KILN_GPU_REAL && defined(KILN_EMU_SEPARATE)
#define KILN_EMU_ENTRY
#if defined(KILN_EMU_IMPLEMENTATION)
#define KILN_EMU_DEFINITIONS 1
#else
#define KILN_EMU_DEFINITIONS 0  // declared only: defined in the KILN_EMU_IMPLEMENTATION unit
#endif
#else
#define KILN_EMU_ENTRY inline
#define KILN_EMU_DEFINITIONS 1
#endif
