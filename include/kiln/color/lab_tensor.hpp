// kiln/color/lab_tensor.hpp — an RGB image to the colorization network's tensors and back.
//
// Public API (namespace kiln::color):
//   // Writes image (any channel count: grey is replicated, alpha dropped) into slot n of
//   // L [N,1,H,W] (L/50 - 1) and, if ab is not null, ab [N,2,H,W] (a/110, b/110).
//   // The tensors' H and W must equal the image's height and width.
//   void image_to_lab(const io::Image&, Tensor<float, Cpu>& L, Tensor<float, Cpu>* ab, std::int64_t n);
//   Tensor<float, Cpu> image_to_L(const io::Image&);                 // [1,1,H,W]
//   // Back to an sRGB image (3 channels, 0..1, out-of-gamut colours clamped).
//   io::Image lab_to_image(const Tensor<float, Cpu>& L, const Tensor<float, Cpu>& ab, std::int64_t n);
//
// The scaling is kiln/color/scaling.hpp's.
#pragma once

#include "kiln/color/scaling.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/io/image.hpp"
#include "kiln/io/io_error.hpp"
#include "kiln/ops/color.hpp"

#include <cstdint>
#include <string>

namespace kiln::color {

namespace detail {
inline void check_slot(const Tensor<float, Cpu>& t, std::int64_t channels, const io::Image& image, std::int64_t n,
                       const char* what) {
  const Shape& s = t.shape();
  if (s.rank() != 4 || s.c() != channels || s.h() != image.height || s.w() != image.width || n < 0 || n >= s.n()) {
    throw io::IoError(std::string("image_to_lab: cannot write a ") + std::to_string(image.width) + "x" +
                      std::to_string(image.height) + " image into slot " + std::to_string(n) + " of the " + what +
                      " tensor of shape " + s.str() + " (expected [N, " + std::to_string(channels) + ", " +
                      std::to_string(image.height) + ", " + std::to_string(image.width) + "] with N > " +
                      std::to_string(n) + ")");
  }
}
}  // namespace detail

inline void image_to_lab(const io::Image& image, Tensor<float, Cpu>& L, Tensor<float, Cpu>* ab, std::int64_t n) {
  io::detail::check_image(image, "convert to Lab");
  detail::check_slot(L, 1, image, n, "L");
  if (ab) detail::check_slot(*ab, 2, image, n, "ab");
  const std::size_t plane = image.pixel_count();
  const std::size_t c = std::size_t(image.channels);
  float* l_out = L.data() + std::size_t(n) * plane;
  float* a_out = ab ? ab->data() + std::size_t(n) * 2 * plane : nullptr;
  for (std::size_t i = 0; i < plane; ++i) {
    const float* p = &image.pixels[i * c];
    const Rgb rgb = c >= 3 ? Rgb{p[0], p[1], p[2]} : Rgb{p[0], p[0], p[0]};
    const Lab lab = srgb_to_lab(rgb);
    l_out[i] = normalise_L(lab.L);
    if (a_out) {
      a_out[i] = normalise_ab(lab.a);
      a_out[plane + i] = normalise_ab(lab.b);
    }
  }
}

inline Tensor<float, Cpu> image_to_L(const io::Image& image) {
  io::detail::check_image(image, "convert to Lab");
  Tensor<float, Cpu> L(Shape::nchw(1, 1, image.height, image.width));
  image_to_lab(image, L, nullptr, 0);
  return L;
}

inline io::Image lab_to_image(const Tensor<float, Cpu>& L, const Tensor<float, Cpu>& ab, std::int64_t n) {
  const Shape& ls = L.shape();
  const Shape& as = ab.shape();
  if (ls.rank() != 4 || as.rank() != 4 || ls.c() != 1 || as.c() != 2 || ls.h() != as.h() || ls.w() != as.w() || n < 0 ||
      n >= ls.n() || n >= as.n()) {
    throw io::IoError("lab_to_image: L " + ls.str() + " and ab " + as.str() +
                      " must be [N, 1, H, W] and [N, 2, H, W] with slot " + std::to_string(n) + " < N");
  }
  const auto h = int(ls.h()), w = int(ls.w());
  const std::size_t plane = std::size_t(h) * std::size_t(w);
  io::Image out{w, h, 3, std::vector<float>(plane * 3)};
  const float* l_in = L.data() + std::size_t(n) * plane;
  const float* a_in = ab.data() + std::size_t(n) * 2 * plane;
  for (std::size_t i = 0; i < plane; ++i) {
    const Rgb rgb = lab_to_srgb({denormalise_L(l_in[i]), denormalise_ab(a_in[i]), denormalise_ab(a_in[plane + i])});
    out.pixels[i * 3 + 0] = clamp01(rgb.r);
    out.pixels[i * 3 + 1] = clamp01(rgb.g);
    out.pixels[i * 3 + 2] = clamp01(rgb.b);
  }
  return out;
}

}  // namespace kiln::color

// The programs (examples/) still spell these kiln::io::; drop once they say kiln::color::.
namespace kiln::io {
using color::image_to_L;
using color::image_to_lab;
using color::lab_to_image;
}  // namespace kiln::io
