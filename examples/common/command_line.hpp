#pragma once
// The programs' command lines (kiln-train, kiln-colorize, kiln-denoise) behind a small facade over
// CLI11, whose code is compiled once, in command_line.cpp (the kiln_programs_cli library). Debian's
// CLI11 2.1 is header-only: each unit that used CLI::App compiled all of it, 37-40 % of each
// program's main.cpp (docs/benchmarks.md, "Compile time", ninth pass). The facade forwards each
// call to the CLI11 call of the same name, so the help, the messages and the exit codes are
// CLI11's; it offers the option types and modifiers the programs use, nothing more.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "options.hpp"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace kiln::programs {

// One option (CLI::Option). Owned by its CommandLine; the modifiers return this, to chain.
class Option {
 public:
  explicit Option(CLI::Option* option) : option_(option) {}
  Option* type_name(const std::string& name);
  Option* check(const Check& check);
  Option* take_all();   // every occurrence adds values (MultiOptionPolicy::TakeAll)
  Option* take_last();  // a repeated option keeps its last value (MultiOptionPolicy::TakeLast)
  Option* expected(int min, int max);
  Option* excludes(Option* other);
  Option* group(const std::string& name);  // "": hidden from the help
  Option* required();
  Option* capture_default_str();
  // Occurrences on the parsed command line.
  std::size_t count() const;

 private:
  CLI::Option* option_;
};

class CommandLine {
 public:
  // name: the program's, for the help's "Usage:" line and kiln's error messages ("" for CLI11's).
  explicit CommandLine(const std::string& description, const std::string& name = "");
  ~CommandLine();
  CommandLine(const CommandLine&) = delete;
  CommandLine& operator=(const CommandLine&) = delete;

  // Options added from here on show their default in the help (always_capture_default) ...
  CommandLine& always_capture_default();
  // ... and keep the last value of a repeated option (MultiOptionPolicy::TakeLast).
  CommandLine& take_last_by_default();
  // Width of the help's option column.
  CommandLine& column_width(std::size_t width);

  // "--name" for an option, "name" for a positional; the variable receives the value at parse.
  Option* add_option(const std::string& name, std::string& variable, const std::string& description);
  Option* add_option(const std::string& name, int& variable, const std::string& description);
  Option* add_option(const std::string& name, long long& variable, const std::string& description);
  Option* add_option(const std::string& name, std::uint64_t& variable, const std::string& description);
  Option* add_option(const std::string& name, double& variable, const std::string& description);
  Option* add_option(const std::string& name, float& variable, const std::string& description);
  Option* add_option(const std::string& name, bool& variable, const std::string& description);
  Option* add_option(const std::string& name, std::vector<std::string>& variable, const std::string& description);
  Option* add_option(const std::string& name, std::vector<int>& variable, const std::string& description);
  Option* add_option(const std::string& name, std::vector<float>& variable, const std::string& description);
  Option* add_flag(const std::string& name, bool& variable, const std::string& description);

  // kiln-train's and kiln-colorize's parse: --help prints the help (exit 0); a parse error prints
  // "<name>: error: <what>" (with a hint for a file named -x) and "Run <name> --help for the
  // options." (exit 2). Returns the exit code when the program must stop, nothing when it goes on.
  std::optional<int> parse(int argc, char** argv);
  // CLI11_PARSE's: CLI11's own messages and exit codes (kiln-denoise, a user's program).
  std::optional<int> parse_cli11_style(int argc, char** argv);

  // After parse: occurrences of an option, and the first long name (without "--") of each option given.
  std::size_t count(const std::string& name) const;
  std::vector<std::string> given_long_names() const;

 private:
  Option* added(CLI::Option* option);
  std::unique_ptr<CLI::App> app_;
  std::string name_;
  std::vector<std::unique_ptr<Option>> options_;
};

}  // namespace kiln::programs
