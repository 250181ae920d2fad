#pragma once
// Runs a grid on the CPU. Blocks are independent, so in fiber mode several worker OS threads take
// blocks from a shared counter; within a block the threads are fibers scheduled deterministically:
// in linear-id order (or reversed, or a seeded random permutation per sweep: emu_schedule.hpp),
// each runs until it waits at a barrier or warp collective or returns. In OS-thread mode (KILN_EMU_THREADS=1) every
// CUDA thread of a block is an OS thread (kept from block to block: emu_block_threads.hpp) and blocks
// run one after another.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kiln/gpu/emu_block_threads.hpp"
#include "kiln/gpu/emu_check.hpp"
#include "kiln/gpu/emu_schedule.hpp"
#include "kiln/gpu/emu_stack_pool.hpp"
#include "kiln/gpu/emu_state.hpp"
#include "kiln/gpu/emu_sync.hpp"
#include "kiln/gpu/emu_worker_pool.hpp"
#include "kiln/gpu/error.hpp"

namespace kiln::gpu::emu {

// Launches are serialised: plain-static __shared__ (OS-thread mode) and the worker pool assume it.
inline std::mutex& launch_mutex() {
  static std::mutex mutex;
  return mutex;
}

// A hook for tests: when set, every launch calls it with the kernel's name (as given to
// kiln::gpu::launch) before running the grid. tests/emu/launch_log.hpp records with it which
// kernels a test launched; production code never sets it.
using LaunchObserver = void (*)(const char* kernel_name);
inline std::atomic<LaunchObserver>& launch_observer() {
  static std::atomic<LaunchObserver> observer{nullptr};
  return observer;
}

// A block's state, threads and dynamic shared memory, reused from block to block.
struct BlockSlot {
  BlockContext block;
  std::vector<EmulatedThread> threads;
  std::unique_ptr<unsigned char[], void (*)(void*)> shared{nullptr, std::free};
  std::size_t shared_capacity = 0;

  unsigned char* dynamic_shared(std::size_t bytes) {
    if (bytes > shared_capacity) {
      const std::size_t rounded = (bytes + 127) / 128 * 128;
      void* memory = std::aligned_alloc(128, rounded);
      if (memory == nullptr) throw std::bad_alloc();
      shared.reset(static_cast<unsigned char*>(memory));
      shared_capacity = rounded;
    }
    return shared.get();
  }
};

// Everything a worker OS thread reuses from block to block: one slot, or one per block of a cluster.
struct Worker {
  std::vector<std::unique_ptr<BlockSlot>> slots;
  std::vector<BlockContext*> blocks;  // the slots' blocks, by cluster rank
  ClusterContext cluster;
#if KILN_EMU_THREADS
  BlockThreads block_threads;
#else
  FiberStackPool stacks;
#endif

