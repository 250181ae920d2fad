#pragma once
// The emulator's synchronisation core, shared by both modes: block barriers and warp collectives
// as rendezvous, plus detection of the bugs that would hang or misbehave on a GPU. Only waiting
// differs: a fiber yields to its worker's scheduler, an OS thread sleeps on the block's condition
// variable (and the block's mutex guards the state).
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#include <bit>
#include <cstdint>
#include <string>

#include "kiln/gpu/emu_diagnostics.hpp"
#include "kiln/gpu/emu_fiber.hpp"
#include "kiln/gpu/emu_state.hpp"

namespace kiln::gpu::emu {

#if KILN_EMU_CHECK  // the race checker's view of synchronisation (emu_check.hpp)
inline void check_after_barrier(BlockContext& b);
inline void check_after_warp_sync(BlockContext& b, unsigned warp);
#endif

#if KILN_EMU_THREADS
using BlockLock = std::unique_lock<std::mutex>;
inline BlockLock lock_block(BlockContext& b) { return BlockLock(*b.sync_mutex); }
inline void wake_all(BlockContext& b) { b.sync_wakeup->notify_all(); }
#else
struct BlockLock {};
inline BlockLock lock_block(BlockContext&) { return {}; }
inline void wake_all(BlockContext&) {}
#endif

// Records the block's first error and makes every thread unwind.
KILN_EMU_ENTRY void record_failure(BlockContext& b, std::string message);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void record_failure(BlockContext& b, std::string message) {
  if (!b.aborting) {
    b.aborting = true;
    b.error = std::move(message);
  }
  if (ClusterContext* c = b.cluster)  // the others may wait for it at the cluster barrier
    for (unsigned r = 0; r < c->count; ++r) c->blocks[r]->aborting = true;
  wake_all(b);
}
#endif

[[noreturn]] KILN_EMU_ENTRY void fail(BlockContext& b, std::string message);
#if KILN_EMU_DEFINITIONS
[[noreturn]] KILN_EMU_ENTRY void fail(BlockContext& b, std::string message) {
  record_failure(b, std::move(message));
  throw AbortBlock{};
}
#endif

inline void yield_to_scheduler([[maybe_unused]] EmulatedThread& self) {
#if !KILN_EMU_THREADS
  switch_fiber(self.fiber, scheduler_fiber);
#endif
}

// Blocks the caller until the collective it joined completes (or the block aborts).
KILN_EMU_ENTRY void wait_until_released(EmulatedThread& self, BlockContext& b, [[maybe_unused]] BlockLock& lock);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void wait_until_released(EmulatedThread& self, BlockContext& b, [[maybe_unused]] BlockLock& lock) {
#if KILN_EMU_THREADS
  b.sync_wakeup->wait(lock, [&] { return self.state == ThreadState::runnable || b.aborting; });
#else
  // Even the thread that completed the collective yields, so that after every barrier the
  // threads resume in schedule order (which is what makes missing barriers show reliably).
  yield_to_scheduler(self);
#endif
  if (b.aborting) throw AbortBlock{};
}
#endif

KILN_EMU_ENTRY void fail_if_stuck(BlockContext& b);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void fail_if_stuck(BlockContext& b) {
  if (b.blocked > 0 && b.blocked + b.cluster_waiting + b.exited == b.thread_count) fail(b, describe_stuck_block(b));
}
#endif

KILN_EMU_ENTRY void release_barrier(BlockContext& b);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void release_barrier(BlockContext& b) {
  const EmulatedThread& first = b.threads[0];
  for (unsigned i = 1; i < b.thread_count; ++i) {
    const EmulatedThread& t = b.threads[i];
    if (!same_site(t.waiting_at, first.waiting_at))
      fail(b, "kiln emulator: threads of one block wait at different barriers in " + block_text(b) + ":\n  " +
                  thread_text(first) + " " + waiting_text(first) + "\n  " + thread_text(t) + " " + waiting_text(t) +
                  "\n  Every thread of a block must reach the same __syncthreads().\n");
  }
  for (unsigned i = 0; i < b.thread_count; ++i) {
    b.threads[i].state = ThreadState::runnable;
    b.threads[i].result = b.barrier_true_predicates;
  }
  b.blocked -= b.thread_count;
  b.barrier_arrivals = 0;
  b.barrier_true_predicates = 0;
#if KILN_EMU_CHECK
  check_after_barrier(b);
#endif
  wake_all(b);
}
#endif

// __syncthreads and its _count/_and/_or forms. Returns how many threads passed a true predicate.
KILN_EMU_ENTRY std::uint64_t block_barrier(const char* name, bool predicate, const CallSite& where);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::uint64_t block_barrier(const char* name, bool predicate, const CallSite& where) {
  EmulatedThread& self = current(name);
  BlockContext& b = *self.block;
  [[maybe_unused]] BlockLock lock = lock_block(b);
  if (b.aborting) throw AbortBlock{};
  self.state = ThreadState::at_barrier;
  self.waiting_in = name;
  self.waiting_at = where;
  ++b.blocked;
  ++b.barrier_arrivals;
  b.barrier_true_predicates += predicate ? 1 : 0;
  if (b.barrier_arrivals == b.thread_count)
    release_barrier(b);
  else
    fail_if_stuck(b);
  wait_until_released(self, b, lock);
  return self.result;
}
#endif

// Lanes that exist in warp `warp` (the last warp of a block may be partial).
inline unsigned lanes_present(const BlockContext& b, unsigned warp) {
  const unsigned count = b.thread_count - warp * 32;
  return count >= 32 ? ~0u : (1u << count) - 1u;
}

KILN_EMU_ENTRY void complete_warp_collective(BlockContext& b, unsigned warp, unsigned participants,
                                             const EmulatedThread& last);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void complete_warp_collective(BlockContext& b, unsigned warp, unsigned participants,
                                             const EmulatedThread& last) {
  EmulatedThread* lanes = b.threads + warp * 32;
  for (unsigned lane : lanes_of(participants)) {
    const EmulatedThread& t = lanes[lane];
    if (t.request.op != last.request.op || t.request.mask != last.request.mask)
      fail(b, "kiln emulator: lanes of warp " + std::to_string(warp) + " disagree in " + block_text(b) + ":\n  " +
                  thread_text(last) + " " + waiting_text(last) + "\n  " + thread_text(t) + " " + waiting_text(t) +
                  "\n  All lanes named in a mask must call the same warp intrinsic with the same mask.\n");
  }
  const WarpOp op = last.request.op;
  unsigned votes = 0;
  std::uint64_t sum = 0, all_bits = ~std::uint64_t{0}, any_bits = 0, xor_bits = 0;
  std::int32_t min_signed = INT32_MAX, max_signed = INT32_MIN;
  std::uint32_t min_unsigned = UINT32_MAX, max_unsigned = 0;
  for (unsigned lane : lanes_of(participants)) {
    const std::uint64_t v = lanes[lane].request.value;
    if (v != 0) votes |= 1u << lane;
    const auto u = static_cast<std::uint32_t>(v);
    const auto s = static_cast<std::int32_t>(u);
    sum += u;
    all_bits &= u;
    any_bits |= u;
    xor_bits ^= u;
    if (s < min_signed) min_signed = s;
    if (s > max_signed) max_signed = s;
    if (u < min_unsigned) min_unsigned = u;
    if (u > max_unsigned) max_unsigned = u;
  }
  for (unsigned lane : lanes_of(participants)) {
    EmulatedThread& t = lanes[lane];
    const WarpRequest& r = t.request;
    std::uint64_t result = 0;
    const bool shuffle =
        op == WarpOp::shfl_idx || op == WarpOp::shfl_up || op == WarpOp::shfl_down || op == WarpOp::shfl_xor;
    if (shuffle) {
      const int width = r.width;
      if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        fail(b, "kiln emulator: " + thread_text(t) + " " + waiting_text(t) + " with width " + std::to_string(width) +
                    ": width must be a power of two from 1 to 32 in " + block_text(b) + "\n");
      const int self_lane = static_cast<int>(lane), group_start = self_lane / width * width;
      int source = self_lane;
      switch (op) {
        case WarpOp::shfl_idx:
          source = group_start + (r.lane_argument & (width - 1));
          break;
        case WarpOp::shfl_up: {
          const auto delta = static_cast<unsigned>(r.lane_argument);
          if (static_cast<unsigned>(self_lane - group_start) >= delta) source = self_lane - static_cast<int>(delta);
          break;
        }
        case WarpOp::shfl_down: {
          const auto delta = static_cast<unsigned>(r.lane_argument);
          if (static_cast<unsigned>(self_lane - group_start) + delta < static_cast<unsigned>(width))
            source = self_lane + static_cast<int>(delta);
          break;
        }
        case WarpOp::shfl_xor: {
          const int target = self_lane ^ r.lane_argument;
          // CUDA: a lane may read earlier groups but gets its own value for later ones.
          if (target >= 0 && target < group_start + width) source = target;
          break;
        }
        default:
          break;
      }
      // Reading a lane that does not take part is undefined on the GPU: return an all-ones
      // pattern (NaN for floats) so that the mistake shows.
      result = (participants >> source & 1u) ? lanes[source].request.value : ~std::uint64_t{0};
    } else {
      switch (op) {
        case WarpOp::sync:
          result = 0;
          break;
        case WarpOp::ballot:
          result = votes;
          break;
        case WarpOp::any:
          result = votes != 0;
          break;
        case WarpOp::all:
          result = votes == participants;
          break;
        case WarpOp::reduce_add:
          result = static_cast<std::uint32_t>(sum);
          break;
        case WarpOp::reduce_min_signed:
          result = static_cast<std::uint32_t>(min_signed);
          break;
        case WarpOp::reduce_max_signed:
          result = static_cast<std::uint32_t>(max_signed);
          break;
        case WarpOp::reduce_min_unsigned:
          result = min_unsigned;
          break;
        case WarpOp::reduce_max_unsigned:
          result = max_unsigned;
          break;
        case WarpOp::reduce_and:
          result = static_cast<std::uint32_t>(all_bits);
          break;
        case WarpOp::reduce_or:
          result = static_cast<std::uint32_t>(any_bits);
          break;
        case WarpOp::reduce_xor:
          result = static_cast<std::uint32_t>(xor_bits);
          break;
        default:
          break;
      }
    }
    t.result = result;
  }
  for (unsigned lane : lanes_of(participants)) lanes[lane].state = ThreadState::runnable;
  b.blocked -= static_cast<unsigned>(std::popcount(participants));
  b.warp_waiting[warp] &= ~participants;
#if KILN_EMU_CHECK
  check_after_warp_sync(b, warp);
#endif
  wake_all(b);
}
#endif

// A warp-level rendezvous: waits until every lane named in the mask has arrived, then computes
// each lane's result from all the lanes' operands.
KILN_EMU_ENTRY std::uint64_t warp_collective(const char* name, const WarpRequest& request, const CallSite& where);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::uint64_t warp_collective(const char* name, const WarpRequest& request, const CallSite& where) {
  EmulatedThread& self = current(name);
  BlockContext& b = *self.block;
  [[maybe_unused]] BlockLock lock = lock_block(b);
  if (b.aborting) throw AbortBlock{};
  const unsigned warp = self.linear_id / 32, lane = self.linear_id % 32;
  self.waiting_in = name;
  self.waiting_at = where;
  self.request = request;
  if (!(request.mask >> lane & 1u))
    fail(b, "kiln emulator: " + thread_text(self) + " in " + block_text(b) + " calls " + name + " at " +
                site_text(where) + " with mask " + hex_mask(request.mask) + ", which does not include its own lane " +
                std::to_string(lane) + ".\n");
  // Lanes beyond the end of a partial last warp do not exist: they are not waited for.
  const unsigned participants = request.mask & lanes_present(b, warp);
  if (const unsigned gone = participants & b.warp_exited[warp])
    fail(b, "kiln emulator: " + thread_text(self) + " in " + block_text(b) + " calls " + name + " at " +
                site_text(where) + " with mask " + hex_mask(request.mask) + ", but lanes " +
                ranges_text(lanes_of(gone)) + " of warp " + std::to_string(warp) +
                " named in the mask have already exited. On a GPU this hangs or reads undefined values; "
                "compute the mask with __ballot_sync before threads leave, or keep all lanes alive.\n");
  self.state = ThreadState::at_warp_op;
  ++b.blocked;
  b.warp_waiting[warp] |= 1u << lane;
  if ((b.warp_waiting[warp] & participants) == participants)
    complete_warp_collective(b, warp, participants, self);
  else
    fail_if_stuck(b);
  wait_until_released(self, b, lock);
  return self.result;
}
#endif

// A block of cluster c with threads at the cluster barrier (for messages; the first by rank).
inline const BlockContext& waiting_block(const ClusterContext& c) {
  for (unsigned r = 0; r < c.count; ++r)
    if (c.blocks[r]->cluster_waiting > 0) return *c.blocks[r];
  return *c.blocks[0];
}
// ... and one with returned threads.
inline const BlockContext* exited_block(const ClusterContext& c) {
  for (unsigned r = 0; r < c.count; ++r)
    if (c.blocks[r]->exited > 0) return c.blocks[r];
  return c.blocks[0];
}

// Called when a thread's kernel body returned (or unwound).
KILN_EMU_ENTRY void thread_exited(EmulatedThread& self);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void thread_exited(EmulatedThread& self) {
  BlockContext& b = *self.block;
  [[maybe_unused]] BlockLock lock = lock_block(b);
  self.state = ThreadState::exited;
  ++b.exited;
  b.warp_exited[self.linear_id / 32] |= 1u << (self.linear_id % 32);
  if (!b.aborting && !self.wgmma_ops.empty())
    record_failure(b,
                   "kiln emulator: " + thread_text(self) + " in " + block_text(b) + " returned with " +
                       std::to_string(self.wgmma_ops.size()) + " wgmma.mma_async not waited for (the first at " +
                       self.wgmma_ops.front().where.file + ":" + std::to_string(self.wgmma_ops.front().where.line) +
                       "): on a GPU its accumulators are never written. End with kiln::gpu::wgmma::wait_group<0>.\n");
  if (!b.aborting && b.blocked > 0 && b.blocked + b.cluster_waiting + b.exited == b.thread_count)
    record_failure(b, describe_stuck_block(b));
  if (ClusterContext* c = b.cluster) {
    ++c->exited;
    if (!b.aborting && c->arrivals > 0 && c->arrivals + c->exited == c->thread_total)
      record_failure(b, "kiln emulator: " + thread_text(self) + " in " + block_text(b) +
                            " returned while threads of its cluster wait at the cluster barrier:\n" +
                            describe_stuck_block(waiting_block(*c)) + describe_stuck_block(*exited_block(*c)) +
                            "  kiln::gpu::cluster::sync() must be reached by every thread of every block of the "
                            "cluster.\n");
  }
  if (b.exited == b.thread_count) wake_all(b);
}
#endif

// The cluster barrier (barrier.cluster.arrive + wait: kiln::gpu::cluster::sync). A cluster's blocks
// run together (emu_runner.hpp): on one worker's scheduler (fibers), or as OS threads sharing rank
// 0's mutex. Every thread of every block of the cluster must arrive, at the same call site; the
// barrier also orders shared-memory accesses across the cluster's blocks (what a GPU's
// release/acquire semantics give).
KILN_EMU_ENTRY void cluster_barrier(const CallSite& where);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void cluster_barrier(const CallSite& where) {
  EmulatedThread& self = current("kiln::gpu::cluster::sync");
  BlockContext& b = *self.block;
  ClusterContext* c = b.cluster;
  if (c == nullptr) {  // a launch without clusters is a cluster of one block on a GPU
    block_barrier("kiln::gpu::cluster::sync", false, where);
    return;
  }
  [[maybe_unused]] BlockLock lock = lock_block(b);
  if (b.aborting) throw AbortBlock{};
  self.state = ThreadState::at_cluster_barrier;
  self.waiting_in = "kiln::gpu::cluster::sync";
  self.waiting_at = where;
  ++b.cluster_waiting;
  ++c->arrivals;
  if (c->arrivals == c->thread_total) {
    const EmulatedThread& first = c->blocks[0]->threads[0];
    for (unsigned r = 0; r < c->count; ++r) {
      BlockContext& m = *c->blocks[r];
      for (unsigned i = 0; i < m.thread_count; ++i) {
        EmulatedThread& t = m.threads[i];
        if (!same_site(t.waiting_at, first.waiting_at))
          fail(b, "kiln emulator: threads of one cluster wait at different cluster barriers in " + block_text(m) +
                      ":\n  " + thread_text(first) + " of rank 0 " + waiting_text(first) + "\n  " + thread_text(t) +
                      " of rank " + std::to_string(r) + " " + waiting_text(t) +
                      "\n  Every thread of a cluster must reach the same kiln::gpu::cluster::sync().\n");
        t.state = ThreadState::runnable;
      }
      m.cluster_waiting = 0;
#if KILN_EMU_CHECK
      check_after_barrier(m);  // orders every block's shared-memory accesses, DSMEM included
#endif
    }
    c->arrivals = 0;
    wake_all(b);
  } else if (c->arrivals + c->exited == c->thread_total) {
    fail(b, "kiln emulator: deadlock in " + block_text(b) +
                ": threads of its cluster returned while others wait at the cluster barrier.\n" +
                describe_stuck_block(waiting_block(*c)) + describe_stuck_block(*exited_block(*c)) +
                "  kiln::gpu::cluster::sync() must be reached by every thread of every block of the cluster.\n");
  } else {
    fail_if_stuck(b);
  }
  wait_until_released(self, b, lock);
}
#endif

}  // namespace kiln::gpu::emu

#if KILN_EMU_CHECK
#include "kiln/gpu/emu_check.hpp"
#endif

#endif  // !KILN_GPU_REAL
