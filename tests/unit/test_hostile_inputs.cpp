// Hostile and damaged inputs at the io level: every case ends either in a correct result or in a
// kiln::io::IoError whose message names the file and says what is wrong — never a crash, another
// exception type, a hang or a huge allocation. (The fuzz targets in fuzz/ explore the same code
// with generated inputs; this file pins the cases a user is likely to meet.)
#include <doctest/doctest.h>

#include <kiln/io/dataset.hpp>
#include <kiln/io/image.hpp>
#include <kiln/io/safetensors.hpp>

#include "test_files.hpp"

#include <stb/stb_image_write.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#ifndef KILN_SOURCE_DIR
#error "KILN_SOURCE_DIR must name the repository root (the CMake test target defines it)"
#endif

namespace fs = std::filesystem;
using namespace kiln::io;

namespace {

const fs::path kImages = fs::path(KILN_SOURCE_DIR) / "tests" / "data" / "images";

// tests/test_files.hpp's TempDir that first gives the owner back the rights a test took away.
struct HostileDir : kiln::test::TempDir {
  using kiln::test::TempDir::TempDir;
  ~HostileDir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
  }
};

std::vector<unsigned char> read_uchars(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_uchars(const fs::path& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

// Runs `action`; expects exactly an IoError whose message holds every fragment. Returns it.
std::string expect_io_error(const std::function<void()>& action, std::initializer_list<std::string> fragments) {
  std::string message;
  try {
    action();
    FAIL("no IoError thrown; expected one mentioning " << *fragments.begin());
  } catch (const IoError& e) {
    message = e.what();
  }
  for (const auto& f : fragments) {
    INFO("message: " << message);
    CHECK(message.find(f) != std::string::npos);
  }
  return message;
}

long peak_rss_kb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// A 32x24 RGB JPEG written by stb (no fixture needed).
std::vector<unsigned char> small_jpeg(const fs::path& dir) {
  std::vector<unsigned char> rgb(32 * 24 * 3);
  for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<unsigned char>((i * 37) % 251);
  const fs::path path = dir / "small.jpg";
  REQUIRE(stbi_write_jpg(path.c_str(), 32, 24, 3, rgb.data(), 90));
  return read_uchars(path);
}

void check_rgb_values(const Image& image, const std::vector<int>& expected, int tolerance) {
  REQUIRE(image.channels == 3);
  REQUIRE(image.pixels.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("value " << i);
    CHECK(std::abs(int(std::lround(image.pixels[i] * 255.0f)) - expected[i]) <= tolerance);
  }
}

}  // namespace

TEST_CASE("hostile images: a 0-byte file") {
  const fs::path file = kImages / "empty.png";
  expect_io_error([&] { load_image(file); }, {file.string(), "empty (0 bytes)"});
}

TEST_CASE("hostile images: text renamed to .png") {
  const fs::path file = kImages / "not_an_image.png";
  expect_io_error([&] { load_image(file); }, {file.string(), "not a PNG, JPEG, BMP or TGA"});
}

TEST_CASE("hostile images: every truncation of a PNG and of a JPEG is an IoError or a complete image") {
  HostileDir dir("truncated");
  const std::vector<unsigned char> png = read_uchars(kImages / "rgb8.png");
  const std::vector<unsigned char> jpeg = small_jpeg(dir.path);
  REQUIRE(png.size() > 50);
  REQUIRE(jpeg.size() > 300);
  int refused = 0, decoded = 0;
  for (const auto* original : {&png, &jpeg}) {
    const bool is_png = original == &png;
    const fs::path file = dir.path / (is_png ? "cut.png" : "cut.jpg");
    for (std::size_t n = 0; n < original->size(); ++n) {
      write_uchars(file, {original->begin(), original->begin() + std::ptrdiff_t(n)});
      INFO((is_png ? "PNG" : "JPEG") << " cut to " << n << " of " << original->size() << " bytes");
      try {
        const Image image = load_image(file);
        // stb fills a JPEG whose scan data ends early; the size is the header's.
        CHECK(image.width == (is_png ? 5 : 32));
        CHECK(image.height == (is_png ? 3 : 24));
        CHECK(image.pixels.size() == image.pixel_count() * std::size_t(image.channels));
        ++decoded;
      } catch (const IoError& e) {
        CHECK(std::string(e.what()).find(file.string()) != std::string::npos);
        ++refused;
      }
    }
  }
  CHECK(refused > 0);
  MESSAGE(refused << " truncations refused, " << decoded << " decoded (JPEGs cut inside the scan data)");
  // The checked-in fixture: a PNG missing its last 20 bytes.
  expect_io_error([&] { load_image(kImages / "truncated.png"); }, {"truncated.png"});
}

TEST_CASE("hostile images: a JPEG cut inside its header") {
  HostileDir dir("jpeg_header");
  const std::vector<unsigned char> jpeg = small_jpeg(dir.path);
  const fs::path file = dir.path / "header_cut.jpg";
  write_uchars(file, {jpeg.begin(), jpeg.begin() + 100});
  expect_io_error([&] { load_image(file); }, {file.string()});
}

TEST_CASE("hostile images: a 1x1 image loads") {
  HostileDir dir("one_pixel");
  const fs::path file = dir.path / "one.png";
  save_png(file, Image{1, 1, 3, {0.2f, 0.4f, 0.6f}});
  const Image image = load_image(file);
  CHECK(image.width == 1);
  CHECK(image.height == 1);
  REQUIRE(image.channels == 3);
  CHECK(image.pixels[1] == doctest::Approx(0.4f).epsilon(0.01));
  CHECK(to_grey(image).pixels.size() == 1);
  CHECK(resize(image, 4, 3).pixels.size() == 36);
}

TEST_CASE("hostile images: headers claiming 100000x100000 pixels are refused before allocating") {
  HostileDir dir("huge");
  // PNG (fixture), BMP and JPEG headers with a huge size and almost no data.
  std::vector<unsigned char> bmp(54 + 16, 0);
  auto le32 = [&](std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) bmp[at + std::size_t(i)] = static_cast<unsigned char>(v >> (8 * i));
  };
  bmp[0] = 'B';
  bmp[1] = 'M';
  le32(2, std::uint32_t(bmp.size()));
  le32(10, 54);      // pixel data offset
  le32(14, 40);      // BITMAPINFOHEADER
  le32(18, 100000);  // width
  le32(22, 100000);  // height
  bmp[26] = 1;       // planes
  bmp[28] = 24;      // bits per pixel
  write_uchars(dir.path / "huge.bmp", bmp);

  std::vector<unsigned char> jpeg = small_jpeg(dir.path);
  bool patched = false;
  for (std::size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {                    // SOF0: FF C0, length, precision, height, width
      jpeg[i + 5] = jpeg[i + 6] = jpeg[i + 7] = jpeg[i + 8] = 0xFF;  // 65535 x 65535, JPEG's largest
      patched = true;
      break;
    }
  }
  REQUIRE(patched);
  write_uchars(dir.path / "huge.jpg", jpeg);

  const long before = peak_rss_kb();
  for (const fs::path& file : {kImages / "huge_claim.png", dir.path / "huge.bmp", dir.path / "huge.jpg"}) {
    INFO(file);
    const std::string message = expect_io_error([&] { load_image(file); }, {file.string(), "pixels"});
    const bool names_limit = message.find("max_pixels") != std::string::npos;
    CHECK(names_limit);
    // The header-only check the dataset runs says the same.
    const auto bytes = read_file(file);
    expect_io_error([&] { read_image_header(bytes, file); }, {"max_pixels"});
  }
  // Decoding 100000 x 100000 RGB would take 30 GB (8-bit) or 120 GB (float).
  CHECK(peak_rss_kb() - before < 64 * 1024);
}

