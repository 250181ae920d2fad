#pragma once
// Command-line checks shared by kiln-train and kiln-colorize: numbers, and parse errors in
// sentences. CLI11's own
// ranges let NaN through (every comparison with NaN is false), print their bounds with
// std::to_string (a 310-digit number for a double's maximum) and say "Value abc not in range"
// for text; these refuse anything that is not a finite number, in a sentence:
//   --lr: 'nan' is not a finite number (give e.g. 0.001)
#include "cli11.hpp"

#include <filesystem>
#include <limits>
#include <string>

#include "numbers.hpp"

namespace kiln::programs {

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
