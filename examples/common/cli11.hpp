#pragma once
// CLI11 for the programs' command lines, compiled without optimisation; included by
// command_line.cpp only (the facade's one unit). Debian's CLI11 2.1 is header-only (no precompiled
// mode), and a command line is parsed once per run, so its speed does not matter; GCC's optimize
// pragma applies -O0 to the functions CLI11 defines (not to the standard library's, included first
// so that they keep the unit's flags). About 2.5 CPU-s less per unit at -O3 (docs/benchmarks.md,
// "Compile time", sixth pass); other compilers get CLI11 as it is.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <limits>
#include <locale>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <sys/types.h>

#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC push_options
#pragma GCC optimize("O0")
#include <CLI/CLI.hpp>
#pragma GCC pop_options
#else
#include <CLI/CLI.hpp>
#endif
