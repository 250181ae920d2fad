// Every CUDA kernel of kiln (kernels/*.cuh, include/kiln/color/kernels/*.cuh) on the emulated Cuda
// device against the CPU: the table of tests/emu/kernel_cases.hpp, then a check that the table launched every
// __global__ kernel found in the kernel sources (a new kernel without a test case fails here).
#include <doctest/doctest.h>

#include <omp.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "emu/kernel_cases.hpp"
#include "emu/launch_log.hpp"

namespace {

struct Outcome {
  std::string name;
  kiln_test::Report report;
  std::string exception;
};

// KILN_KERNEL_TABLE_SHARD=i/n runs only the cases at positions i, i+n, ... of those this build runs:
// the ThreadSanitizer build splits its table into ctest entries that run side by side.
std::pair<std::size_t, std::size_t> table_shard() {
  const char* text = std::getenv("KILN_KERNEL_TABLE_SHARD");
  if (text == nullptr || *text == '\0') return {0, 1};
  std::size_t index = 0, count = 0;
  char slash = 0;
  std::istringstream in(text);
  in >> index >> slash >> count;
  if (!in || slash != '/' || count == 0 || index >= count)
    throw std::runtime_error(std::string("KILN_KERNEL_TABLE_SHARD=") + text + ": expected i/n with 0 <= i < n");
  return {index, count};
}

struct Table {
  std::vector<Outcome> outcomes;
  std::set<std::string> launched;        // by every case run here
  std::set<std::string> launched_small;  // by the tiny subset alone (all the ThreadSanitizer build runs)
};

// The whole table (or this process's shard of it), run once per process (the test cases below use
// it), with the launch log on.
const Table& table() {
  static const Table result = [] {
    // OS-thread mode is the ThreadSanitizer build: libgomp is not instrumented, so the CPU
    // reference's OpenMP threads would be reported as races (false positives). One thread there.
    if (KILN_EMU_THREADS) omp_set_num_threads(1);
    const auto [shard, shards] = table_shard();
    Table t;
    std::size_t position = 0;
    for (const auto& c : kiln_test::kernel_cases()) {
      // One std::thread per CUDA thread (ThreadSanitizer builds) is ~1000x slower than fibers:
      // there only the tiny subset runs, which still launches every kernel (checked below).
      if (KILN_EMU_THREADS && !c.small) continue;
      if (position++ % shards != shard) continue;
      Outcome o{c.name, {}, {}};
      kiln_test::record_launches(true);
      try {
        c.run(o.report);
      } catch (const std::exception& e) {
        o.exception = e.what();
      }
      kiln_test::record_launches(false);
      for (const auto& name : kiln_test::launched_kernels()) {
        t.launched.insert(name);
        if (c.small) t.launched_small.insert(name);
      }
      t.outcomes.push_back(std::move(o));
    }
    return t;
  }();
  return result;
}

// The names in `__global__ void name(` (whitespace allowed) in every .cuh of the kernel folders:
// the library's (kernels/) and the colour module's (include/kiln/color/kernels/). (Parsed by
// hand: std::regex trips -Wmaybe-uninitialized inside libstdc++ under the sanitizer builds.)
// Every folder holding __global__ kernels, relative to the repository (a new one goes here).
constexpr const char* kernel_folders[] = {"kernels", "include/kiln/color/kernels"};

std::set<std::string> kernels_in_sources() {
  std::set<std::string> names;
  auto skip_space = [](const std::string& s, std::size_t i) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    return i;
  };
  const std::filesystem::path root(KILN_SOURCE_DIR);
  std::vector<std::filesystem::path> files;
  for (const auto& folder : kernel_folders)
    for (const auto& entry : std::filesystem::directory_iterator(root / folder))
      if (entry.path().extension() == ".cuh") files.push_back(entry.path());
  for (const auto& file : files) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    for (std::size_t at = s.find("__global__"); at != std::string::npos; at = s.find("__global__", at + 1)) {
      std::size_t i = skip_space(s, at + 10);
      if (s.compare(i, 4, "void") != 0) continue;
      i = skip_space(s, i + 4);
      if (s.compare(i, 17, "__launch_bounds__") == 0)
        i = skip_space(s, s.find(')', i) + 1);  // __global__ void __launch_bounds__(..) name(
      std::size_t end = i;
      while (end < s.size() && (std::isalnum(static_cast<unsigned char>(s[end])) || s[end] == '_')) ++end;
      if (end > i && skip_space(s, end) < s.size() && s[skip_space(s, end)] == '(') names.insert(s.substr(i, end - i));
    }
  }
  return names;
}

}  // namespace

TEST_CASE("kernel table: every case on the emulated Cuda device matches the CPU backend") {
  REQUIRE(kiln::gpu::emulated);
  REQUIRE(!table().outcomes.empty());  // (a shard past the end of the table is a mistake)
  for (const auto& o : table().outcomes) {
    INFO("case: ", o.name, " (emulator schedule ", kiln::gpu::emu::schedule_text(), ")");
    CHECK_MESSAGE(o.exception.empty(), "threw: ", o.exception);
    CHECK(!o.report.comparisons.empty());
    for (const auto& c : o.report.comparisons) {
      INFO(c.what, ": normalised error ", c.error, " (bound ", c.bound, ")");
      CHECK(c.ok());
    }
  }
}

TEST_CASE("kernel coverage: every __global__ kernel of the kernel folders is launched by the table") {
  // (Not in a shard of the table: ctest runs the shards with --test-case-exclude=*coverage*.)
  REQUIRE(table_shard().second == 1);
  const Table& t = table();
  const std::set<std::string> declared = kernels_in_sources();
  REQUIRE(declared.size() >= 20);  // the parser found the kernels
  for (const char* moved : {"ab_soft_encode_forward_kernel", "annealed_mean_backward_kernel", "srgb_to_lab_kernel"})
    CHECK_MESSAGE(declared.count(moved) == 1, moved, " (include/kiln/color/kernels/) was not found by the parser");
  for (const auto& name : declared) {
    INFO("kernel ", name, " (kernels/, include/kiln/color/kernels/) has no case in tests/emu/kernel_cases*.hpp");
    CHECK(t.launched.count(name) == 1);
    INFO("and no tiny case (small = true), the only ones the ThreadSanitizer build runs");
    CHECK(t.launched_small.count(name) == 1);
  }
  for (const auto& name : t.launched) {
    INFO("launched kernel ", name, " is not declared as `__global__ void name(` in a kernel folder");
    CHECK(declared.count(name) == 1);
  }
}

TEST_CASE("a failing launch throws kiln::gpu::Error naming the kernel") {
  // A Conv2d whose kernel needs more shared memory than a block may use is refused with a sentence;
  // a launch the emulator rejects names the kernel.
  kiln::ConvShape s{1, 1, 1, 4, 4, 41};
  kiln::Tensor<float, kiln::Cuda> x(kiln::Shape::nchw(1, 1, 4, 4)), w(kiln::Shape{1, 1, 41, 41}), b, y(x.shape()), ws;
  CHECK_THROWS_WITH_AS(kiln::Backend<kiln::Cuda>::conv2d_forward(s, x, w, b, y, ws), doctest::Contains("48 KiB"),
                       kiln::Error);
  // batch larger than gridDim.z allows: the launch check names the kernel
  kiln::ConvShape big{70000, 1, 1, 1, 1, 3};
  CHECK_THROWS_WITH_AS(kiln::Backend<kiln::Cuda>::conv2d_forward(big, x, w, b, y, ws),
                       doctest::Contains("conv2d_forward_kernel"), kiln::gpu::Error);
}
