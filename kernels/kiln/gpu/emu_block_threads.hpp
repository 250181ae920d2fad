#pragma once
// OS-thread mode (KILN_EMU_THREADS, the ThreadSanitizer build): the OS threads that run a block's
// CUDA threads, kept from block to block and launch to launch. Creating and joining blockDim
// threads for every block was most of that mode's cost (system time, and ThreadSanitizer's set-up
// of each thread). The hand-offs go through one mutex and condition variables, which
// ThreadSanitizer sees: everything a block did happens before the next block starts, as it did
// with threads joined and created afresh, and the threads of one block still run at once. A process
// forked after a launch must not launch in the child: the kept threads do not exist there.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL && KILN_EMU_THREADS

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace kiln::gpu::emu {

class BlockThreads {
 public:
  BlockThreads() = default;
  BlockThreads(const BlockThreads&) = delete;
  BlockThreads& operator=(const BlockThreads&) = delete;
  ~BlockThreads() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    for (const auto& slot : slots_) slot->wake.notify_one();
    for (const auto& slot : slots_) slot->thread.join();
  }

  // Runs body(i) for every i in [0, n), each on its own OS thread, all at once, and returns when
  // every one has returned. body must not throw. If the threads cannot be started, throws
  // (std::system_error) before any runs.
  void run(unsigned n, const std::function<void(unsigned)>& body) {
    std::unique_lock lock(mutex_);
    slots_.reserve(n);  // (a started thread's slot must not be lost to a throwing push_back)
    while (slots_.size() < n) {
      auto slot = std::make_unique<Slot>();
      Slot& started = *slot;
      const auto index = static_cast<unsigned>(slots_.size());
      started.thread = std::thread([this, &started, index] { serve(started, index); });
      slots_.push_back(std::move(slot));
    }
    body_ = &body;
    running_ = n;
    ++generation_;
    for (unsigned i = 0; i < n; ++i) {
      slots_[i]->go = generation_;
      slots_[i]->wake.notify_one();
    }
    done_.wait(lock, [this] { return running_ == 0; });
    body_ = nullptr;
  }

 private:
  struct Slot {
    std::thread thread;
    std::condition_variable wake;
    std::uint64_t go = 0;  // the generation this thread is to run next
  };

  void serve(Slot& slot, unsigned index) {
    std::uint64_t ran = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      slot.wake.wait(lock, [&] { return stopping_ || slot.go != ran; });
      if (stopping_) return;
      ran = slot.go;
      const std::function<void(unsigned)>& body = *body_;
      lock.unlock();
      body(index);
      lock.lock();
      if (--running_ == 0) done_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable done_;
  std::vector<std::unique_ptr<Slot>> slots_;
  const std::function<void(unsigned)>* body_ = nullptr;
  unsigned running_ = 0;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
};

}  // namespace kiln::gpu::emu

#endif  // !KILN_GPU_REAL && KILN_EMU_THREADS
