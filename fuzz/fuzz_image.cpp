// fuzz/fuzz_image.cpp — the image path: bytes -> decode_image (stb_image + kiln's checks) ->
// to_rgb / to_grey / resize -> Lab tensors -> back to RGB.
//
// Properties checked on success: the size is within LoadOptions::max_pixels and the header's
// claim, 1..4 channels, the pixel buffer has exactly w*h*c values, every value lies in 0..1,
// the conversions keep the size and give finite, in-range values.
#include "fuzz_common.hpp"

#include <kiln/core/error.hpp>
#include <kiln/io/image.hpp>
#include <kiln/color/lab_tensor.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

namespace {

void check_range(const kiln::io::Image& image, const char* what) {
  KILN_FUZZ_CHECK(image.channels >= 1 && image.channels <= 4, "%s: %d channels", what, image.channels);
  KILN_FUZZ_CHECK(image.pixels.size() == image.pixel_count() * std::size_t(image.channels),
                  "%s: %zu values for %dx%dx%d", what, image.pixels.size(), image.width, image.height, image.channels);
  for (float v : image.pixels) KILN_FUZZ_CHECK(v >= 0.0f && v <= 1.0f, "%s: value %g outside 0..1", what, double(v));
}

void run(std::span<const std::byte> bytes) {
  using namespace kiln::io;
  LoadOptions options;
  options.max_pixels = std::uint64_t(1) << 16;  // keeps each run fast under ASan (same code paths)
  Image image;
  try {
    image = decode_image(bytes, "fuzz-input.png", options);
  } catch (const IoError&) {
    return;  // the expected outcome for bad input
  }
  KILN_FUZZ_CHECK(image.width > 0 && image.height > 0, "decoded %dx%d", image.width, image.height);
  KILN_FUZZ_CHECK(std::uint64_t(image.width) * std::uint64_t(image.height) <= options.max_pixels,
                  "decoded %dx%d, over max_pixels", image.width, image.height);
  check_range(image, "decoded");

  const Image rgb = to_rgb(image);
  KILN_FUZZ_CHECK(rgb.channels == 3 && rgb.width == image.width && rgb.height == image.height, "to_rgb shape");
  check_range(rgb, "to_rgb");
  const Image grey = to_grey(image);
  KILN_FUZZ_CHECK(grey.channels == 1 && grey.width == image.width && grey.height == image.height, "to_grey shape");
  check_range(grey, "to_grey");

  // A small resize, as the loader does for crops (odd sizes, both directions).
  const int w = 1 + image.width % 7, h = 1 + image.height % 5;
  const Image small = resize(rgb, w, h);
  KILN_FUZZ_CHECK(small.width == w && small.height == h && small.channels == 3, "resize shape");
  check_range(small, "resize");

  // Lab, as the network sees it, and back.
  kiln::Tensor<float, kiln::Cpu> L(kiln::Shape::nchw(1, 1, small.height, small.width));
  kiln::Tensor<float, kiln::Cpu> ab(kiln::Shape::nchw(1, 2, small.height, small.width));
  kiln::color::image_to_lab(small, L, &ab, 0);
  for (std::size_t i = 0; i < small.pixel_count(); ++i) {
    const float l = L.data()[i];
    KILN_FUZZ_CHECK(std::isfinite(l) && l >= -1.001f && l <= 1.001f, "normalised L %g", double(l));
    for (int k = 0; k < 2; ++k) {
      const float v = ab.data()[std::size_t(k) * small.pixel_count() + i];
      KILN_FUZZ_CHECK(std::isfinite(v) && std::fabs(v) <= 1.5f, "normalised ab %g", double(v));
    }
  }
  const Image back = kiln::color::lab_to_image(L, ab, 0);
  check_range(back, "lab_to_image");
  if (image.pixel_count() <= 4096) {
    const auto L_full = kiln::color::image_to_L(image);
    KILN_FUZZ_CHECK(L_full.shape().h() == image.height && L_full.shape().w() == image.width, "image_to_L shape");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  run(std::as_bytes(std::span(data, size)));
  return 0;
}
