#pragma once
// Shared by kiln-train and kiln-colorize: error reporting in one format
//   <program>: error: <file>: <problem>
// exit codes (0 ok, 1 error, 2 usage, 130 interrupted), durations ("10m", "90s", "1h30m").
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kiln::programs {

inline constexpr int exit_ok = 0;
inline constexpr int exit_error = 1;
inline constexpr int exit_usage = 2;
inline constexpr int exit_interrupted = 130;

// An error about one file (or one option): printed as "<program>: error: <subject>: <problem>".
class ProgramError : public std::runtime_error {
 public:
  ProgramError(std::string subject, std::string problem, int exit_code = exit_error)
      : std::runtime_error(subject.empty() ? problem : subject + ": " + problem), subject_(std::move(subject)),
        exit_code_(exit_code) {}
  const std::string& subject() const { return subject_; }
  int exit_code() const { return exit_code_; }

 private:
  std::string subject_;
  int exit_code_;
};

// A usage error (bad option value): exit code 2.
inline ProgramError usage_error(std::string option, std::string problem) {
  return ProgramError(std::move(option), std::move(problem), exit_usage);
}

// kiln::io messages already name the file ("cannot read image 'x.png': ..."). When the subject
// is that same file, drop the quoted copy so the line reads "x.png: cannot read image: ...".
inline std::string without_quoted(std::string message, const std::string& file) {
  if (file.empty()) return message;
  const std::string quoted = " '" + file + "'";
  if (auto at = message.find(quoted); at != std::string::npos) message.erase(at, quoted.size());
  return message;
}

// Thrown after the errors were already printed (several bad files): just exit with the code.
struct AlreadyReported {
  int exit_code = exit_error;
};

// Splits "… 'some/file.png': problem" into the first quoted name and the message without it.
inline std::string first_quoted(const std::string& message) {
  const auto a = message.find('\'');
  if (a == std::string::npos) return {};
  const auto b = message.find('\'', a + 1);
  if (b == std::string::npos) return {};
  return message.substr(a + 1, b - a - 1);
}

// A failed allocation in words ("std::bad_alloc" says nothing to a user). The memory budget
// (memory_budget.hpp) should refuse first; this is what is left when an estimate fell short.
inline constexpr const char* out_of_memory_text =
    "ran out of memory (an allocation failed although the memory budget allowed it): give a smaller --max-memory "
    "so the budget refuses earlier and says which option to lower, or use fewer --threads";

// The message of `e`, in a sentence even for std::bad_alloc.
inline std::string message_of(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) return out_of_memory_text;
  return e.what();
}

// Wraps any exception thrown while working on `file` into a ProgramError naming it.
inline ProgramError file_error(const std::filesystem::path& file, const std::exception& e) {
  if (auto* p = dynamic_cast<const ProgramError*>(&e)) return *p;
  return ProgramError(file.string(), without_quoted(message_of(e), file.string()));
}

inline void print_error(std::string_view program, const std::string& message) {
  std::fprintf(stderr, "%.*s: error: %s\n", int(program.size()), program.data(), message.c_str());
  std::fflush(stderr);
}
inline void print_warning(std::string_view program, const std::string& message) {
  std::fprintf(stderr, "%.*s: warning: %s\n", int(program.size()), program.data(), message.c_str());
  std::fflush(stderr);
}

// "90", "90s", "10m", "1.5h", "1h30m", "2m30s" -> seconds. Throws std::invalid_argument.
inline double parse_duration(std::string_view text) {
  if (text.empty()) throw std::invalid_argument("empty duration");
  double total = 0;
  std::size_t i = 0;
  bool any = false;
  while (i < text.size()) {
    std::size_t j = i;
    while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.')) ++j;
    if (j == i) throw std::invalid_argument("expected a number in '" + std::string(text) + "'");
    double value = 0;
    try {
      value = std::stod(std::string(text.substr(i, j - i)));
    } catch (const std::exception&) {
      throw std::invalid_argument("bad number in '" + std::string(text) + "'");
    }
    double unit = 1;
    if (j < text.size()) {
      switch (text[j]) {
        case 's':
          unit = 1;
          break;
        case 'm':
          unit = 60;
          break;
        case 'h':
          unit = 3600;
          break;
        case 'd':
          unit = 86400;
          break;
        default:
          throw std::invalid_argument("unknown unit '" + std::string(1, text[j]) + "' in '" + std::string(text) +
                                      "' (use s, m, h, e.g. 90s, 10m, 1h30m)");
      }
      ++j;
    } else if (any) {
      throw std::invalid_argument("missing unit after the last number in '" + std::string(text) + "'");
    }
    total += value * unit;
    any = true;
    i = j;
  }
  if (!(total > 0) || !std::isfinite(total)) throw std::invalid_argument("duration must be positive");
  return total;
}

// 754 -> "12m34s", 3.2 -> "3.2s", 7300 -> "2h01m"
inline std::string format_duration(double seconds) {
  char buf[64];
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 10) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
  } else if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.0fs", seconds);
  } else if (seconds < 3600) {
    const long s = std::lround(seconds);
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    const long m = std::lround(seconds / 60);
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", m / 60, m % 60);
  }
  return buf;
}

}  // namespace kiln::programs
