// kiln/io/io_error.hpp — the one exception type of kiln::io.
// Every message names the file it is about and what is wrong with it, so a user who sees only
// the message (a training log, a CLI error) can act on it.
#pragma once

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "kiln/io/separate.hpp"

namespace kiln::io {

class IoError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// "'<path>'": quoted so names with spaces read unambiguously. (Built by appending: g++ 12 at
// -O3 warns falsely about "'" + std::string, GCC bug 105651, and kiln builds with -Werror.)
KILN_IO_ENTRY std::string quoted(const std::filesystem::path& path);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY std::string quoted(const std::filesystem::path& path) {
  std::string out;
  out.reserve(path.native().size() + 2);
  out += '\'';
  out += path.native();
  out += '\'';
  return out;
}
#endif

// strerror for an errno value (strerror is fine here: glibc's returns a static table string
// for valid codes and kiln does not change locales between threads).
inline std::string errno_text(int error) { return std::strerror(error); }

// Formats 67108864 as "67,108,864": the pixel limits in messages are easier to read.
KILN_IO_ENTRY std::string with_thousands(unsigned long long value);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY std::string with_thousands(unsigned long long value) {
  std::string digits = std::to_string(value);
  std::string out;
  const std::size_t n = digits.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0 && (n - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}
#endif

}  // namespace detail
}  // namespace kiln::io
