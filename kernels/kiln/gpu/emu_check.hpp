#pragma once
// Checking builds (KILN_EMU_CHECK, CMake -DKILN_EMU_CHECK=ON with clang): the emulator sees every
// load and store that kernel code makes, and checks shared memory like compute-sanitizer's
// racecheck + initcheck, global memory for accesses past the end of an allocation, and counts
// memory traffic per launch (emu_profile.hpp).
//
// How it sees the accesses: the kernels are compiled with clang's
// -fsanitize-coverage=trace-loads,trace-stores restricted to kernel functions (the allowlist
// tests/emu/check_allowlist.txt), which makes the compiler call __sanitizer_cov_load4(address) etc.
// before every load and store that survives optimisation; the return address names the
// instruction. No kernel source changes: nvcc output is untouched. The callback asks which fiber
// runs (current_thread) and classifies the address as the block's dynamic shared memory, static
// __shared__ memory (one linker section, keywords.hpp) or a device allocation
// (emu_allocations.hpp); anything else (stack, kernel parameters, the emulator's own state) is
// ignored.
//
// Race and sync checks, per byte of shared memory, within one block (shadow state):
//   * read of a byte another thread wrote since the last __syncthreads (read-after-write),
//   * write of a byte another thread read or wrote since the last __syncthreads (write-after-read,
//     write-after-write),
//   * read of a byte no thread of the block has written (uninitialised shared memory),
// where lanes of one warp are also ordered by a warp collective (__syncwarp, shuffles, votes)
// between the two accesses. A barrier not reached by every thread of the block is reported by
// the scheduler in every build (emu_sync.hpp). The first finding fails the launch with
// kiln::gpu::Error; the block then stops at its next barrier or exit.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL && KILN_EMU_CHECK

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kiln/gpu/emu_allocations.hpp"
#include "kiln/gpu/emu_diagnostics.hpp"
#include "kiln/gpu/emu_profile.hpp"
#include "kiln/gpu/emu_schedule.hpp"
#include "kiln/gpu/emu_state.hpp"
#include "kiln/gpu/emu_sync.hpp"

// The static __shared__ variables' section (keywords.hpp); weak: absent when no kernel has one.
extern "C" __attribute__((weak)) unsigned char __start_kiln_emu_shared[];
extern "C" __attribute__((weak)) unsigned char __stop_kiln_emu_shared[];

namespace kiln::gpu::emu {

// Race and init checks are on in checking builds unless KILN_EMU_RACECHECK=0 or set_race_check(false).
inline std::atomic<bool>& race_check_setting() {
  static std::atomic<bool> on{[] {
    const char* text = std::getenv("KILN_EMU_RACECHECK");
    return text == nullptr || std::strcmp(text, "0") != 0;
  }()};
  return on;
}
inline void set_race_check(bool on) { race_check_setting().store(on); }
inline bool race_check() { return race_check_setting().load(); }

// What the checker remembers about one byte of shared memory in the current block.
struct ShadowByte {
  std::uint32_t block_run = 0;           // which block run the entry belongs to; stale entries read as fresh
  std::uint32_t write_epoch = 0;         // barrier epoch of the last write; 0: never written in this block
  std::uint32_t read_epoch = 0;          // barrier epoch of the last reads
  std::uint16_t writer = 0, reader = 0;  // linear thread ids; reader == several_threads: more than one
  std::uint16_t write_warp_epoch = 0, read_warp_epoch = 0;
  std::uint16_t reader_warp = 0;          // warp of the readers, or several_warps
  std::uint16_t writer_proxy_fences = 0;  // the writer's fence.proxy.async count at the write
};
inline constexpr std::uint16_t several_threads = 0xffff, several_warps = 0xffff;

// One running block's checker state (a cluster's blocks each have one, by rank).
struct BlockCheck {
  BlockContext* block = nullptr;
  std::uint32_t epoch = 1;                  // +1 at every barrier of the block (and every cluster barrier)
  std::vector<std::uint16_t> warp_epoch;    // +1 at every warp collective of that warp
  std::vector<std::uint16_t> proxy_fences;  // per thread: its fence.proxy.async so far in the block
  std::uintptr_t dynamic_begin = 0, dynamic_end = 0;
  std::vector<ShadowByte> dynamic_shadow;
};
// The writer or reader of a byte recorded for an access from another block of the cluster
// (distributed shared memory): ordered only by barriers of the byte's block (a cluster barrier is one).
inline constexpr std::uint16_t remote_thread = 0xfffe;
inline constexpr unsigned remote_warp = 0xffffffffu;

struct CheckState {
  std::uint32_t block_run = 0;
  std::vector<BlockCheck> blocks;  // the running block, or a cluster's blocks by rank
  unsigned count = 0;              // of them running
  std::uintptr_t static_begin = 0, static_end = 0;
  std::vector<ShadowByte> static_shadow;

