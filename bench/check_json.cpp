// kiln_bench_check FILE.json [--counter=NAME...] [PREFIX...]: sanity check of a
// Google Benchmark JSON report (the CI smoke test). Fails (exit 1, one line per
// problem) if the report has no benchmarks, a benchmark reported an error, ran
// no iteration, lacks a --counter NAME, or has a time or a user counter that is
// not finite and > 0; each PREFIX must start at least one benchmark name.
// Nothing is compared with a time limit.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: kiln_bench_check FILE.json [--counter=REQUIRED_COUNTER...] [REQUIRED_NAME_PREFIX...]\n");
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::fprintf(stderr, "kiln_bench_check: cannot open %s\n", argv[1]);
    return 1;
  }
  nlohmann::json report;
  try {
    report = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_bench_check: %s is not JSON: %s\n", argv[1], e.what());
    return 1;
  }
  // Keys Google Benchmark writes itself; every other number is a user counter.
  const std::set<std::string> standard = {"family_index", "per_family_instance_index",
                                          "repetitions",  "repetition_index",
                                          "threads",      "iterations",
                                          "real_time",    "cpu_time"};
  int problems = 0, counters = 0;
  auto problem = [&](const std::string& name, const std::string& what) {
    std::fprintf(stderr, "kiln_bench_check: %s: %s\n", name.c_str(), what.c_str());
    ++problems;
  };
  std::vector<std::string> prefixes, required;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--counter=", 0) == 0)
      required.push_back(arg.substr(10));
    else
      prefixes.push_back(arg);
  }
  const auto& benchmarks = report.value("benchmarks", nlohmann::json::array());
  if (benchmarks.empty()) problem(argv[1], "no benchmarks in the report");
  for (const auto& b : benchmarks) {
    const std::string name = b.value("name", std::string("?"));
    if (b.value("error_occurred", false)) problem(name, "error: " + b.value("error_message", std::string()));
    if (b.value("iterations", 0) <= 0) problem(name, "ran no iteration");
    for (const auto& c : required)
      if (!b.contains(c)) problem(name, "counter " + c + " is missing");
    for (const char* t : {"real_time", "cpu_time"}) {
      const double v = b.value(t, -1.0);
      if (!std::isfinite(v) || v < 0) problem(name, std::string(t) + " is " + std::to_string(v));
    }
    for (const auto& [key, value] : b.items()) {
      if (!value.is_number() || standard.count(key)) continue;
      ++counters;
      const double v = value.get<double>();
      if (!std::isfinite(v) || !(v > 0)) problem(name, "counter " + key + " = " + std::to_string(v));
    }
  }
  for (const auto& prefix : prefixes) {
    bool found = false;
    for (const auto& b : benchmarks) found = found || b.value("name", std::string()).rfind(prefix, 0) == 0;
    if (!found) problem(prefix, "no benchmark name starts with this");
  }
  std::printf("kiln_bench_check: %s: %zu benchmarks, %d counters, %d problems\n", argv[1], benchmarks.size(), counters,
              problems);
  return problems ? 1 : 0;
}
