#pragma once
// Messages for the kernel bugs the emulator finds: who waits where, who has exited.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "kiln/gpu/emu_state.hpp"

namespace kiln::gpu::emu {

KILN_EMU_ENTRY std::string hex_mask(unsigned mask);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string hex_mask(unsigned mask) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", mask);
  return text;
}
#endif

KILN_EMU_ENTRY std::string dims_text(unsigned x, unsigned y, unsigned z);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string dims_text(unsigned x, unsigned y, unsigned z) {
  char text[40];  // not a chain of string +: g++ 12 warns falsely on it (-Wrestrict)
  std::snprintf(text, sizeof text, "(%u,%u,%u)", x, y, z);
  return text;
}
#endif

KILN_EMU_ENTRY std::string site_text(const CallSite& where);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string site_text(const CallSite& where) {
  return std::string(where.file) + ":" + std::to_string(where.line);
}
#endif

// "0-15, 17, 20-31" from sorted ids.
KILN_EMU_ENTRY std::string ranges_text(const std::vector<unsigned>& ids);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string ranges_text(const std::vector<unsigned>& ids) {
  std::string text;
  for (std::size_t i = 0; i < ids.size();) {
    std::size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!text.empty()) text += ", ";
    text += std::to_string(ids[i]);
    if (j > i) {
      text += '-';
      text += std::to_string(ids[j]);
    }
    i = j + 1;
  }
  return text;
}
#endif

KILN_EMU_ENTRY std::vector<unsigned> lanes_of(unsigned mask);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::vector<unsigned> lanes_of(unsigned mask) {
  std::vector<unsigned> lanes;
  for (unsigned lane = 0; lane < 32; ++lane)
    if (mask >> lane & 1u) lanes.push_back(lane);
  return lanes;
}
#endif

KILN_EMU_ENTRY std::string block_text(const BlockContext& b);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string block_text(const BlockContext& b) {
  const KernelInvocation& k = *b.kernel;
  std::string text = "kernel '" + std::string(k.name) + "', block " +
                     dims_text(b.block_index.x, b.block_index.y, b.block_index.z) + " (grid " +
                     dims_text(k.grid.x, k.grid.y, k.grid.z) + ", block size " +
                     dims_text(k.block.x, k.block.y, k.block.z);
  if (b.cluster != nullptr)
    text +=
        ", cluster " + dims_text(k.cluster.x, k.cluster.y, k.cluster.z) + ", rank " + std::to_string(b.cluster_rank);
  return text + ")";
}
#endif

KILN_EMU_ENTRY std::string thread_text(const EmulatedThread& t);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string thread_text(const EmulatedThread& t) {
  return "thread " + dims_text(t.index.x, t.index.y, t.index.z) + " (linear " + std::to_string(t.linear_id) +
         ", warp " + std::to_string(t.linear_id / 32) + " lane " + std::to_string(t.linear_id % 32) + ")";
}
#endif

KILN_EMU_ENTRY std::string waiting_text(const EmulatedThread& t);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string waiting_text(const EmulatedThread& t) {
  std::string text = std::string("wait in ") + t.waiting_in;
  if (t.state == ThreadState::at_warp_op) text += " with mask " + hex_mask(t.request.mask);
  return text + " at " + site_text(t.waiting_at);
}
#endif

// Called when every thread of the block is either waiting or exited: nothing can make progress.
KILN_EMU_ENTRY std::string describe_stuck_block(const BlockContext& b);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string describe_stuck_block(const BlockContext& b) {
  // Group by what each thread is doing, in order of first appearance.
  std::vector<std::string> order;
  std::map<std::string, std::vector<unsigned>> groups;
  bool barrier_waiters = false, warp_waiters = false;
  for (unsigned i = 0; i < b.thread_count; ++i) {
    const EmulatedThread& t = b.threads[i];
    std::string what;
    if (t.state == ThreadState::exited) {
      what = "have exited (returned from the kernel)";
    } else if (t.state == ThreadState::at_barrier || t.state == ThreadState::at_warp_op ||
               t.state == ThreadState::at_cluster_barrier) {
      what = waiting_text(t);
      if (t.state == ThreadState::at_barrier) barrier_waiters = true;
      if (t.state == ThreadState::at_warp_op) warp_waiters = true;
    } else {
      what = "are runnable";
    }
    if (!groups.count(what)) order.push_back(what);
    groups[what].push_back(i);
  }
  std::string message = "kiln emulator: deadlock in " + block_text(b) + ": no thread can continue.\n";
  for (const std::string& what : order) {
    const auto& ids = groups[what];
    message += "  threads (linear ids) " + ranges_text(ids) + " [" + std::to_string(ids.size()) + " of " +
               std::to_string(b.thread_count) + "] " + what + "\n";
  }
  if (barrier_waiters)
    message +=
        "  A barrier (__syncthreads) must be reached by every thread of the block: is it inside a condition "
        "that not all threads satisfy, after an early return, or are threads at different barriers?\n";
  if (warp_waiters)
    message +=
        "  A warp collective (__shfl_*_sync, __ballot_sync, __syncwarp, ...) must be reached by every lane named "
        "in its mask (lane = linear id % 32).\n";
  return message;
}
#endif

inline bool same_site(const CallSite& a, const CallSite& b) {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

}  // namespace kiln::gpu::emu

#endif  // !KILN_GPU_REAL