  BlockSlot& slot(unsigned rank) {
    while (slots.size() <= rank) {
      slots.push_back(std::make_unique<BlockSlot>());
      blocks.push_back(&slots.back()->block);
    }
    return *slots[rank];
  }
};

inline Worker& this_worker() {
  thread_local Worker worker;
  return worker;
}

// Bytes of a float quiet NaN: uninitialised dynamic shared memory reads as NaN.
KILN_EMU_ENTRY void fill_with_nan(unsigned char* memory, std::size_t bytes);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void fill_with_nan(unsigned char* memory, std::size_t bytes) {
  const std::uint32_t nan_bits = 0x7fc00000u;
  std::size_t i = 0;
  for (; i + 4 <= bytes; i += 4) std::memcpy(memory + i, &nan_bits, 4);
  if (i < bytes) std::memcpy(memory + i, &nan_bits, bytes - i);
}
#endif

KILN_EMU_ENTRY void run_thread_body(EmulatedThread& self);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void run_thread_body(EmulatedThread& self) {
  BlockContext& b = *self.block;
  try {
    b.kernel->invoke(b.kernel->arguments);
  } catch (const AbortBlock&) {
  } catch (const std::exception& e) {
    [[maybe_unused]] BlockLock lock = lock_block(b);
    record_failure(b, "kiln emulator: " + thread_text(self) + " in " + block_text(b) + " threw: " + e.what() + "\n");
  } catch (...) {
    [[maybe_unused]] BlockLock lock = lock_block(b);
    record_failure(b, "kiln emulator: " + thread_text(self) + " in " + block_text(b) + " threw an exception\n");
  }
  thread_exited(self);
}
#endif

#if !KILN_EMU_THREADS

KILN_EMU_ENTRY void fiber_main();
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void fiber_main() {
  fiber_started();
  EmulatedThread& self = *current_thread;
  run_thread_body(self);
  fiber_finished(self.fiber);
}
#endif

inline void resume(EmulatedThread& t) {
  current_thread = &t;
  threadIdx = t.index;
  blockIdx = t.block->block_index;  // (a cluster's blocks share the scheduler)
  switch_fiber(scheduler_fiber, t.fiber);
  current_thread = nullptr;
}

// Runs the threads of `count` blocks (one, or a cluster's by rank) until all have returned: a sweep
// runs each block's runnable threads in the schedule's order, block after block. An error in one
// block of a cluster unwinds them all (record_failure marks the whole cluster aborting).
KILN_EMU_ENTRY void run_block_threads(Worker& worker, BlockContext* const* blocks, unsigned count);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void run_block_threads(Worker& worker, BlockContext* const* blocks, unsigned count) {
  const unsigned n = blocks[0]->thread_count;
  const Schedule order = schedule();
  std::vector<unsigned> permutation;
  if (order == Schedule::random) permutation.resize(n);
  auto all_exited = [&] {
    for (unsigned r = 0; r < count; ++r)
      if (blocks[r]->exited < n) return false;
    return true;
  };
  while (!all_exited()) {
    bool progressed = false;
    for (unsigned r = 0; r < count; ++r) {
      BlockContext& b = *blocks[r];
      if (b.exited == n) continue;
      if (order == Schedule::random) {  // a fresh order every sweep (Fisher-Yates)
        for (unsigned i = 0; i < n; ++i) permutation[i] = i;
        for (unsigned i = n; i > 1; --i) std::swap(permutation[i - 1], permutation[next_random(b.schedule_state) % i]);
      }
      for (unsigned k = 0; k < n; ++k) {
        EmulatedThread& t = b.threads[order == Schedule::random    ? permutation[k]
                                      : order == Schedule::reverse ? n - 1 - k
                                                                   : k];
        if (t.state == ThreadState::not_started) {
          if (b.aborting) {  // never started: nothing to unwind
            t.state = ThreadState::exited;
            ++b.exited;
            continue;
          }
          const FiberStack stack = worker.stacks.get(std::size_t{r} * n + t.linear_id);
          prepare_fiber(t.fiber, stack.bottom, stack.size, fiber_main);
          t.state = ThreadState::runnable;
          resume(t);
          progressed = true;
        } else if (t.state == ThreadState::runnable || (b.aborting && t.state != ThreadState::exited)) {
          resume(t);  // when aborting, the thread unwinds from where it waits
          progressed = true;
        }
      }
    }
    if (!progressed)  // cannot happen: waits check for deadlock
      for (unsigned r = 0; r < count; ++r)
        if (blocks[r]->exited < n && !blocks[r]->aborting)
          record_failure(*blocks[r],
                         "kiln emulator internal error: no runnable thread\n" + describe_stuck_block(*blocks[r]));
  }
}
#endif

#else  // KILN_EMU_THREADS

KILN_EMU_ENTRY void run_block_threads(Worker& worker, BlockContext* const* blocks, unsigned count);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void run_block_threads(Worker& worker, BlockContext* const* blocks, unsigned count) {
  BlockContext& b = *blocks[0];
  const KernelInvocation& k = *b.kernel;
  const unsigned n = b.thread_count;  // (a cluster's blocks: count x n threads, block i / n)
  try {
    worker.block_threads.run(count * n, [blocks, n, &k](unsigned i) {
      BlockContext& own = *blocks[i / n];
      EmulatedThread& self = own.threads[i % n];
      threadIdx = self.index;
      blockIdx = own.block_index;
      blockDim = k.block;
      gridDim = k.grid;
      current_thread = &self;
      run_thread_body(self);  // (catches what the kernel throws)
      current_thread = nullptr;
    });
  } catch (const std::exception& e) {
    [[maybe_unused]] BlockLock lock = lock_block(b);
    record_failure(b, std::string("kiln emulator: cannot start the OS threads of a block: ") + e.what() + "\n");
  }
}
#endif

#endif

// Sets up slot's block `index` of launch k for a run.
KILN_EMU_ENTRY void prepare_block(BlockSlot& slot, const KernelInvocation& k, uint3 index, std::uint64_t linear_block);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void prepare_block(BlockSlot& slot, const KernelInvocation& k, uint3 index, std::uint64_t linear_block) {
  BlockContext& b = slot.block;
  const unsigned n = k.block.x * k.block.y * k.block.z;
  b.kernel = &k;
  b.block_index = index;
  slot.threads.resize(n);
  for (unsigned i = 0; i < n; ++i) {
    EmulatedThread& t = slot.threads[i];
    t.index = {i % k.block.x, i / k.block.x % k.block.y, i / (k.block.x * k.block.y)};
    t.linear_id = i;
    t.block = &b;
    t.state = ThreadState::not_started;
    t.waiting_in = nullptr;
    t.async_copies.clear();  // a previous block's thread may have exited with copies in flight
    t.async_group_ends.clear();
    t.wgmma_ops.clear();
    t.wgmma_group_ends.clear();
    t.wgmma_fenced = false;
  }
  b.threads = slot.threads.data();
  b.thread_count = n;
  b.blocked = b.exited = b.barrier_arrivals = 0;
  b.barrier_true_predicates = 0;
  b.warp_waiting.assign((n + 31) / 32, 0u);
  b.warp_exited.assign((n + 31) / 32, 0u);
  b.cluster = nullptr;
  b.cluster_rank = 0;
  b.cluster_waiting = 0;
#if KILN_EMU_THREADS
  b.sync_mutex = &b.mutex;
  b.sync_wakeup = &b.wakeup;
#endif
  b.aborting = false;
  b.error.clear();
  b.dynamic_shared = slot.dynamic_shared(k.dynamic_shared_bytes);
  fill_with_nan(b.dynamic_shared, k.dynamic_shared_bytes);
  b.schedule_state = block_schedule_state(linear_block);
}
#endif

inline uint3 block_index_of(const KernelInvocation& k, std::uint64_t linear_block) {
  return {static_cast<unsigned>(linear_block % k.grid.x), static_cast<unsigned>(linear_block / k.grid.x % k.grid.y),
          static_cast<unsigned>(linear_block / (std::uint64_t{k.grid.x} * k.grid.y))};
}

// Runs block `linear_block` of launch k; returns its error message (empty if none).
KILN_EMU_ENTRY std::string run_block(Worker& worker, const KernelInvocation& k, std::uint64_t linear_block);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string run_block(Worker& worker, const KernelInvocation& k, std::uint64_t linear_block) {
  BlockSlot& slot = worker.slot(0);
  BlockContext& b = slot.block;
  prepare_block(slot, k, block_index_of(k, linear_block), linear_block);
  blockIdx = b.block_index;
  blockDim = k.block;
  gridDim = k.grid;
#if KILN_EMU_CHECK
  check_block_begin(b, linear_block);
  run_block_threads(worker, worker.blocks.data(), 1);
  check_block_end(b);
#else
  run_block_threads(worker, worker.blocks.data(), 1);
#endif
  return b.error;
}
#endif

inline unsigned cluster_size(const KernelInvocation& k) { return k.cluster.x * k.cluster.y * k.cluster.z; }

// Runs cluster `linear_cluster` of launch k (its blocks in rank order: x fastest, as
// %cluster_ctarank counts them) on one scheduler; returns the first error among its blocks.
KILN_EMU_ENTRY std::string run_cluster(Worker& worker, const KernelInvocation& k, std::uint64_t linear_cluster);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string run_cluster(Worker& worker, const KernelInvocation& k, std::uint64_t linear_cluster) {
  const unsigned count = cluster_size(k);
  const dim3 clusters{k.grid.x / k.cluster.x, k.grid.y / k.cluster.y, k.grid.z / k.cluster.z};
  const uint3 c{static_cast<unsigned>(linear_cluster % clusters.x),
                static_cast<unsigned>(linear_cluster / clusters.x % clusters.y),
                static_cast<unsigned>(linear_cluster / (std::uint64_t{clusters.x} * clusters.y))};
  ClusterContext& cluster = worker.cluster;
  cluster = ClusterContext{};
  for (unsigned r = 0; r < count; ++r) {
    const uint3 index{c.x * k.cluster.x + r % k.cluster.x, c.y * k.cluster.y + r / k.cluster.x % k.cluster.y,
                      c.z * k.cluster.z + r / (k.cluster.x * k.cluster.y)};
    BlockSlot& slot = worker.slot(r);
    prepare_block(slot, k, index, index.x + std::uint64_t{k.grid.x} * (index.y + std::uint64_t{k.grid.y} * index.z));
    slot.block.cluster = &cluster;
    slot.block.cluster_rank = r;
#if KILN_EMU_THREADS
    slot.block.sync_mutex = &worker.slot(0).block.mutex;  // one lock and wake-up for the cluster
    slot.block.sync_wakeup = &worker.slot(0).block.wakeup;
#endif
    cluster.thread_total += slot.block.thread_count;
  }
  cluster.blocks = worker.blocks.data();
  cluster.count = count;
  blockDim = k.block;
  gridDim = k.grid;
#if KILN_EMU_CHECK
  check_blocks_begin(worker.blocks.data(), count, linear_cluster);
  run_block_threads(worker, worker.blocks.data(), count);
  check_blocks_end(worker.blocks.data(), count);
#else
  run_block_threads(worker, worker.blocks.data(), count);
#endif
  for (unsigned r = 0; r < count; ++r)
    if (!worker.blocks[r]->error.empty()) return worker.blocks[r]->error;
  return {};
}
#endif

// Runs every block of the launch; throws Error with the first failure (lowest block index among
// the blocks that ran) after all workers stopped.
KILN_EMU_ENTRY void run_grid(const KernelInvocation& k);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void run_grid(const KernelInvocation& k) {
  if (current_thread != nullptr)
    throw Error("kiln emulator: kernel '" + std::string(k.name) + "' launched from inside a kernel");
  if (const LaunchObserver observe = launch_observer().load(std::memory_order_relaxed)) observe(k.name);
  const std::uint64_t block_count = std::uint64_t{k.grid.x} * k.grid.y * k.grid.z;
  // Clusters: each worker takes whole clusters (launch.hpp checked that they tile the grid).
  const unsigned per_cluster = cluster_size(k);
  const std::uint64_t unit_count = block_count / per_cluster;
#if KILN_EMU_CHECK
  check_launch_begin(k, block_count);
#endif
  std::atomic<std::uint64_t> next_block{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::uint64_t error_block = UINT64_MAX;
  std::string error;
  const std::function<void()> work = [&] {
    while (!failed.load(std::memory_order_relaxed)) {
      const std::uint64_t i = next_block.fetch_add(1);
      if (i >= unit_count) break;
#if KILN_EMU_CHECK
      if (profile_skips_block(i)) continue;
#endif
      std::string message;
      try {
        Worker& worker = this_worker();
        message = per_cluster == 1 ? run_block(worker, k, i) : run_cluster(worker, k, i);
      } catch (const std::exception& e) {
        message = std::string("kiln emulator: ") + e.what();
      }
      if (!message.empty()) {
        std::lock_guard lock(error_mutex);
        if (i < error_block) {
          error_block = i;
          error = std::move(message);
        }
        failed = true;
      }
    }
  };
#if KILN_EMU_THREADS || KILN_EMU_CHECK
  work();  // checking builds run one block at a time: __shared__ is a plain static there
#else
  const std::uint64_t helpers = std::min<std::uint64_t>(unit_count - 1, configured_worker_count() - 1);
  if (helpers == 0)
    work();
  else
    WorkerPool::instance().run(work, static_cast<unsigned>(helpers));
#endif
#if KILN_EMU_CHECK
  check_launch_end();
#endif
  if (failed) {
    while (!error.empty() && error.back() == '\n') error.pop_back();
    if (schedule() == Schedule::random)
      error += "\n  (schedule " + schedule_text() + ": rerun with KILN_EMU_SCHEDULE=" + schedule_text() + ")";
    throw Error(error);
  }
}
#endif

}  // namespace kiln::gpu::emu

#endif  // !KILN_GPU_REAL
