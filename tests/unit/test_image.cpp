// Image decoding (fixtures from tests/data/images/make_fixtures.py, an encoder independent of
// stb), encoding, resizing, conversions, and the errors for bad files.
#include <doctest/doctest.h>

#include <kiln/io/image.hpp>

#include "test_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#ifndef KILN_SOURCE_DIR
#error "KILN_SOURCE_DIR must name the repository root (the CMake test target defines it)"
#endif

namespace fs = std::filesystem;
using namespace kiln::io;

namespace {

const fs::path kImages = fs::path(KILN_SOURCE_DIR) / "tests" / "data" / "images";
constexpr int kW = 5, kH = 3;

// The formulas make_fixtures.py wrote.
float v8(int x, int y, int c) { return float((x * 40 + y * 70 + c * 90 + 13) % 256) / 255.0f; }
float v16(int x, int y, int c) { return float((x * 9000 + y * 15000 + c * 21000 + 1234) % 65536) / 65535.0f; }

using kiln::test::TempDir;  // a fresh directory per test case, removed afterwards (tests/test_files.hpp)

template <class Formula>
void check_pixels(const Image& image, int channels, Formula expected, float tolerance) {
  REQUIRE(image.width == kW);
  REQUIRE(image.height == kH);
  REQUIRE(image.channels == channels);
  REQUIRE(image.pixels.size() == std::size_t(kW * kH * channels));
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x)
      for (int c = 0; c < channels; ++c) {
        INFO("pixel (" << x << "," << y << ") channel " << c);
        CHECK(std::fabs(image.at(x, y, c) - expected(x, y, c)) <= tolerance);
      }
}

// Runs `action`, expects an IoError, and checks its message mentions every fragment.
template <class Action>
std::string expect_error(Action action, const std::vector<std::string>& fragments) {
  std::string message;
  try {
    action();
    FAIL("expected an IoError");
  } catch (const IoError& e) {
    message = e.what();
  }
  INFO("message: " << message);
  for (const auto& fragment : fragments) CHECK(message.find(fragment) != std::string::npos);
  return message;
}

Image pattern_image(int w, int h, int channels) {
  Image image{w, h, channels, std::vector<float>(std::size_t(w * h * channels))};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c) image.at(x, y, c) = float((x * 37 + y * 11 + c * 71) % 256) / 255.0f;
  return image;
}

}  // namespace

TEST_CASE("image: 8-bit PNGs with 1 to 4 channels decode to the pixels that were encoded") {
  check_pixels(load_image(kImages / "grey8.png"), 1, v8, 1e-6f);
  check_pixels(load_image(kImages / "grey_alpha8.png"), 2, v8, 1e-6f);
  check_pixels(load_image(kImages / "rgb8.png"), 3, v8, 1e-6f);
  check_pixels(load_image(kImages / "rgba8.png"), 4, v8, 1e-6f);
}

TEST_CASE("image: 16-bit PNGs keep their full precision") {
  check_pixels(load_image(kImages / "grey16.png"), 1, v16, 1e-7f);
  check_pixels(load_image(kImages / "rgb16.png"), 3, v16, 1e-7f);
  check_pixels(load_image(kImages / "rgba16.png"), 4, v16, 1e-7f);
  // proof that the values are not 8-bit: some differ from the nearest 8-bit level
  const Image image = load_image(kImages / "rgb16.png");
  bool finer_than_8_bit = false;
  for (float v : image.pixels) finer_than_8_bit |= std::fabs(v * 255.0f - std::round(v * 255.0f)) > 0.01f;
  CHECK(finer_than_8_bit);
}

TEST_CASE("image: BMP and TGA decode (row order and BGR handled)") {
  check_pixels(load_image(kImages / "rgb.bmp"), 3, v8, 1e-6f);
  check_pixels(load_image(kImages / "rgb.tga"), 3, v8, 1e-6f);
}

TEST_CASE("image: JPEG written by stb loads back close to the original") {
  TempDir dir("jpeg");
  // A smooth 16x16 gradient: JPEG's 8x8 DCT at quality 100 reproduces it within a few levels.
  std::vector<unsigned char> rgb(16 * 16 * 3);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) {
      rgb[(y * 16 + x) * 3 + 0] = static_cast<unsigned char>(x * 16);
      rgb[(y * 16 + x) * 3 + 1] = static_cast<unsigned char>(y * 16);
      rgb[(y * 16 + x) * 3 + 2] = 128;
    }
  const fs::path path = dir.path / "gradient.jpg";
  REQUIRE(stbi_write_jpg(path.c_str(), 16, 16, 3, rgb.data(), 100));
  const Image image = load_image(path);
  REQUIRE(image.width == 16);
  REQUIRE(image.height == 16);
  REQUIRE(image.channels == 3);
  float worst = 0.0f;
  for (std::size_t i = 0; i < rgb.size(); ++i) worst = std::max(worst, std::fabs(image.pixels[i] - rgb[i] / 255.0f));
  INFO("worst JPEG error " << worst * 255.0f << " levels");
  CHECK(worst < 8.0f / 255.0f);
}

