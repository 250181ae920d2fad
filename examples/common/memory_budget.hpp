#pragma once
// The memory budget of kiln-train and kiln-colorize: large allocations (the network's arena,
// decoded images, the loader's cache) are estimated and checked against it BEFORE they are
// made, so no input or option can run the machine out of memory; a refusal says what needed
// how much and what to change. Default: 3/4 of the machine's memory (or of the cgroup's limit,
// when that is lower); --max-memory SIZE changes it, --max-memory none switches it off.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cli.hpp"

namespace kiln::programs {

// "3.2 GiB", "640 MiB", "12 KiB".
inline std::string format_bytes(std::uint64_t bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[48];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : (v < 10 ? "%.1f %s" : "%.0f %s"), v, units[u]);
  return buf;
}

// The machine's memory, lowered to the cgroup's limit where one is set (containers).
inline std::uint64_t physical_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  std::uint64_t total = pages > 0 && page > 0 ? std::uint64_t(pages) * std::uint64_t(page) : 0;
  for (const char* file : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(file);
    std::string text;
    if (in >> text && !text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
      try {
        const std::uint64_t limit = std::stoull(text);
        if (limit > 0 && (total == 0 || limit < total)) total = limit;
      } catch (const std::exception&) {
      }
    }
  }
  return total;
}

struct MemoryBudget {
  std::uint64_t bytes = 0;  // 0: no budget (--max-memory none)
  std::string origin;       // how it was set, for messages
};

// "8G", "512M", "1.5GiB", "800MB", "none" -> bytes (units are binary: K = 1024). Throws
// std::invalid_argument with a sentence.
inline std::uint64_t parse_memory_size(const std::string& text) {
  if (text == "none") return 0;
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw std::invalid_argument("'" + text + "' is not a size: give a number and a unit, e.g. 4G or 512M (or none)");
  }
  std::string unit = text.substr(used);
  for (char& ch : unit) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  double scale = 0;
  if (unit == "K")
    scale = 1024.0;
  else if (unit == "M")
    scale = 1024.0 * 1024;
  else if (unit == "G")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "T")
    scale = 1024.0 * 1024 * 1024 * 1024;
  if (scale == 0)
    throw std::invalid_argument("'" + text + "' has no unit K, M, G or T: give e.g. 4G or 512M (or none)");
  if (!std::isfinite(v) || !(v > 0) || v * scale > 1.8e19)
    throw std::invalid_argument("'" + text + "' is not a positive size: give e.g. 4G or 512M (or none)");
  return std::uint64_t(v * scale);
}

// --max-memory's value (empty: the default) -> the budget.
inline MemoryBudget make_memory_budget(const std::string& option) {
  if (!option.empty()) {
    const std::uint64_t bytes = parse_memory_size(option);
    return {bytes, "--max-memory " + option};
  }
  const std::uint64_t total = physical_memory();
  if (total == 0) return {0, "none: the machine's memory is unknown"};
  return {total / 4 * 3, "3/4 of this machine's " + format_bytes(total) + "; --max-memory changes it"};
}

// One large allocation an operation needs, for the message.
struct MemoryPart {
  std::string what;
  std::uint64_t bytes = 0;
};

// What the estimates leave out, as one allowance: the code and libraries (a program that
// refuses at once peaks at 44 MB), OpenMP's thread stacks, gemm scratch, batch and loss buffers.
// With it the estimates came within a few percent above the measured peaks (docs/reliability.md).
inline MemoryPart program_allowance() { return {"the program itself and small buffers", 64ull << 20}; }

inline std::uint64_t total_bytes(const std::vector<MemoryPart>& parts) {
  std::uint64_t t = 0;
  for (const MemoryPart& p : parts) t += p.bytes;
  return t;
}

// Throws ProgramError(subject, ...) when `parts` exceed the budget:
//   "<what> needs about 3.3 GiB (a: 3.2 GiB; b: 90 MiB), over the memory budget of 2.0 GiB
//    (3/4 of ...): <advice>"
inline void check_memory(const MemoryBudget& budget, const std::string& subject, const std::string& what,
                         const std::vector<MemoryPart>& parts, const std::string& advice) {
  const std::uint64_t need = total_bytes(parts);
  if (budget.bytes == 0 || need <= budget.bytes) return;
  std::string detail;
  for (const MemoryPart& p : parts) {
    if (p.bytes == 0) continue;
    detail += (detail.empty() ? "" : "; ") + p.what + ": " + format_bytes(p.bytes);
  }
  throw ProgramError(subject, what + " needs about " + format_bytes(need) + " (" + detail +
                                  "), over the memory budget of " + format_bytes(budget.bytes) + " (" + budget.origin +
                                  "): " + advice);
}

}  // namespace kiln::programs
