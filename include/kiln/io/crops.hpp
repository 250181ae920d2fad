// kiln/io/crops.hpp — what the training loaders share (kiln::color::TrainLoader,
// kiln::io::PairLoader): the resumable state, the 8-bit image kept in the cache, crop windows.
//
// Public API (namespace kiln::io):
//   struct LoaderState {
//     std::uint64_t epoch = 0, position = 0;   // the next sample: index into epoch's permutation
//     std::array<std::uint64_t, 4> rng{};      // the crop/flip generator
//     std::string to_string() const;           // "epoch position r0 r1 r2 r3" (decimal), for metadata
//     static LoaderState from_string(std::string_view);
//   };
#pragma once

#include "kiln/io/image.hpp"
#include "kiln/io/io_error.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::io {

struct LoaderState {
  std::uint64_t epoch = 0;
  std::uint64_t position = 0;
  std::array<std::uint64_t, 4> rng{};

  bool operator==(const LoaderState&) const = default;

  std::string to_string() const {
    std::ostringstream out;
    out << epoch << ' ' << position;
    for (auto r : rng) out << ' ' << r;
    return out.str();
  }
  static LoaderState from_string(std::string_view text) {
    std::istringstream in{std::string(text)};
    LoaderState st;
    in >> st.epoch >> st.position;
    for (auto& r : st.rng) in >> r;
    std::string rest;
    if (in.fail() || (in >> rest)) {
      throw IoError("LoaderState: cannot parse '" + std::string(text) +
                    "' (expected six unsigned decimal numbers: epoch position rng0 rng1 rng2 rng3)");
    }
    return st;
  }
};

namespace detail {

// A decoded image as kept in memory: 8-bit interleaved RGB.
struct CachedImage {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
};

inline std::string with_file(const std::filesystem::path& file, const std::string& what) {
  const std::string name = quoted(file);
  if (what.find(file.string()) != std::string::npos) return what;
  return "image " + name + ": " + what;
}

// Decodes `file` as RGB and downscales it so the long side is at most max_side, keeping the
// short side at least min_side. Throws IoError naming the file when it is smaller than min_side.
inline CachedImage decode_for_crops(const std::filesystem::path& file, int max_side, int min_side) {
  Image image = to_rgb(load_image(file));
  const int short_side = std::min(image.width, image.height), long_side = std::max(image.width, image.height);
  if (short_side < min_side) {
    throw IoError("image " + quoted(file) + " is " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                  " pixels, smaller than the " + std::to_string(min_side) + "-pixel crop");
  }
  const double f = std::min(1.0, std::max(double(max_side) / long_side, double(min_side) / short_side));
  if (f < 1.0) {
    const int w = std::max(min_side, int(std::lround(image.width * f)));
    const int h = std::max(min_side, int(std::lround(image.height * f)));
    image = resize(image, w, h);
  }
  CachedImage c{image.width, image.height, std::vector<std::uint8_t>(image.pixels.size())};
  for (std::size_t i = 0; i < image.pixels.size(); ++i) c.rgb[i] = to_8bit(image.pixels[i]);
  return c;
}

// The window [x0, x0+side) x [y0, y0+side) as a float image, mirrored if flip.
inline Image window(const CachedImage& src, int x0, int y0, int side, bool flip) {
  Image out{side, side, 3, std::vector<float>(std::size_t(side) * std::size_t(side) * 3)};
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      const int sx = x0 + (flip ? side - 1 - x : x);
      const std::uint8_t* p = &src.rgb[(std::size_t(y0 + y) * std::size_t(src.width) + std::size_t(sx)) * 3];
      float* o = &out.pixels[(std::size_t(y) * std::size_t(side) + std::size_t(x)) * 3];
      o[0] = from_8bit(p[0]);
      o[1] = from_8bit(p[1]);
      o[2] = from_8bit(p[2]);
    }
  }
  return out;
}

}  // namespace detail

}  // namespace kiln::io