TEST_CASE("image: save_png then load_image round-trips 8-bit values exactly, for 1 to 4 channels") {
  TempDir dir("png_roundtrip");
  for (int channels = 1; channels <= 4; ++channels) {
    const Image original = pattern_image(7, 4, channels);
    const fs::path path = dir.path / ("out" + std::to_string(channels) + ".png");
    save_png(path, original);
    const Image loaded = load_image(path);
    CHECK(loaded.width == 7);
    CHECK(loaded.height == 4);
    CHECK(loaded.channels == channels);
    CHECK(loaded.pixels == original.pixels);  // pattern values are exact 8-bit levels
  }
  CHECK(fs::directory_iterator(dir.path) != fs::directory_iterator());
  for (const auto& entry : fs::directory_iterator(dir.path)) {  // no temporary left behind
    CHECK(entry.path().string().find(".tmp.") == std::string::npos);
  }
}

TEST_CASE("image: save_png quantises with rounding and clamps out-of-range values") {
  TempDir dir("png_clamp");
  Image image{4, 1, 1, {-0.5f, 0.5f, 1.5f, 0.2f}};
  save_png(dir.path / "clamped.png", image);
  const Image loaded = load_image(dir.path / "clamped.png");
  CHECK(loaded.pixels[0] == 0.0f);
  CHECK(loaded.pixels[1] == from_8bit(128));
  CHECK(loaded.pixels[2] == 1.0f);
  CHECK(loaded.pixels[3] == from_8bit(51));
}

TEST_CASE("image: save_png errors name the file and leave an existing file untouched") {
  TempDir dir("png_errors");
  const Image image = pattern_image(3, 3, 3);
  expect_error([&] { save_png(dir.path / "no_such_dir" / "x.png", image); }, {"x.png", "No such file or directory"});
  expect_error([&] { save_png(dir.path, image); }, {dir.path.string(), "directory"});
  expect_error([&] { save_png(dir.path / "bad.png", Image{3, 3, 3, {}}); }, {"bad.png", "pixel buffer"});
  expect_error(
      [&] {
        save_png(dir.path / "bad.png", Image{3, 3, 5, std::vector<float>(45)});
      },
      {"bad.png", "channels"});

  // A failure after the target exists: the temporary name is taken by a directory.
  const fs::path target = dir.path / "keep.png";
  save_png(target, image);
  fs::create_directory(target.string() + ".tmp." + std::to_string(::getpid()));
  expect_error([&] { save_png(target, pattern_image(9, 9, 1)); }, {"keep.png"});
  const Image kept = load_image(target);
  CHECK(kept.width == 3);
  CHECK(kept.pixels == image.pixels);
}

TEST_CASE("image: write_all reports a full disk with the file name") {
  const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;  // no /dev/full in this sandbox
  std::vector<std::byte> bytes(4096, std::byte{1});
  expect_error([&] { write_all(fd, bytes, "checkpoint.safetensors"); },
               {"checkpoint.safetensors", "No space left on device"});
  ::close(fd);
}

TEST_CASE("image: bad files give errors that name the file and say what is wrong") {
  TempDir dir("image_errors");
  expect_error([&] { load_image(kImages / "does_not_exist.png"); }, {"does_not_exist.png", "does not exist"});
  expect_error([&] { load_image(kImages / "empty.png"); }, {"empty.png", "empty"});
  expect_error([&] { load_image(kImages / "not_an_image.png"); }, {"not_an_image.png", "not a PNG"});
  expect_error([&] { load_image(kImages / "truncated.png"); }, {"truncated.png", "cannot decode"});
  expect_error([&] { load_image(kImages); }, {"images", "directory"});

  // The header claims 100000 x 100000: refused from the header, before any allocation
  // (a 30 GB allocation would fail or be killed under ASan, so passing proves it).
  expect_error([&] { load_image(kImages / "huge_claim.png"); },
               {"huge_claim.png", "100000x100000", "67,108,864", "LoadOptions::max_pixels"});

  // The limit is configurable and also applies to formats whose header stb reads.
  expect_error([&] { load_image(kImages / "rgb.bmp", LoadOptions{.max_pixels = 10}); },
               {"rgb.bmp", "5x3", "limit of 10 pixels"});
  CHECK(load_image(kImages / "rgb.bmp", LoadOptions{.max_pixels = 15}).width == kW);

  // Unreadable: only meaningful when not running as root (root reads anything).
  if (::geteuid() != 0) {
    const fs::path locked = dir.path / "locked.png";
    fs::copy_file(kImages / "rgb8.png", locked);
    fs::permissions(locked, fs::perms::none);
    expect_error([&] { load_image(locked); }, {"locked.png", "Permission denied"});
  }
  // Not a regular file
  if (fs::exists("/dev/null")) expect_error([&] { load_image("/dev/null"); }, {"/dev/null", "not a regular file"});
}