TEST_CASE("hostile images: 16-bit, palette and grey+alpha PNGs") {
  const Image rgb16 = load_image(kImages / "rgb16.png");
  CHECK(rgb16.channels == 3);
  CHECK(rgb16.at(1, 0, 0) == doctest::Approx(float((9000 + 1234) % 65536) / 65535.0f).epsilon(1e-6));

  // tests/data/images/palette.png: written by Pillow (fuzz/make_seeds.py); expected values from Pillow.
  const Image palette = load_image(kImages / "palette.png");
  CHECK(palette.width == 6);
  CHECK(palette.height == 4);
  check_rgb_values(palette, {0, 0,   0, 51, 0,   0,   51,  0,   0,   153, 0,   0,   153, 0,   0,   204, 0,   0,
                             0, 51,  0, 51, 51,  51,  51,  51,  51,  102, 51,  102, 153, 51,  102, 204, 51,  153,
                             0, 102, 0, 51, 153, 51,  102, 102, 102, 102, 153, 204, 153, 102, 255, 204, 153, 51,
                             0, 204, 0, 51, 153, 102, 51,  204, 153, 153, 153, 0,   153, 204, 102, 204, 153, 204},
                   0);

  const Image grey_alpha = load_image(kImages / "grey_alpha8.png");
  CHECK(grey_alpha.channels == 2);
  const Image rgb = to_rgb(grey_alpha);
  CHECK(rgb.channels == 3);
  CHECK(rgb.at(2, 1, 0) == grey_alpha.at(2, 1, 0));
  CHECK(rgb.at(2, 1, 2) == grey_alpha.at(2, 1, 0));
  CHECK(to_grey(grey_alpha).channels == 1);
}

