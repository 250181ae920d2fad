// The one unit that compiles CLI11 for the programs (command_line.hpp says why).
#include "command_line.hpp"

#include "cli11.hpp"

#include <cstdio>
#include <filesystem>
#include <limits>
#include <system_error>

#include "cli.hpp"
#include "numbers.hpp"

namespace kiln::programs {

namespace {

CLI::Validator validator(const Check& c) {
  if (c.kind == Check::Kind::one_of) return CLI::IsMember(c.words);
  return CLI::Validator([c](std::string& s) { return number_problem(s, c.lo, c.hi, c.integer, c.lo_open, c.example); },
                        c.description);
}

// CLI11's parse error, with a hint when an argument that starts with '-' names a file (CLI11
// takes "-x.png" for an option, and then says only "inputs is required").
std::string parse_error_text(const CLI::ParseError& e, int argc, char** argv) {
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

}  // namespace

Check number_in(double lo, double hi, const char* example) {
  Check c;
  c.lo = lo, c.hi = hi, c.example = example;
  c.description = "NUMBER in [" + number_text(lo) + ", " + number_text(hi) + "]";
  return c;
}
Check integer_in(double lo, double hi) {
  Check c;
  c.lo = lo, c.hi = hi, c.integer = true;
  c.description = "INT in [" + number_text(lo) + ", " + number_text(hi) + "]";
  return c;
}
Check positive_number(const char* example) {
  Check c;
  c.lo = 0, c.hi = std::numeric_limits<double>::max(), c.lo_open = true, c.example = example;
  c.description = "NUMBER > 0";
  return c;
}
Check finite_number() {
  Check c;
  c.lo = -std::numeric_limits<double>::max(), c.hi = std::numeric_limits<double>::max();
  c.description = "NUMBER";
  return c;
}
Check one_of(std::initializer_list<const char*> words) {
  Check c;
  c.kind = Check::Kind::one_of;
  c.words.assign(words.begin(), words.end());
  return c;
}

Option* Option::type_name(const std::string& name) {
  option_->type_name(name);
  return this;
}
Option* Option::check(const Check& check) {
  option_->check(validator(check));
  return this;
}
Option* Option::take_all() {
  option_->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  return this;
}
Option* Option::take_last() {
  option_->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  return this;
}
Option* Option::expected(int min, int max) {
  option_->expected(min, max);
  return this;
}
Option* Option::excludes(Option* other) {
  option_->excludes(other->option_);
  return this;
}
Option* Option::group(const std::string& name) {
  option_->group(name);
  return this;
}
Option* Option::required() {
  option_->required();
  return this;
}
Option* Option::capture_default_str() {
  option_->capture_default_str();
  return this;
}
std::size_t Option::count() const { return option_->count(); }

CommandLine::CommandLine(const std::string& description, const std::string& name)
    : app_(std::make_unique<CLI::App>(description, name)), name_(name) {}
CommandLine::~CommandLine() = default;

CommandLine& CommandLine::always_capture_default() {
  app_->option_defaults()->always_capture_default();
  return *this;
}
CommandLine& CommandLine::take_last_by_default() {
  app_->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  return *this;
}
CommandLine& CommandLine::column_width(std::size_t width) {
  app_->get_formatter()->column_width(width);
  return *this;
}

Option* CommandLine::added(CLI::Option* option) {
  options_.push_back(std::make_unique<Option>(option));
  return options_.back().get();
}

// Each overload instantiates CLI11's add_option template for its type, as the programs' own calls did.
Option* CommandLine::add_option(const std::string& name, std::string& variable, const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_option(const std::string& name, int& variable, const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_option(const std::string& name, long long& variable, const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_option(const std::string& name, std::uint64_t& variable, const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_option(const std::string& name, double& variable, const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_option(const std::string& name, float& variable, const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_option(const std::string& name, bool& variable, const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_option(const std::string& name, std::vector<std::string>& variable,
                                const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_option(const std::string& name, std::vector<int>& variable, const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_option(const std::string& name, std::vector<float>& variable, const std::string& description) {
  return added(app_->add_option(name, variable, description));
}
Option* CommandLine::add_flag(const std::string& name, bool& variable, const std::string& description) {
  return added(app_->add_flag(name, variable, description));
}

std::optional<int> CommandLine::parse(int argc, char** argv) {
  try {
    app_->parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app_->exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app_->exit(e);
  } catch (const CLI::ParseError& e) {
    print_error(name_, parse_error_text(e, argc, argv));
    std::fprintf(stderr, "Run %s --help for the options.\n", name_.c_str());
    return exit_usage;
  }
  return std::nullopt;
}

std::optional<int> CommandLine::parse_cli11_style(int argc, char** argv) {
  try {
    app_->parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app_->exit(e);
  }
  return std::nullopt;
}

std::size_t CommandLine::count(const std::string& name) const { return app_->count(name); }

std::vector<std::string> CommandLine::given_long_names() const {
  std::vector<std::string> names;
  for (const CLI::Option* o : app_->get_options())
    if (o->count() > 0 && !o->get_lnames().empty()) names.push_back(o->get_lnames().front());
  return names;
}

}  // namespace kiln::programs
