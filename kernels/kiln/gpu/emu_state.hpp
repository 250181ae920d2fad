#pragma once
// The emulator's view of a running block: one EmulatedThread per CUDA thread, and the block's
// synchronisation state (barrier arrivals, warp-collective rendezvous, exited threads).
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kiln/gpu/emu_fiber.hpp"
#include "kiln/gpu/error.hpp"
#include "kiln/gpu/vector_types.hpp"

#if KILN_EMU_THREADS
#include <condition_variable>
#include <mutex>
#endif

// CUDA's built-in variables. Per OS thread: the scheduler rewrites threadIdx whenever it resumes
// a fiber, and the others when a worker starts a block.
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
inline constexpr int warpSize = 32;

namespace kiln::gpu::emu {

// Where a kernel called an intrinsic (std::source_location needs a newer clang than 14).
struct CallSite {
  const char* file = "";
  unsigned line = 0;
  static constexpr CallSite current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) noexcept {
    return {file, line};
  }
};

enum class ThreadState : std::uint8_t { not_started, runnable, at_barrier, at_warp_op, at_cluster_barrier, exited };

enum class WarpOp : std::uint8_t {
  sync,
  shfl_idx,
  shfl_up,
  shfl_down,
  shfl_xor,
  ballot,
  any,
  all,
  reduce_add,
  reduce_min_signed,
  reduce_max_signed,
  reduce_min_unsigned,
  reduce_max_unsigned,
  reduce_and,
  reduce_or,
  reduce_xor,
};

// What a lane brings to a warp collective.
struct WarpRequest {
  WarpOp op = WarpOp::sync;
  unsigned mask = 0;
  std::uint64_t value = 0;  // the lane's operand, bit-copied
  int lane_argument = 0;    // source lane, delta or xor mask
  int width = 32;
};

struct BlockContext;

// A cp.async the thread issued and has not waited for (kiln/gpu/async_copy.hpp): performed by
// the wait, not at issue, so that reading the destination early shows (it is NaN until then).
struct AsyncCopy {
  void* dst = nullptr;
  const void* src = nullptr;
  unsigned bytes = 0;
  bool zero_fill = false;
};

// A wgmma.mma_async the thread issued and has not waited for (kiln/gpu/wgmma.hpp): performed by the
// wgmma.wait_group that covers it, as a cp.async is; `operands` holds the shared-memory words this
// thread's part of the product reads, as they were at issue, to catch a kernel that overwrites
// them before the wait.
struct WarpgroupMma {
  float* d = nullptr;  // the thread's accumulator registers
  int n = 0;           // N of m64nNk8 / m64nNk16
  bool bf16 = false;
  bool accumulate = false;
  std::uint64_t a = 0, b = 0;  // the shared-memory matrix descriptors
  std::vector<std::uint32_t> operands;
  CallSite where;
};

struct EmulatedThread {
  uint3 index{0, 0, 0};
  unsigned linear_id = 0;
  BlockContext* block = nullptr;
  ThreadState state = ThreadState::not_started;
  const char* waiting_in = nullptr;  // the intrinsic it waits in, for diagnostics
  CallSite waiting_at;
  WarpRequest request;
  std::uint64_t result = 0;                   // what the collective it waited in returned to it
  std::vector<AsyncCopy> async_copies;        // issued cp.async, oldest first
  std::vector<std::size_t> async_group_ends;  // async_copies.size() at each commit
  std::vector<WarpgroupMma> wgmma_ops;        // issued wgmma.mma_async, oldest first
  std::vector<std::size_t> wgmma_group_ends;  // wgmma_ops.size() at each commit
  bool wgmma_fenced = false;                  // a wgmma.fence since the last wait (or the start)
#if !KILN_EMU_THREADS
  FiberContext fiber;
#endif
};

// One kernel launch, type-erased: invoke(arguments) runs the kernel body for the current thread.
struct KernelInvocation {
  const char* name = "";
  void (*invoke)(const void* arguments) = nullptr;
  const void* arguments = nullptr;
  dim3 grid, block;
  std::size_t dynamic_shared_bytes = 0;
  dim3 cluster{1, 1, 1};  // thread-block cluster dimensions (kiln/gpu/cluster.hpp; 1 x 1 x 1: none)
};

// The blocks of one thread-block cluster, run together by one worker's scheduler (fiber mode), and
// the cluster barrier's state (kiln/gpu/cluster.hpp).
struct ClusterContext {
  BlockContext* const* blocks = nullptr;  // by rank
  unsigned count = 0;
  unsigned thread_total = 0;  // threads of all its blocks
  unsigned arrivals = 0;      // threads waiting at the cluster barrier
  unsigned exited = 0;        // threads of all its blocks that returned
};

struct BlockContext {
  const KernelInvocation* kernel = nullptr;
  uint3 block_index{0, 0, 0};
  EmulatedThread* threads = nullptr;
  unsigned thread_count = 0;
  unsigned char* dynamic_shared = nullptr;

  unsigned blocked = 0;  // threads waiting at a barrier or warp collective
  unsigned exited = 0;
  unsigned barrier_arrivals = 0;
  std::uint64_t barrier_true_predicates = 0;
  std::vector<unsigned> warp_waiting;  // per warp: lanes waiting in a warp collective
  std::vector<unsigned> warp_exited;   // per warp: lanes that returned from the kernel

  ClusterContext* cluster = nullptr;  // a cluster launch's (nullptr otherwise)
  unsigned cluster_rank = 0;          // this block's rank in it
  unsigned cluster_waiting = 0;       // its threads waiting at the cluster barrier

  std::uint64_t schedule_state = 0;  // the random schedule's generator (emu_schedule.hpp)
  bool aborting = false;             // an error was found: every thread unwinds
  std::string error;
#if KILN_EMU_THREADS
  std::mutex mutex;
  std::condition_variable wakeup;
  // What guards the block's state and wakes its threads: its own, or (a cluster's block) rank 0's,
  // shared by the cluster's blocks (the cluster barrier changes them all).
  std::mutex* sync_mutex = &mutex;
  std::condition_variable* sync_wakeup = &wakeup;
#endif
};

// The CUDA thread this OS thread is executing right now (nullptr outside kernels).
inline thread_local EmulatedThread* current_thread = nullptr;

[[noreturn]] inline void used_outside_kernel(const char* what) {
  throw Error(std::string("kiln emulator: ") + what +
              " was called outside a kernel launched through kiln::gpu::launch");
}

inline EmulatedThread& current(const char* what) {
  if (current_thread == nullptr) [[unlikely]]
    used_outside_kernel(what);
  return *current_thread;
}

// Thrown through kernel code to unwind the threads of a block once an error has been recorded.
// Deliberately not a std::exception.
struct AbortBlock {};

}  // namespace kiln::gpu::emu

#endif  // !KILN_GPU_REAL