TEST_CASE("hostile images: a CMYK JPEG decodes to the right RGB") {
  // tests/data/images/cmyk.jpg: Pillow's CMYK JPEG (Adobe APP14, inverted CMYK); stb converts it.
  const Image image = load_image(kImages / "cmyk.jpg");
  CHECK(image.width == 6);
  CHECK(image.height == 4);
  check_rgb_values(image, {0, 0,   4, 40, 0,   8,  80, 0,   0,   118, 0,   7,   164, 0,   0,   196, 0,   16,
                           0, 62,  0, 40, 62,  25, 80, 62,  70,  118, 62,  84,  164, 62,  125, 196, 62,  142,
                           0, 118, 3, 40, 118, 81, 80, 118, 92,  118, 118, 191, 164, 118, 233, 196, 118, 35,
                           0, 183, 0, 40, 183, 76, 80, 183, 182, 118, 183, 20,  164, 183, 110, 196, 183, 199},
                   2);
}

TEST_CASE("hostile images: formats stb reads but kiln does not (GIF, PNM) are refused by content") {
  HostileDir dir("formats");
  const fs::path gif = dir.path / "really_a_gif.png";
  write_uchars(gif, {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0, ';'});
  expect_io_error([&] { load_image(gif); }, {gif.string(), "GIF", "kiln reads PNG, JPEG, BMP and TGA"});
  const fs::path pgm = dir.path / "really_a_pgm.png";
  write_uchars(pgm, {'P', '5', '\n', '1', ' ', '1', '\n', '2', '5', '5', '\n', 0x80});
  expect_io_error([&] { load_image(pgm); }, {pgm.string(), "PNM"});
}

TEST_CASE("hostile images: damage found by fuzzing is refused with a clear message") {
  const fs::path regressions = fs::path(KILN_SOURCE_DIR) / "fuzz" / "regressions" / "image";
  // stb_image 2.27 overflowed a Huffman table on these (heap buffer overflow).
  expect_io_error([&] { load_image(regressions / "jpeg_dht_over_256_codes_a.jpg"); },
                  {"jpeg_dht_over_256_codes_a.jpg", "the JPEG is damaged", "more than 256"});
  expect_io_error([&] { load_image(regressions / "jpeg_dht_over_256_codes_after_fill_bytes.jpg"); }, {"more than 256"});
  // ... and read uninitialised memory, then failed an assert (aborting the process), on this.
  expect_io_error([&] { load_image(regressions / "jpeg_scan_uses_undefined_huffman_table.jpg"); },
                  {"jpeg_scan_uses_undefined_huffman_table.jpg", "never defined"});
  // stb grew a buffer to the IDAT chunk's claimed 2 GB before noticing the file ends.
  const long before = peak_rss_kb();
  expect_io_error([&] { load_image(regressions / "png_idat_claims_2GB.png"); },
                  {"png_idat_claims_2GB.png", "IDAT chunk declares 2,147,483,632 bytes"});
  CHECK(peak_rss_kb() - before < 64 * 1024);
}

