#pragma once
// The checks the programs attach to their options (Option::check, command_line.hpp), as plain
// values: command_line.cpp turns them into CLI11 validators, so that the units that declare
// options do not compile CLI11. The number checks refuse anything that is not a finite number in
// range, in a sentence (numbers.hpp); CLI11's own ranges let NaN through, print their bounds with
// std::to_string (a 310-digit number for a double's maximum) and say "Value abc not in range":
//   --lr: 'nan' is not a finite number (give e.g. 0.001)
#include <initializer_list>
#include <string>
#include <vector>

namespace kiln::programs {

struct Check {
  enum class Kind { number, one_of };
  Kind kind = Kind::number;
  // number: refused unless finite and in [lo, hi] (lo itself too when lo_open), whole if integer.
  double lo = 0, hi = 0;
  bool integer = false, lo_open = false;
  const char* example = nullptr;   // "(e.g. 0.001)" after the problem
  std::string description;         // after the option's type in the help: "NUMBER in [0, 0.9]"
  std::vector<std::string> words;  // one_of: the accepted values (CLI11's IsMember)
};

// A finite number in [lo, hi].
Check number_in(double lo, double hi, const char* example = nullptr);
// A whole number in [lo, hi].
Check integer_in(double lo, double hi);
// A finite number > 0.
Check positive_number(const char* example = nullptr);
// Any finite number.
Check finite_number();
// One of these words (CLI11's IsMember: the help and the error list them as {a,b,c}).
Check one_of(std::initializer_list<const char*> words);

}  // namespace kiln::programs
