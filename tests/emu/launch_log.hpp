#pragma once
// Which kernels a test launched (the kernel table's coverage check, test_conv_igemm's selection
// check): the emulator's launch hook (kiln::gpu::emu::launch_observer) collects the base names
// ("relu_forward_kernel") while recording is on. Test-only; Backend<Cuda> knows nothing of it.
#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "kiln/gpu/gpu.hpp"

namespace kiln_test {

namespace detail {
struct LaunchLog {
  std::mutex mutex;
  std::set<std::string> names, full_names;
  std::map<std::string, int> counts;  // launches per full name
};
inline LaunchLog& launch_log() {
  static LaunchLog log;
  return log;
}
}  // namespace detail

// "k::conv2d_forward_kernel<3>", "conv2d_forward_kernel<3>" or (KILN_LAUNCH((...)) with the
// template arguments' commas in parentheses) "(conv2d_forward_kernel<3, 64>)" -> "conv2d_forward_kernel"
inline std::string kernel_base_name(const char* spelled) {
  std::string s(spelled);
  s = s.substr(0, s.find('<'));
  s = s.substr(std::min(s.find_first_not_of("( "), s.size()));
  const std::size_t colon = s.rfind(':');
  if (colon != std::string::npos) s = s.substr(colon + 1);
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

inline void record_launch(const char* spelled) {
  std::lock_guard lock(detail::launch_log().mutex);
  detail::launch_log().names.insert(kernel_base_name(spelled));
  detail::launch_log().full_names.insert(spelled);
  ++detail::launch_log().counts[spelled];
}

// Turns the log on (clearing it) or off.
inline void record_launches(bool on) {
  if (on) {
    std::lock_guard lock(detail::launch_log().mutex);
    detail::launch_log().names.clear();
    detail::launch_log().full_names.clear();
    detail::launch_log().counts.clear();
  }
  kiln::gpu::emu::launch_observer().store(on ? &record_launch : nullptr);
}

// The base names of the kernels launched while recording was on.
inline std::set<std::string> launched_kernels() {
  std::lock_guard lock(detail::launch_log().mutex);
  return detail::launch_log().names;
}

}  // namespace kiln_test

namespace kiln_test {
// The names as launched, template arguments included ("batchnorm_apply_kernel<4, true>").
inline std::set<std::string> launched_kernel_names() {
  std::lock_guard lock(detail::launch_log().mutex);
  return detail::launch_log().full_names;
}
}  // namespace kiln_test

namespace kiln_test {
// How many times the kernel of this full name was launched while recording was on.
inline int launch_count(const std::string& full_name) {
  std::lock_guard lock(detail::launch_log().mutex);
  const auto it = detail::launch_log().counts.find(full_name);
  return it == detail::launch_log().counts.end() ? 0 : it->second;
}
}  // namespace kiln_test