  BlockCheck* of(const BlockContext& b) {
    const unsigned r = b.cluster_rank;
    return r < count && blocks[r].block == &b ? &blocks[r] : nullptr;
  }
  // The running block whose dynamic shared memory holds `address`, if any.
  BlockCheck* owner_of(std::uintptr_t address) {
    for (unsigned r = 0; r < count; ++r)
      if (address >= blocks[r].dynamic_begin && address < blocks[r].dynamic_end) return &blocks[r];
    return nullptr;
  }
};

inline CheckState& check_state() {
  static CheckState state;  // one block (or one cluster) runs at a time in checking builds
  return state;
}

inline void check_launch_begin(const KernelInvocation& k, std::uint64_t block_count) {
  profile_launch_begin(k, block_count);
}
inline void check_launch_end() { profile_launch_end(); }

// The blocks of one run: a block, or a cluster's blocks by rank; `unit` its index among the launch's
// blocks or clusters (the profile's sampling).
inline void check_blocks_begin(BlockContext* const* bs, unsigned count, std::uint64_t unit) {
  CheckState& s = check_state();
  if (s.blocks.size() < count) s.blocks.resize(count);
  if (++s.block_run == 0) {  // wrapped: forget every entry
    for (BlockCheck& c : s.blocks)
      for (ShadowByte& e : c.dynamic_shadow) e = {};
    for (ShadowByte& e : s.static_shadow) e = {};
    s.block_run = 1;
  }
  s.count = count;
  for (unsigned r = 0; r < count; ++r) {
    BlockCheck& c = s.blocks[r];
    BlockContext& b = *bs[r];
    c.block = &b;
    c.epoch = 1;
    c.warp_epoch.assign((b.thread_count + 31) / 32, 0);
    c.proxy_fences.assign(b.thread_count, 0);
    c.dynamic_begin = reinterpret_cast<std::uintptr_t>(b.dynamic_shared);
    c.dynamic_end = c.dynamic_begin + b.kernel->dynamic_shared_bytes;
    if (c.dynamic_shadow.size() < c.dynamic_end - c.dynamic_begin)
      c.dynamic_shadow.resize(c.dynamic_end - c.dynamic_begin);
  }
  s.static_begin = reinterpret_cast<std::uintptr_t>(__start_kiln_emu_shared);
  s.static_end = reinterpret_cast<std::uintptr_t>(__stop_kiln_emu_shared);
  if (s.static_shadow.size() < s.static_end - s.static_begin) s.static_shadow.resize(s.static_end - s.static_begin);
  profile_blocks_begin(bs, count, unit);
}
inline void check_blocks_end(BlockContext* const* bs, unsigned count) {
  profile_blocks_end(bs, count);
  check_state().count = 0;
}
inline void check_block_begin(BlockContext& b, std::uint64_t linear_block) {
  BlockContext* one = &b;
  check_blocks_begin(&one, 1, linear_block);
}
inline void check_block_end(BlockContext& b) {
  BlockContext* one = &b;
  check_blocks_end(&one, 1);
}

// Called by the scheduler when a __syncthreads completes (for every block of a cluster when its
// barrier completes), and when a warp collective completes.
inline void check_after_barrier(BlockContext& b) {
  if (BlockCheck* c = check_state().of(b)) ++c->epoch;
  profile_block_flush(b);
}
inline void check_after_warp_sync(BlockContext& b, unsigned warp) {
  BlockCheck* c = check_state().of(b);
  if (c != nullptr && warp < c->warp_epoch.size()) ++c->warp_epoch[warp];
}

inline std::string shared_place_text(const CheckState& s, const BlockCheck& owner, std::uintptr_t address) {
  if (address >= owner.dynamic_begin && address < owner.dynamic_end)
    return "dynamic shared memory at byte offset " + std::to_string(address - owner.dynamic_begin) +
           (owner.block->cluster != nullptr
                ? " of the block of cluster rank " + std::to_string(owner.block->cluster_rank)
                : std::string());
  return "static __shared__ memory at byte " + std::to_string(address - s.static_begin) +
         " of the section kiln_emu_shared (the kernel's __shared__ variables)";
}

inline void report_shared_hazard(BlockContext& b, const EmulatedThread& self, const BlockCheck& owner,
                                 std::uintptr_t address, bool store, unsigned other, const char* other_did,
                                 const char* kind) {
  const CheckState& s = check_state();
  std::string message = "kiln emulator race check: " + thread_text(self) + " in " + block_text(b) + " " +
                        (store ? "writes " : "reads ") + shared_place_text(s, owner, address) + ", which ";
  if (other == several_threads)
    message += "several other threads";
  else if (other == remote_thread)
    message += "a thread of another block of the cluster";
  else
    message += thread_text(owner.block->threads[other]) +
               (owner.block != &b ? " of the block of rank " + std::to_string(owner.block->cluster_rank) : "");
  message += std::string(" ") + other_did + " since the last __syncthreads() of the memory's block: a " + kind +
             " race (on a GPU the two accesses happen in no defined order). Separate them with __syncthreads() "
             "(or __syncwarp() within one warp; across the blocks of a cluster, kiln::gpu::cluster::sync()).\n";
  record_failure(b, std::move(message));
}

inline void report_uninitialised_read(BlockContext& b, const EmulatedThread& self, const BlockCheck& owner,
                                      std::uintptr_t address) {
  record_failure(
      b, "kiln emulator init check: " + thread_text(self) + " in " + block_text(b) + " reads " +
             shared_place_text(check_state(), owner, address) +
             ", which no thread of its block (or cluster) has written: uninitialised shared memory (on a GPU it holds "
             "whatever was there before).\n");
}

// Lanes of one warp are ordered when a warp collective of that warp completed in between.
inline bool warp_ordered(unsigned other, std::uint16_t other_warp_epoch, unsigned warp, std::uint16_t warp_epoch) {
  return other / 32 == warp && other_warp_epoch != warp_epoch;
}

// An access of `size` bytes at `address` of owner's shared memory (shadow: its bytes' entries, up
// to `limit`) by `self`, a thread of owner's block or (remote) of another block of its cluster.
inline void check_shared_access(BlockContext& b, EmulatedThread& self, BlockCheck& owner, ShadowByte* shadow,
                                std::uintptr_t limit, std::uintptr_t address, unsigned size, bool store,
                                bool remote = false) {
  const CheckState& s = check_state();
  const auto me = remote ? remote_thread : static_cast<std::uint16_t>(self.linear_id);
  const unsigned warp = remote ? remote_warp : self.linear_id / 32;
  const std::uint16_t we = remote ? 0 : owner.warp_epoch[warp];
  const std::uint32_t epoch = owner.epoch;
  for (unsigned i = 0; i < size && address + i < limit; ++i) {
    ShadowByte& e = shadow[i];
    if (e.block_run != s.block_run) e = ShadowByte{s.block_run, 0, 0, 0, 0, 0, 0, 0, 0};
    if (!store) {
      if (e.write_epoch == 0) return report_uninitialised_read(b, self, owner, address + i);
      if (e.write_epoch == epoch && e.writer != me && !warp_ordered(e.writer, e.write_warp_epoch, warp, we))
        return report_shared_hazard(b, self, owner, address + i, false, e.writer, "wrote", "read-after-write");
      if (e.read_epoch != epoch || e.reader == me || (e.reader_warp == warp && e.read_warp_epoch != we)) {
        if (e.read_epoch != epoch || e.reader != me) {
          e.reader = me;
          e.reader_warp = static_cast<std::uint16_t>(remote ? several_warps : warp);
        }
      } else {
        e.reader = several_threads;
        if (e.reader_warp != warp) e.reader_warp = several_warps;
      }
      e.read_epoch = epoch;
      e.read_warp_epoch = we;
    } else {
      if (e.write_epoch == epoch && e.writer != me && !warp_ordered(e.writer, e.write_warp_epoch, warp, we))
        return report_shared_hazard(b, self, owner, address + i, true, e.writer, "wrote", "write-after-write");
      if (e.read_epoch == epoch) {
        const bool ordered = e.reader == several_threads
                                 ? e.reader_warp == warp && e.read_warp_epoch != we
                                 : e.reader == me || warp_ordered(e.reader, e.read_warp_epoch, warp, we);
        if (!ordered)
          return report_shared_hazard(b, self, owner, address + i, true, e.reader, "read", "write-after-read");
      }
      e.writer = me;
      e.write_epoch = epoch;
      e.write_warp_epoch = we;
      e.writer_proxy_fences = remote ? 0 : owner.proxy_fences[me];
    }
  }
}
// ... by a thread of the block `own`: its dynamic or static shared memory (shared: whether it is).
inline void check_own_shared_access(BlockContext& b, EmulatedThread& self, BlockCheck& own, std::uintptr_t address,
                                    unsigned size, bool store) {
  CheckState& s = check_state();
  if (address >= own.dynamic_begin && address < own.dynamic_end)
    check_shared_access(b, self, own, own.dynamic_shadow.data() + (address - own.dynamic_begin), own.dynamic_end,
                        address, size, store);
  else
    check_shared_access(b, self, own, s.static_shadow.data() + (address - s.static_begin), s.static_end, address, size,
                        store);
}

inline void report_past_end(BlockContext& b, const EmulatedThread& self, std::uintptr_t address, bool store,
                            const Allocation& a) {
  record_failure(b,
                 "kiln emulator bounds check: " + thread_text(self) + " in " + block_text(b) + " " +
                     (store ? "writes" : "reads") + " global memory " + std::to_string(address - a.end) +
                     " byte(s) past the end of a " + std::to_string(a.end - a.begin) +
                     "-byte device allocation (an out-of-bounds access: on a GPU it corrupts or reads another buffer, "
                     "or faults).\n");
}

// Every instrumented load and store of kernel code comes here.
inline void on_kernel_access(std::uintptr_t address, unsigned size, bool store, const void* site) {
  EmulatedThread* self = current_thread;
  if (self == nullptr) return;
  CheckState& s = check_state();
  BlockContext& b = *self->block;
  BlockCheck* own = s.of(b);
  if (own == nullptr || b.aborting) return;
  bool shared = false;
  if ((address >= own->dynamic_begin && address < own->dynamic_end) ||
      (address >= s.static_begin && address < s.static_end)) {
    shared = true;
    if (race_check()) check_own_shared_access(b, *self, *own, address, size, store);
  } else if (BlockCheck* owner = s.count > 1 ? s.owner_of(address) : nullptr) {  // another block of the cluster
    shared = true;
    if (race_check())
      check_shared_access(b, *self, *owner, owner->dynamic_shadow.data() + (address - owner->dynamic_begin),
                          owner->dynamic_end, address, size, store, true);
  } else {
    Allocation* a = nullptr;
    const GlobalLookup where = find_allocation(address, a);
    if (where == GlobalLookup::outside) return;
    if (where == GlobalLookup::past_end) return report_past_end(b, *self, address, store, *a);
    if (address + size > a->end) return report_past_end(b, *self, a->end, store, *a);
    profile_global_touch(*a, address, size);
  }
  profile_record(*self, reinterpret_cast<std::uintptr_t>(site), address, size, store, shared);
  // The random schedule also interleaves threads between their memory operations.
  if (schedule() == Schedule::random && (next_random(b.schedule_state) & 3) == 0) yield_to_scheduler(*self);
}

// cp.async (async_copy.hpp) copies with memcpy, which is not instrumented: it reports its two
// halves here, the global read at issue and the shared write when the thread waits. The traffic
// counters also get the shared write at issue (the LDGSTS request writes shared memory as one
// warp-level access; zero fill writes too). The read and the write have sites of their own, and a
// zero-fill lane records an empty read: the counters group the k-th execution of a site by every
// lane into one request, which a read recorded by some lanes only would shift.
inline void check_async_copy_issued(const void* global_src, void* shared_dst, unsigned bytes, bool valid,
                                    const CallSite& where) {
  const auto site = (reinterpret_cast<std::uintptr_t>(where.file) * 31 + where.line) << 1;
  if (valid)
    on_kernel_access(reinterpret_cast<std::uintptr_t>(global_src), bytes, false, reinterpret_cast<const void*>(site));
  EmulatedThread* self = current_thread;
  if (self == nullptr) return;
  CheckState& s = check_state();
  const BlockCheck* own = s.of(*self->block);
  if (own == nullptr || self->block->aborting) return;
  if (!valid) profile_record(*self, site, 0, 0, false, false);
  const auto address = reinterpret_cast<std::uintptr_t>(shared_dst);
  if ((address >= own->dynamic_begin && address < own->dynamic_end) ||
      (address >= s.static_begin && address < s.static_end))
    profile_record(*self, site | 1, address, bytes, true, true);
}
inline void check_async_copy_done(void* shared_dst, unsigned bytes) {
  EmulatedThread* self = current_thread;
  if (self == nullptr) return;
  CheckState& s = check_state();
  BlockContext& b = *self->block;
  BlockCheck* own = s.of(b);
  if (own == nullptr || b.aborting || !race_check()) return;
  const auto address = reinterpret_cast<std::uintptr_t>(shared_dst);
  if ((address >= own->dynamic_begin && address < own->dynamic_end) ||
      (address >= s.static_begin && address < s.static_end))
    check_own_shared_access(b, *self, *own, address, bytes, true);
}

// fence.proxy.async.shared::cta by the current thread (kiln/gpu/wgmma.hpp): its shared-memory writes
// so far become visible to the tensor cores' reads through the async proxy.
inline void check_proxy_fence() {
  EmulatedThread* self = current_thread;
  if (self == nullptr) return;
  if (BlockCheck* own = check_state().of(*self->block)) ++own->proxy_fences[self->linear_id];
}

// A wgmma.mma_async's read of shared memory (the async proxy), on behalf of the issuing thread: a read
// for the race and init checks, and every byte must have been written before its writer's latest
// fence.proxy.async (the generic proxy's writes, cp.async's included, are not otherwise visible to
// the tensor cores).
inline void check_async_proxy_read(std::uintptr_t address, unsigned size, const CallSite& where) {
  EmulatedThread* self = current_thread;
  if (self == nullptr) return;
  CheckState& s = check_state();
  BlockContext& b = *self->block;
  BlockCheck* own = s.of(b);
  if (own == nullptr || b.aborting || !race_check()) return;
  const bool dynamic = address >= own->dynamic_begin && address + size <= own->dynamic_end;
  if (!dynamic && !(address >= s.static_begin && address + size <= s.static_end)) return;
  const ShadowByte* shadow = dynamic ? own->dynamic_shadow.data() + (address - own->dynamic_begin)
                                     : s.static_shadow.data() + (address - s.static_begin);
  for (unsigned i = 0; i < size; ++i) {
    const ShadowByte& e = shadow[i];
    if (e.block_run != s.block_run || e.write_epoch == 0) continue;  // unwritten: the init check reports it
    if (e.writer == remote_thread) continue;  // (wgmma reads its own block's memory; a remote write is raced)
    if (own->proxy_fences[e.writer] == e.writer_proxy_fences)
      return record_failure(b, "kiln emulator proxy check: the wgmma.mma_async at " + std::string(where.file) + ":" +
                                   std::to_string(where.line) + " issued by " + thread_text(*self) + " in " +
                                   block_text(b) + " reads " + shared_place_text(s, *own, address + i) + ", which " +
                                   thread_text(b.threads[e.writer]) +
                                   " wrote with no fence.proxy.async after it (kiln::gpu::wgmma::fence_proxy_async): "
                                   "the tensor cores read shared memory through the async proxy and may not see "
                                   "the write. Fence after the writes (cp.async: after its wait), then "
                                   "__syncthreads().\n");
  }
  check_own_shared_access(b, *self, *own, address, size, false);
}

}  // namespace kiln::gpu::emu