TEST_CASE("hostile images: unreadable permissions") {
  if (::geteuid() == 0) {
    MESSAGE("skipped: running as root, chmod 000 does not stop reads");
    return;
  }
  HostileDir dir("perm");
  const fs::path file = dir.path / "locked.png";
  save_png(file, Image{1, 1, 1, {0.5f}});
  fs::permissions(file, fs::perms::none);
  expect_io_error([&] { load_image(file); }, {file.string(), "Permission denied"});
}

TEST_CASE("hostile folders: symlink loops, self-links and dangling links end the scan") {
  HostileDir dir("loops");
  fs::create_directories(dir.path / "a" / "b");
  save_png(dir.path / "a" / "b" / "x.png", Image{2, 2, 1, {0, 0.25f, 0.5f, 1}});
  fs::create_directory_symlink(dir.path, dir.path / "a" / "b" / "up");        // loop through the root
  fs::create_directory_symlink(dir.path / "a", dir.path / "a" / "b" / "a2");  // loop through a parent
  fs::create_symlink("self.png", dir.path / "self.png");                      // ELOOP
  fs::create_symlink(dir.path / "gone.png", dir.path / "dangling.png");
  ::mkfifo((dir.path / "pipe.jpg").c_str(), 0644);  // would block a reader
  const ImageFolderDataset dataset(dir.path);
  REQUIRE(dataset.size() == 1);
  CHECK(dataset.file(0) == dir.path / "a" / "b" / "x.png");
  CHECK(dataset.skipped().size() == 3);  // self.png, dangling.png, pipe.jpg
  const std::string message = expect_io_error([&] { dataset.validate(1); }, {"dangling.png", "self.png", "pipe.jpg"});
  CHECK(message.find("x.png") == std::string::npos);
}

TEST_CASE("hostile checkpoints: a flipped byte in the data is caught by the checksum") {
  HostileDir dir("flip");
  const fs::path file = dir.path / "model.safetensors";
  const std::vector<float> w{1, 2, 3, 4, 5, 6};
  save_safetensors(file, {TensorRecord::from_values("w", {2, 3}, w)}, {{"step", "10"}});
  std::vector<unsigned char> bytes = read_uchars(file);
  bytes[bytes.size() - 5] ^= 0x10;  // inside w's data
  write_uchars(file, bytes);
  expect_io_error([&] { load_safetensors(file); }, {file.string(), "checksum mismatch", "damaged"});
}

