#pragma once
// Numbers on the command line, shared by kiln-train and kiln-colorize: parsing and range checks in
// sentences. The options' checks (options.hpp) use them through command_line.cpp, CLI11's one
// unit; units that check numbers without a command line (config.cpp) include only this.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

namespace kiln::programs {

// The shortest text that reads the same number back ("0.001", "65536", "1e+30").
inline std::string number_text(double v) {
  char buf[64];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// Parses the whole of `text` as a finite number; false for text, trailing junk, NaN, infinity
// or a value beyond a double.
inline bool parse_finite(const std::string& text, double& value) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  value = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() && errno != ERANGE && std::isfinite(value);
}

// "'x' is not ..." for a value outside [lo, hi] (open ends: a bound equal to ±max is not said),
// or "" when it is fine. `integer`: also refuses fractions.
inline std::string number_problem(const std::string& text, double lo, double hi, bool integer, bool lo_open = false,
                                  const char* example = nullptr) {
  double v = 0;
  const std::string hint = example ? std::string(" (e.g. ") + example + ")" : std::string();
  if (!parse_finite(text, v)) return "'" + text + "' is not " + (integer ? "a whole number" : "a finite number") + hint;
  if (integer && v != std::floor(v)) return "'" + text + "' is not a whole number" + hint;
  const double max = std::numeric_limits<double>::max();
  const bool below = lo_open ? !(v > lo) : v < lo;
  if (below || v > hi) {
    std::string range;
    if (hi >= max) {
      range = lo_open ? "greater than " + number_text(lo) : number_text(lo) + " or more";
    } else {
      range = (lo_open ? "greater than " + number_text(lo) + " and at most " : "from " + number_text(lo) + " to ") +
              number_text(hi);
    }
    return "'" + text + "' is out of range: give a number " + range + hint;
  }
  return {};
}

}  // namespace kiln::programs