TEST_CASE("image: is_image_file_name goes by extension, case-insensitively") {
  CHECK(is_image_file_name("a.png"));
  CHECK(is_image_file_name("dir.d/photo.JPG"));
  CHECK(is_image_file_name("x.Jpeg"));
  CHECK(is_image_file_name("x.bmp"));
  CHECK(is_image_file_name("x.TGA"));
  CHECK_FALSE(is_image_file_name("x.gif"));
  CHECK_FALSE(is_image_file_name("png"));
  CHECK_FALSE(is_image_file_name("x.png.txt"));
  CHECK_FALSE(is_image_file_name(".png"));  // a hidden file named ".png" has no extension
}

TEST_CASE("image: to_rgb replicates grey and drops alpha") {
  const Image grey_alpha = load_image(kImages / "grey_alpha8.png");
  const Image rgb = to_rgb(grey_alpha);
  REQUIRE(rgb.channels == 3);
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x)
      for (int c = 0; c < 3; ++c) CHECK(rgb.at(x, y, c) == grey_alpha.at(x, y, 0));

  const Image rgba = load_image(kImages / "rgba8.png");
  const Image rgb2 = to_rgb(rgba);
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x)
      for (int c = 0; c < 3; ++c) CHECK(rgb2.at(x, y, c) == rgba.at(x, y, c));
  CHECK(to_rgb(rgb2).pixels == rgb2.pixels);
}

TEST_CASE("image: to_grey keeps CIE L* of the colour image") {
  const Image rgb = load_image(kImages / "rgb8.png");
  const Image grey = to_grey(rgb);
  REQUIRE(grey.channels == 1);
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x) {
      const Lab lab = srgb_to_lab({rgb.at(x, y, 0), rgb.at(x, y, 1), rgb.at(x, y, 2)});
      CHECK(srgb_grey_to_L(grey.at(x, y, 0)) == doctest::Approx(lab.L).epsilon(1e-4));
    }
  const Image white = to_grey(Image{1, 1, 4, {1.0f, 1.0f, 1.0f, 0.0f}});
  CHECK(white.pixels[0] == doctest::Approx(1.0f).epsilon(1e-5));
  CHECK(to_grey(Image{1, 1, 2, {0.25f, 1.0f}}).pixels[0] == 0.25f);
}

TEST_CASE("image: resize keeps constants constant, shapes right and values in 0..1") {
  Image flat{8, 6, 3, std::vector<float>(8 * 6 * 3, 0.4f)};
  const Image small = resize(flat, 3, 2);
  CHECK(small.width == 3);
  CHECK(small.height == 2);
  CHECK(small.channels == 3);
  for (float v : small.pixels) CHECK(v == doctest::Approx(0.4f).epsilon(1e-5));
  const Image large = resize(flat, 20, 17);
  CHECK(large.pixels.size() == std::size_t(20 * 17 * 3));
  for (float v : large.pixels) CHECK(v == doctest::Approx(0.4f).epsilon(1e-5));

  // a hard black/white edge makes the filters overshoot: the result is clamped
  Image edge{4, 1, 1, {0.0f, 0.0f, 1.0f, 1.0f}};
  for (float v : resize(edge, 16, 1).pixels) {
    CHECK(v >= 0.0f);
    CHECK(v <= 1.0f);
  }
  // halving a 2-pixel checker averages it
  Image checker{2, 2, 1, {0.0f, 1.0f, 1.0f, 0.0f}};
  CHECK(resize(checker, 1, 1).pixels[0] == doctest::Approx(0.5f).epsilon(1e-4));

  expect_error([&] { resize(flat, 0, 5); }, {"0x5"});
}
