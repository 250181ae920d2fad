#pragma once
// The emulator's record of device allocations, kept only in checking builds (KILN_EMU_CHECK): the
// race checker and the traffic counters classify an address as global memory by looking it up
// here, and an access just past the end of an allocation (in the guard gap device_malloc leaves
// after it) is reported as out of bounds. Per allocation a bitmap of the 32-byte sectors touched
// by the current launch gives the launch's distinct global bytes.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL && KILN_EMU_CHECK

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>
#include <vector>

namespace kiln::gpu::emu {

// Bytes left unused after every allocation in checking builds: an overrun lands there, not in the
// next allocation.
inline constexpr std::size_t allocation_guard_bytes = 256;

struct Allocation {
  std::uintptr_t begin = 0, end = 0;
  std::vector<std::uint64_t> touched_sectors;  // bitmap, valid for launch `touched_launch`
  std::uint64_t touched_launch = 0;
};

struct AllocationRegistry {
  std::mutex mutex;
  std::map<std::uintptr_t, Allocation> by_begin;
  std::uint64_t generation = 1;  // bumped on every change: invalidates lookup caches
};

inline AllocationRegistry& allocation_registry() {
  static AllocationRegistry registry;
  return registry;
}

inline void register_allocation(const void* pointer, std::size_t bytes) {
  AllocationRegistry& r = allocation_registry();
  std::lock_guard lock(r.mutex);
  const auto begin = reinterpret_cast<std::uintptr_t>(pointer);
  r.by_begin[begin] = Allocation{begin, begin + bytes, {}, 0};
  ++r.generation;
}

inline void unregister_allocation(const void* pointer) {
  AllocationRegistry& r = allocation_registry();
  std::lock_guard lock(r.mutex);
  r.by_begin.erase(reinterpret_cast<std::uintptr_t>(pointer));
  ++r.generation;
}

enum class GlobalLookup { outside, inside, past_end };

// Kernels run while the host cannot allocate (launches are synchronous), so a lookup during a
// launch needs no lock; the last hit is cached per OS thread.
// The last gap between allocations seen is cached too (kernels touch their stack all the time).
inline GlobalLookup find_allocation(std::uintptr_t address, Allocation*& found) {
  thread_local Allocation* last = nullptr;
  thread_local std::uintptr_t gap_begin = 0, gap_end = 0;
  thread_local std::uint64_t last_generation = 0;
  AllocationRegistry& r = allocation_registry();
  if (last_generation == r.generation) {
    if (last != nullptr && address >= last->begin && address < last->end) {
      found = last;
      return GlobalLookup::inside;
    }
    if (address >= gap_begin && address < gap_end) return GlobalLookup::outside;
  } else {
    last = nullptr;
    gap_begin = gap_end = 0;
    last_generation = r.generation;
  }
  auto next = r.by_begin.upper_bound(address);
  const std::uintptr_t next_begin = next == r.by_begin.end() ? UINTPTR_MAX : next->first;
  if (next == r.by_begin.begin()) {
    gap_begin = 0;
    gap_end = next_begin;
    return GlobalLookup::outside;
  }
  Allocation& a = std::prev(next)->second;
  found = &a;
  if (address < a.end) {
    last = &a;
    return GlobalLookup::inside;
  }
  if (address < a.end + allocation_guard_bytes) return GlobalLookup::past_end;
  gap_begin = a.end + allocation_guard_bytes;
  gap_end = next_begin;
  return GlobalLookup::outside;
}

}  // namespace kiln::gpu::emu

#endif