// The callbacks clang's -fsanitize-coverage=trace-loads,trace-stores inserts. Weak: every
// translation unit that includes this header defines them, the linker keeps one.
#define KILN_EMU_ACCESS_CALLBACK(kind, bytes, type, store)                                    \
  extern "C" __attribute__((weak, used)) void __sanitizer_cov_##kind##bytes(type* address) {  \
    kiln::gpu::emu::on_kernel_access(reinterpret_cast<std::uintptr_t>(address), bytes, store, \
                                     __builtin_return_address(0));                            \
  }
KILN_EMU_ACCESS_CALLBACK(load, 1, std::uint8_t, false)
KILN_EMU_ACCESS_CALLBACK(load, 2, std::uint16_t, false)
KILN_EMU_ACCESS_CALLBACK(load, 4, std::uint32_t, false)
KILN_EMU_ACCESS_CALLBACK(load, 8, std::uint64_t, false)
KILN_EMU_ACCESS_CALLBACK(load, 16, __int128, false)
KILN_EMU_ACCESS_CALLBACK(store, 1, std::uint8_t, true)
KILN_EMU_ACCESS_CALLBACK(store, 2, std::uint16_t, true)
KILN_EMU_ACCESS_CALLBACK(store, 4, std::uint32_t, true)
KILN_EMU_ACCESS_CALLBACK(store, 8, std::uint64_t, true)
KILN_EMU_ACCESS_CALLBACK(store, 16, __int128, true)
#undef KILN_EMU_ACCESS_CALLBACK

#endif  // !KILN_GPU_REAL && KILN_EMU_CHECK
