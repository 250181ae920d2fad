#pragma once
// Fiber stacks: mmap'd once per worker thread with a PROT_NONE guard page below each (an overflow
// faults instead of silently corrupting the neighbour), and reused by every block and launch.
// Size: KILN_EMU_STACK_KB (default 256); kernels with large local arrays may need more.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL && !KILN_EMU_THREADS

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

#include "kiln/gpu/error.hpp"

#if KILN_EMU_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace kiln::gpu::emu {

inline std::size_t page_size() {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

inline std::size_t configured_stack_bytes() {
  static const std::size_t bytes = [] {
    std::size_t kib = 256;
    if (const char* text = std::getenv("KILN_EMU_STACK_KB"); text && *text) {
      char* end = nullptr;
      const unsigned long long value = std::strtoull(text, &end, 10);
      if (*end != '\0' || value < 16 || value > (1ull << 20))
        throw Error("KILN_EMU_STACK_KB must be a number of KiB between 16 and 1048576, not '" + std::string(text) +
                    "'");
      kib = static_cast<std::size_t>(value);
    }
    const std::size_t page = page_size();
    return (kib * 1024 + page - 1) / page * page;
  }();
  return bytes;
}

struct FiberStack {
  unsigned char* bottom = nullptr;  // lowest usable byte, just above the guard page
  std::size_t size = 0;
};

class FiberStackPool {
 public:
  FiberStackPool() = default;
  FiberStackPool(const FiberStackPool&) = delete;
  FiberStackPool& operator=(const FiberStackPool&) = delete;
  ~FiberStackPool() {
    for (const FiberStack& stack : stacks_) munmap(stack.bottom - page_size(), stack.size + page_size());
  }

  // Stack number `index`, created on first use.
  FiberStack get(std::size_t index) {
    while (stacks_.size() <= index) stacks_.push_back(create());
#if KILN_EMU_ASAN
    // A finished fiber never returns from its first frame, so its redzones stay poisoned.
    __asan_unpoison_memory_region(stacks_[index].bottom, stacks_[index].size);
#endif
    return stacks_[index];
  }

 private:
  static FiberStack create() {
    const std::size_t size = configured_stack_bytes(), guard = page_size();
    void* mapping =
        mmap(nullptr, size + guard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping == MAP_FAILED)
      throw Error("kiln emulator: cannot map a fiber stack of " + std::to_string(size) + " bytes");
    if (mprotect(mapping, guard, PROT_NONE) != 0) {
      munmap(mapping, size + guard);
      throw Error("kiln emulator: cannot protect a fiber stack's guard page");
    }
    return {static_cast<unsigned char*>(mapping) + guard, size};
  }

  std::vector<FiberStack> stacks_;
};

}  // namespace kiln::gpu::emu

#endif  // !KILN_GPU_REAL && !KILN_EMU_THREADS
