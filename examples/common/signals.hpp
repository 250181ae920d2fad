#pragma once
// SIGINT / SIGTERM: the first one sets a flag that the training loop polls (it finishes the
// current step, saves, and exits 130); a second one exits at once.
#include <atomic>
#include <csignal>
#include <cstring>
#include <unistd.h>

namespace kiln::programs {

inline std::atomic<int>& stop_signal() {
  static std::atomic<int> signal{0};
  return signal;
}

inline bool stop_requested() { return stop_signal().load(std::memory_order_relaxed) != 0; }

namespace detail {
extern "C" inline void kiln_on_stop_signal(int sig) {
  if (stop_signal().exchange(sig) != 0) {
    // Second signal: leave now (async-signal-safe calls only).
    static const char msg[] = "\nkiln: second interrupt, exiting without saving\n";
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(130);
  }
  static const char msg[] =
      "\nkiln: interrupt received: finishing the current step and saving (press Ctrl-C again to quit at once)\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
}
}  // namespace detail

inline void install_stop_handlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = detail::kiln_on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

}  // namespace kiln::programs
