#pragma once
// A small persistent pool of OS threads that run independent blocks of a grid at once (fiber mode).
// Threads live for the whole program so that their fiber stacks and __shared__ copies are reused.
// Size: KILN_EMU_WORKERS (default: the hardware's thread count, at most 8); 1 runs blocks serially.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kiln/gpu/error.hpp"

namespace kiln::gpu::emu {

inline unsigned configured_worker_count() {
  static const unsigned count = [] {
    if (const char* text = std::getenv("KILN_EMU_WORKERS"); text && *text) {
      char* end = nullptr;
      const unsigned long value = std::strtoul(text, &end, 10);
      if (*end != '\0' || value < 1 || value > 256)
        throw Error("KILN_EMU_WORKERS must be a number from 1 to 256, not '" + std::string(text) + "'");
      return static_cast<unsigned>(value);
    }
    return std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
  }();
  return count;
}

class WorkerPool {
 public:
  static WorkerPool& instance() {
    static WorkerPool pool(configured_worker_count() - 1);
    return pool;
  }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  ~WorkerPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  // Runs job() on the calling thread and on up to `helpers` pool threads; returns when all are done.
  // job must be safe to call concurrently and must not throw.
  void run(const std::function<void()>& job, unsigned helpers) {
    helpers = std::min<unsigned>(helpers, static_cast<unsigned>(threads_.size()));
    if (helpers > 0) {
      std::lock_guard lock(mutex_);
      job_ = &job;
      seats_ = helpers;
      ++generation_;
    }
    if (helpers > 0) wake_.notify_all();
    job();
    if (helpers > 0) {
      std::unique_lock lock(mutex_);
      seats_ = 0;  // helpers that have not started yet stay out
      done_.wait(lock, [&] { return busy_ == 0; });
      job_ = nullptr;
    }
  }

 private:
  explicit WorkerPool(unsigned helpers) {
    for (unsigned i = 0; i < helpers; ++i) threads_.emplace_back([this] { serve(); });
  }

  void serve() {
    std::uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && seats_ > 0); });
      if (stopping_) return;
      seen = generation_;
      --seats_;
      ++busy_;
      const std::function<void()>* job = job_;
      lock.unlock();
      (*job)();
      lock.lock();
      if (--busy_ == 0) done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void()>* job_ = nullptr;
  std::uint64_t generation_ = 0;
  unsigned seats_ = 0, busy_ = 0;
  bool stopping_ = false;
};

}  // namespace kiln::gpu::emu

#endif  // !KILN_GPU_REAL
