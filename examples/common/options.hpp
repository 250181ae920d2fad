#pragma once
// Command-line checks shared by kiln-train and kiln-colorize: numbers, and parse errors in
// sentences. CLI11's own
// ranges let NaN through (every comparison with NaN is false), print their bounds with
// std::to_string (a 310-digit number for a double's maximum) and say "Value abc not in range"
// for text; these refuse anything that is not a finite number, in a sentence:
//   --lr: 'nan' is not a finite number (give e.g. 0.001)
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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

// Validators for CLI11 (attach with ->check(...)).
inline CLI::Validator number_in(double lo, double hi, const char* example = nullptr) {
  return CLI::Validator([=](std::string& s) { return number_problem(s, lo, hi, false, false, example); },
                        "NUMBER in [" + number_text(lo) + ", " + number_text(hi) + "]");
}
inline CLI::Validator integer_in(double lo, double hi) {
  return CLI::Validator([=](std::string& s) { return number_problem(s, lo, hi, true); },
                        "INT in [" + number_text(lo) + ", " + number_text(hi) + "]");
}
inline CLI::Validator positive_number(const char* example = nullptr) {
  return CLI::Validator(
      [=](std::string& s) { return number_problem(s, 0, std::numeric_limits<double>::max(), false, true, example); },
      "NUMBER > 0");
}
inline CLI::Validator finite_number() {
  return CLI::Validator(
      [](std::string& s) {
        return number_problem(s, -std::numeric_limits<double>::max(), std::numeric_limits<double>::max(), false);
      },
      "NUMBER");
}

// CLI11's parse error, with a hint when an argument that starts with '-' names a file (CLI11
// takes "-x.png" for an option, and then says only "inputs is required").
inline std::string parse_error_text(const CLI::ParseError& e, int argc, char** argv) {
  std::string text = e.what();
  if (text == "inputs is required") text = "no input images given";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") break;
    std::error_code ec;
    if (a.size() > 1 && a[0] == '-' && std::filesystem::exists(a, ec)) {
      text += "; '" + a + "' was read as an option: to name a file that starts with '-', write ./" + a +
              " or put -- before it";
      break;
    }
  }
  return text;
}

}  // namespace kiln::programs
