#pragma once
// Whole-image inference in bounded memory: a network of any receptive field run
// over an image of any size, tile by tile on its eval plan (Network::infer), with
// the same output as one untiled pass.
//
//   infer_tiled(net, x, opts)  x [N, C, H, W] on the host, H and W multiples of the
//                              network's alignment; returns [N, Out, H, W] on the host.
//   infer_image(net, x, opts)  any H and W: reflect-pads bottom and right to the
//                              alignment, runs infer_tiled, crops back.
//
// Why the stitched output equals the untiled one: every tile has the same size
// (one plan, reused) and starts at a multiple of the alignment, so its pooling
// windows are the whole image's; of each tile only the pixels at least `margin`
// (>= the receptive-field radius) from every cut edge are kept, and those depend on
// no pixel outside the tile, so zero padding at a cut edge never reaches them. Along
// the image's own edges a tile's edge is the image's edge, padded as in the untiled pass.
// Values are then bitwise equal where the layers compute a pixel the same way
// wherever it sits and whatever the image width (tests/unit/test_infer.cpp checks it).
#include <algorithm>
#include <cstdint>

#include "kiln/core/error.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/nn/network.hpp"
#include "kiln/nn/receptive_field.hpp"

namespace kiln {

struct TileOptions {
  int tile = 512;      // tile side in pixels (rounded up to the alignment); 0: the whole image at once
  int margin = -1;     // context kept around each tile's core; -1: the receptive-field radius rounded up
                       // to the alignment. A smaller margin is allowed (faster, no longer exact).
  int alignment = -1;  // -1: ReceptiveField<Net>::alignment
};

// Index into [0, n) for a position outside it, mirrored at the edges without
// repeating the edge pixel (numpy's 'reflect'), folded as often as needed.
inline std::int64_t reflect_index(std::int64_t i, std::int64_t n) {
  if (n == 1) return 0;
  const std::int64_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// [N, C, H, W] -> [N, C, Hp, Wp] (the next multiples of `multiple`), reflect-padded
// at the bottom and right. Returns x itself when nothing needs padding.
inline Tensor<float, Cpu> pad_reflect(const Tensor<float, Cpu>& x, int multiple) {
  KILN_CHECK(x.shape().rank() == 4 && multiple > 0,
             "kiln::pad_reflect: expected an NCHW tensor and a positive multiple, got ", x.shape().str(), " and ",
             multiple);
  const std::int64_t h = x.shape().h(), w = x.shape().w();
  const std::int64_t hp = (h + multiple - 1) / multiple * multiple, wp = (w + multiple - 1) / multiple * multiple;
  if (hp == h && wp == w) return x;
  Tensor<float, Cpu> out(Shape::nchw(x.shape().n(), x.shape().c(), hp, wp));
  for (std::int64_t n = 0; n < x.shape().n(); ++n)
    for (std::int64_t c = 0; c < x.shape().c(); ++c)
      for (std::int64_t y = 0; y < hp; ++y) {
        const std::int64_t sy = reflect_index(y, h);
        for (std::int64_t xx = 0; xx < wp; ++xx) out.at(n, c, y, xx) = x.at(n, c, sy, reflect_index(xx, w));
      }
  return out;
}

namespace detail {

// One axis of the tiling: tile `k` reads [start, start + size) and keeps [keep_lo, keep_hi).
struct TileAxis {
  std::int64_t length, size, core, margin;
  std::int64_t count() const { return size == length ? 1 : (length + core - 1) / core; }
  void tile(std::int64_t k, std::int64_t& start, std::int64_t& keep_lo, std::int64_t& keep_hi) const {
    if (size == length) {
      start = keep_lo = 0;
      keep_hi = length;
      return;
    }
    keep_lo = k * core;
    keep_hi = std::min(keep_lo + core, length);
    // Centred on its core where it can be, pushed inside the image at the edges (the kept
    // pixels then stay at least `margin` from the cut edge: core + 2 * margin = size).
    start = std::clamp(keep_lo - margin, std::int64_t{0}, length - size);
  }
};

}  // namespace detail

template <class Net>
Tensor<float, Cpu> infer_tiled(Network<Net>& net, const Tensor<float, Cpu>& x, const TileOptions& opts = {}) {
  using Device = typename Net::device;
  const Shape& s = x.shape();
  const int align = opts.alignment > 0 ? opts.alignment : ReceptiveField<Net>::alignment;
  const int margin = opts.margin >= 0 ? opts.margin : (ReceptiveField<Net>::radius + align - 1) / align * align;
  KILN_CHECK(s.rank() == 4 && s.h() % align == 0 && s.w() % align == 0,
             "kiln::infer_tiled: the image must be [N, C, H, W] with H and W multiples of ", align,
             " (infer_image pads it), got ", s.str());
  KILN_CHECK(margin % align == 0, "kiln::infer_tiled: the margin (", margin, ") must be a multiple of the alignment (",
             align, ") so that every tile starts on the pooling grid");
  const std::int64_t tile = (std::int64_t{opts.tile} + align - 1) / align * align;
  const auto axis = [&](std::int64_t length) {
    const std::int64_t size = tile <= 0 ? length : std::min(tile, length);
    return detail::TileAxis{length, size, size - 2 * margin, margin};
  };
  const detail::TileAxis ay = axis(s.h()), ax = axis(s.w());
  for (const auto* a : {&ay, &ax})
    KILN_CHECK(a->size == a->length || a->core > 0, "kiln::infer_tiled: a tile of ", tile,
               " pixels leaves nothing inside twice the margin (", margin, "): use tiles larger than ", 2 * margin);

  Tensor<float, Cpu> in(Shape::nchw(s.n(), s.c(), ay.size, ax.size));
  Tensor<float, Device> in_device;
  if constexpr (!std::is_same_v<Device, Cpu>) in_device = Tensor<float, Device>(in.shape());
  Tensor<float, Cpu> out, part;
  for (std::int64_t ty = 0; ty < ay.count(); ++ty)
    for (std::int64_t tx = 0; tx < ax.count(); ++tx) {
      std::int64_t y0, ky0, ky1, x0, kx0, kx1;
      ay.tile(ty, y0, ky0, ky1);
      ax.tile(tx, x0, kx0, kx1);
      for (std::int64_t n = 0; n < s.n(); ++n)
        for (std::int64_t c = 0; c < s.c(); ++c)
          for (std::int64_t y = 0; y < ay.size; ++y) std::copy_n(&x.at(n, c, y0 + y, x0), ax.size, &in.at(n, c, y, 0));
      const Tensor<float, Device>* y_device;
      if constexpr (std::is_same_v<Device, Cpu>) {
        y_device = &net.infer(in);
      } else {
        in_device.copy_from_host(in.span());
        y_device = &net.infer(in_device);
      }
      const Shape ys = y_device->shape();
      KILN_CHECK(ys.rank() == 4 && ys.n() == s.n() && ys.h() == ay.size && ys.w() == ax.size,
                 "kiln::infer_tiled: the network turned a tile of ", in.shape().str(), " into ", ys.str(),
                 "; tiling needs an output of the input's image size");
      if (out.empty()) out = Tensor<float, Cpu>(Shape::nchw(s.n(), ys.c(), s.h(), s.w()));
      // The result is a view into the arena (device memory for Cuda): read it before the next tile.
      const Tensor<float, Cpu>* y = nullptr;
      if constexpr (std::is_same_v<Device, Cpu>) {
        y = y_device;
      } else {
        part = to<Cpu>(*y_device);
        y = &part;
      }
      for (std::int64_t n = 0; n < s.n(); ++n)
        for (std::int64_t c = 0; c < ys.c(); ++c)
          for (std::int64_t yy = ky0; yy < ky1; ++yy)
            std::copy_n(&y->at(n, c, yy - y0, kx0 - x0), kx1 - kx0, &out.at(n, c, yy, kx0));
    }
  return out;
}

// Any image size: reflect-padded to the alignment (bottom, right), tiled, cropped back.
template <class Net>
Tensor<float, Cpu> infer_image(Network<Net>& net, const Tensor<float, Cpu>& x, const TileOptions& opts = {}) {
  const int align = opts.alignment > 0 ? opts.alignment : ReceptiveField<Net>::alignment;
  const Tensor<float, Cpu> padded = pad_reflect(x, align);
  if (padded.shape() == x.shape()) return infer_tiled(net, x, opts);
  const Tensor<float, Cpu> full = infer_tiled(net, padded, opts);
  const Shape& s = x.shape();
  Tensor<float, Cpu> out(Shape::nchw(s.n(), full.shape().c(), s.h(), s.w()));
  for (std::int64_t n = 0; n < s.n(); ++n)
    for (std::int64_t c = 0; c < full.shape().c(); ++c)
      for (std::int64_t y = 0; y < s.h(); ++y) std::copy_n(&full.at(n, c, y, 0), s.w(), &out.at(n, c, y, 0));
  return out;
}

}  // namespace kiln