TEST_CASE("hostile checkpoints: every single-bit flip is refused") {
  // kiln.checksum covers the data section and kiln.header_checksum a canonical form of the
  // header (names, dtypes, shapes, offsets, metadata); the structure checks catch what the
  // canonical form cannot express (invalid JSON, a wrong header length, padding), and a key one
  // byte away from either checksum key is refused (a flip there would switch a check off).
  // Before the header checksum, flips in a tensor name loaded silently (6 of 600 flips here).
  HostileDir dir("flips");
  const fs::path file = dir.path / "model.safetensors";
  const std::vector<float> w{1, 2, 3, 4, 5, 6};
  const std::vector<std::int64_t> steps{42};
  save_safetensors(file, {TensorRecord::from_values("w", {2, 3}, w), TensorRecord::from_values("n", {}, steps)},
                   {{"kiln.train.step", "17"}});
  const std::vector<unsigned char> original = read_uchars(file);
  REQUIRE(load_safetensors(file).metadata.count(std::string(kHeaderChecksumKey)) == 1);
  int refused = 0, loaded = 0;
  for (std::size_t i = 0; i < original.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<unsigned char> bytes = original;
      bytes[i] ^= static_cast<unsigned char>(1u << bit);
      write_uchars(file, bytes);
      INFO("byte " << i << " ('" << char(original[i]) << "') bit " << bit);
      try {
        (void)load_safetensors(file);
        ++loaded;
        FAIL_CHECK("a damaged file loaded");
      } catch (const IoError& e) {
        CHECK(std::string(e.what()).find(file.string()) != std::string::npos);
        ++refused;
      }
    }
  }
  MESSAGE(refused << " of " << original.size() * 8 << " single-bit flips refused, " << loaded << " loaded");
  CHECK(refused == int(original.size()) * 8);
}

TEST_CASE("hostile checkpoints: every truncation is refused, naming the file") {
  HostileDir dir("cut");
  const fs::path file = dir.path / "model.safetensors";
  const std::vector<float> w(64, 0.5f);
  save_safetensors(file, {TensorRecord::from_values("w", {8, 8}, w)});
  const std::vector<unsigned char> original = read_uchars(file);
  for (std::size_t n = 0; n < original.size(); ++n) {
    write_uchars(file, {original.begin(), original.begin() + std::ptrdiff_t(n)});
    INFO("cut to " << n << " of " << original.size() << " bytes");
    const std::string message = expect_io_error([&] { load_safetensors(file); }, {file.string()});
    if (n >= 8 + 8) CHECK(message.find("cannot load") != std::string::npos);
  }
}

TEST_CASE("hostile checkpoints: a header nested a million levels deep is refused, not a stack overflow") {
  const std::size_t depth = 1'000'000;
  // Appended piece by piece: g++ 12 reports the one-expression concatenation as out of bounds
  // (-Warray-bounds, a false positive) when the file shares a unity unit.
  std::string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":";
  header.append(depth, '[');
  header.append(depth, ']');
  header += ",\"data_offsets\":[0,0]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<std::byte> bytes(8 + header.size());
  for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = std::byte((header.size() >> (8 * i)) & 0xFF);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  expect_io_error([&] { parse_safetensors(bytes, "deep.safetensors"); }, {"'deep.safetensors'", "levels deep"});
}

TEST_CASE("hostile checkpoints: a damaged checksum key does not switch the check off") {
  HostileDir dir("checksum_key");
  const fs::path file = dir.path / "model.safetensors";
  save_safetensors(file, {TensorRecord::from_values("w", {2}, std::vector<float>{1, 2})});
  std::vector<unsigned char> bytes = read_uchars(file);
  const std::string text(bytes.begin(), bytes.end());
  const std::size_t at = text.find("kiln.checksum");
  REQUIRE(at != std::string::npos);
  bytes[at + 7] ^= 0x01;  // "kiln.checksum" -> "kiln.chdcksum"
  write_uchars(file, bytes);
  // The header checksum covers the metadata keys ...
  expect_io_error([&] { load_safetensors(file); }, {file.string(), "header checksum mismatch"});
  // ... and where there is none (files from kiln before it), the near-miss key is refused.
  save_safetensors(file, {TensorRecord::from_values("w", {2}, std::vector<float>{1, 2})},
                   {{"kiln.chdcksum", "crc32:00000000"}}, {.checksum = false});
  expect_io_error([&] { load_safetensors(file); }, {file.string(), "looks like a damaged 'kiln.checksum'"});
  save_safetensors(file, {TensorRecord::from_values("w", {2}, std::vector<float>{1, 2})},
                   {{"kiln.header_chocksum", "crc32:00000000"}}, {.checksum = false});
  expect_io_error([&] { load_safetensors(file); }, {file.string(), "looks like a damaged 'kiln.header_checksum'"});
}
