// The checks kiln-train and kiln-colorize make before they read or write (examples/common):
// numbers given as options, memory sizes, images cut short, paths that overlap; and the io
// decoder's wording for a PNG cut short. The programs' own tests (tests/programs/*.sh) run them
// end to end; these pin the edge cases.
#include <doctest/doctest.h>

#include <kiln/io/image.hpp>

#include <stb/stb_image_write.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "../../examples/common/image_complete.hpp"
#include "../../examples/common/memory_budget.hpp"
#include "../../examples/common/numbers.hpp"
#include "../../examples/common/paths.hpp"

namespace fs = std::filesystem;
namespace kp = kiln::programs;

namespace {

std::vector<std::byte> as_std_bytes(const std::vector<unsigned char>& v) {
  std::vector<std::byte> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = std::byte(v[i]);
  return out;
}

// An uncompressed 24-bit BMP of w x h.
std::vector<std::byte> bmp(int w, int h) {
  const int row = (w * 3 + 3) / 4 * 4;
  std::vector<unsigned char> b(54 + std::size_t(row) * std::size_t(h), 7);
  auto le = [&](std::size_t at, unsigned v, int n) {
    for (int i = 0; i < n; ++i) b[at + std::size_t(i)] = static_cast<unsigned char>(v >> (8 * i));
  };
  b[0] = 'B', b[1] = 'M';
  le(10, 54, 4), le(14, 40, 4), le(18, unsigned(w), 4), le(22, unsigned(h), 4), le(26, 1, 2), le(28, 24, 2),
      le(30, 0, 4);
  return as_std_bytes(b);
}

std::vector<std::byte> encoded(bool jpeg) {
  const int w = 40, h = 24;
  std::vector<unsigned char> rgb(std::size_t(w) * h * 3);
  for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<unsigned char>((i * 37) & 255);
  std::vector<unsigned char> out;
  auto sink = [](void* ctx, void* data, int size) {
    auto* o = static_cast<std::vector<unsigned char>*>(ctx);
    o->insert(o->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
  };
  if (jpeg)
    stbi_write_jpg_to_func(sink, &out, w, h, 3, rgb.data(), 90);
  else
    stbi_write_png_to_func(sink, &out, w, h, 3, rgb.data(), w * 3);
  return as_std_bytes(out);
}

}  // namespace

TEST_CASE("program options: NaN, infinity, text and out-of-range numbers are refused in a sentence") {
  CHECK(kp::number_problem("0.001", 0, 1e308, false, true).empty());
  CHECK(kp::number_problem("nan", 0, 1, false) == "'nan' is not a finite number");
  CHECK(kp::number_problem("inf", 0, 1e308, false, true) == "'inf' is not a finite number");
  CHECK(kp::number_problem("-inf", -1e308, 1e308, false) == "'-inf' is not a finite number");
  CHECK(kp::number_problem("1e999", 0, 1e308, false) == "'1e999' is not a finite number");
  CHECK(kp::number_problem("abc", 0, 10, true) == "'abc' is not a whole number");
  CHECK(kp::number_problem("2.5", 0, 10, true) == "'2.5' is not a whole number");
  CHECK(kp::number_problem("3x", 0, 10, false) == "'3x' is not a finite number");
  CHECK(kp::number_problem("", 0, 10, false) == "'' is not a finite number");
  // An open upper end is not printed as the 310 digits of a double's maximum.
  const std::string negative = kp::number_problem("-1", 0, std::numeric_limits<double>::max(), false, true);
  CHECK(negative == "'-1' is out of range: give a number greater than 0");
  CHECK(kp::number_problem("0", 0, std::numeric_limits<double>::max(), false, true) ==
        "'0' is out of range: give a number greater than 0");
  CHECK(kp::number_problem("0.95", 0, 0.9, false) == "'0.95' is out of range: give a number from 0 to 0.9");
  CHECK(kp::number_problem("5000", 0, 4096, true) == "'5000' is out of range: give a number from 0 to 4096");
  CHECK(kp::number_text(0.001) == "0.001");
  CHECK(kp::number_text(65536) == "65536");
}

TEST_CASE("program options: memory sizes") {
  CHECK(kp::parse_memory_size("512M") == 512ull << 20);
  CHECK(kp::parse_memory_size("8G") == 8ull << 30);
  CHECK(kp::parse_memory_size("1.5GiB") == 3ull << 29);
  CHECK(kp::parse_memory_size("800MB") == 800ull << 20);
  CHECK(kp::parse_memory_size("none") == 0);
  CHECK_THROWS_WITH(kp::parse_memory_size("12"), doctest::Contains("has no unit"));
  CHECK_THROWS_WITH(kp::parse_memory_size("lots"), doctest::Contains("is not a size"));
  CHECK_THROWS_WITH(kp::parse_memory_size("-1G"), doctest::Contains("is not a positive size"));
  CHECK_THROWS_WITH(kp::parse_memory_size("nanG"), doctest::Contains("is not a positive size"));
  CHECK(kp::format_bytes(3ull << 30) == "3.0 GiB");
  CHECK(kp::format_bytes(640ull << 20) == "640 MiB");
  const kp::MemoryBudget budget{100ull << 20, "--max-memory 100M"};
  CHECK_NOTHROW(kp::check_memory(budget, "x.png", "colorizing it", {{"a", 60ull << 20}, {"b", 40ull << 20}}, "advice"));
  CHECK_THROWS_WITH(
      kp::check_memory(budget, "x.png", "colorizing it", {{"a", 90ull << 20}, {"b", 20ull << 20}}, "do this"),
      "x.png: colorizing it needs about 110 MiB (a: 90 MiB; b: 20 MiB), over the memory budget of 100 MiB "
      "(--max-memory 100M): do this");
  // The default budget is a fraction of a memory size the machine reports.
  const kp::MemoryBudget def = kp::make_memory_budget("");
  CHECK(def.bytes > 0);
  CHECK(def.bytes < kp::physical_memory());
}

TEST_CASE("images cut short: every truncation of a BMP and a JPEG is found, the complete files pass") {
  const std::vector<std::byte> b = bmp(33, 20);
  CHECK(kp::incomplete_image_problem(b).empty());
  for (std::size_t n = 54; n < b.size(); n += 13)
    CHECK_MESSAGE(!kp::incomplete_image_problem(std::span(b.data(), n)).empty(), "BMP cut at ", n);
  const std::vector<std::byte> j = encoded(true);
  CHECK(kp::incomplete_image_problem(j).empty());
  // From just after the last scan header to just before the end-of-image marker.
  std::size_t sos = 0;
  for (std::size_t i = 0; i + 1 < j.size(); ++i)
    if (j[i] == std::byte{0xFF} && j[i + 1] == std::byte{0xDA}) sos = i;
  REQUIRE(sos > 0);
  for (std::size_t n = sos + 2; n + 1 < j.size(); ++n)
    CHECK_MESSAGE(kp::incomplete_image_problem(std::span(j.data(), n)).find("truncated") != std::string::npos,
                  "JPEG cut at ", n);
  // A PNG is not judged here (stb fails on a cut PNG itself).
  CHECK(kp::incomplete_image_problem(encoded(false)).empty());
}

TEST_CASE("a PNG cut short is refused as truncated, never with stb's empty or partial reason") {
  const std::vector<std::byte> png = encoded(false);
  CHECK_NOTHROW(kiln::io::decode_image(png, "full.png"));
  // Up to the IEND chunk's type; a file missing only IEND's CRC has every pixel and decodes.
  for (std::size_t n = 33; n < png.size() - 4; ++n) {
    try {
      (void)kiln::io::decode_image(std::span(png.data(), n), "cut.png");
      FAIL("a PNG cut at ", n, " of ", png.size(), " bytes decoded");
    } catch (const kiln::io::IoError& e) {
      const std::string what = e.what();
      CHECK_MESSAGE(what.find("(stb_image: )") == std::string::npos, what);
      CHECK_MESSAGE(what.find("truncated") != std::string::npos, what);
      CHECK_MESSAGE(what.find("'cut.png'") != std::string::npos, what);
    }
  }
}

TEST_CASE("paths: the same folder, a folder inside another, a symlink loop") {
  const fs::path root = fs::temp_directory_path() / ("kiln_program_checks_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "data" / "sub");
  CHECK(kp::is_same_or_inside(root / "data", root / "data"));
  CHECK(kp::is_same_or_inside(root / "data" / "." / "", root / "data"));
  CHECK(kp::is_same_or_inside(root / "data" / "sub", root / "data"));
  CHECK(kp::is_same_or_inside(root / "data" / "not-yet" / "run", root / "data"));
  CHECK_FALSE(kp::is_same_or_inside(root / "data", root / "data" / "sub"));
  CHECK_FALSE(kp::is_same_or_inside(root / "database", root / "data"));
  fs::create_directory_symlink(root / "data", root / "link");
  CHECK(kp::is_same_or_inside(root / "link" / "run", root / "data"));
  fs::create_symlink(root / "loop", root / "loop");
  CHECK(kp::missing_reason(root / "loop").find("loop of symbolic links") != std::string::npos);
  CHECK(kp::missing_reason(root / "nothing") == "does not exist");
  CHECK(kp::missing_reason(root / "data").empty());
  fs::remove_all(root);
}
