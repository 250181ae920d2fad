#pragma once
// Colorizing one image of any size with a trained network (kiln-colorize and the trainer's
// sample grid share this):
//   1. the input becomes grey (its CIE L*), kept at full resolution;
//   2. the network sees a copy resized so the long side is at most `max_side` (or exactly
//      `size`, or scaled by `scale`), run by kiln::infer_image (kiln/nn/infer.hpp): reflect-padded
//      to a multiple of Model::size_multiple, in tiles of at most `tile` pixels on the network's
//      eval plan, so memory is bounded by the tile and the result is the untiled one;
//   3. the predicted ab is cropped back and, if the copy was smaller, upsampled bilinearly;
//   4. full-resolution L + ab -> sRGB.
#include "models.hpp"
#include <kiln/io/color.hpp>
#include <kiln/io/image.hpp>
#include <kiln/color/lab_tensor.hpp>
#include <kiln/nn/infer.hpp>
#include <kiln/nn/network.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace kiln::programs {

struct InferSize {
  int max_side = 1024;  // the long side of the copy the network sees, at most (0: no limit)
  int size = 0;         // > 0: exactly this long side (up or down)
  double scale = 0;     // > 0: this factor of the original size
  // Tile side for the network. Each tile carries a 128-pixel margin (the small and base
  // U-Nets' receptive-field radius, 122, rounded up to 16), so 1024 recomputes about 1.8x
  // the pixels of a large image; its eval plan is ~0.27 GB for the small model (0.54 GB base); images up to
  // 1024 x 1024 (the default --max-side) run in one tile.
  int tile = 1024;
};

// The size the network sees for a w x h image.
inline void inference_size(int w, int h, const InferSize& s, int& iw, int& ih) {
  double f = 1.0;
  const int long_side = std::max(w, h);
  if (s.size > 0)
    f = double(s.size) / long_side;
  else if (s.scale > 0)
    f = s.scale;
  else if (s.max_side > 0 && long_side > s.max_side)
    f = double(s.max_side) / long_side;
  iw = std::max(1, int(std::lround(w * f)));
  ih = std::max(1, int(std::lround(h * f)));
}

// Bilinear resampling of [1,C,h,w] planes to [1,C,H,W] (pixel centres aligned, edges clamped:
// PyTorch's align_corners=False).
inline Tensor<float, Cpu> resize_planes(const Tensor<float, Cpu>& x, int H, int W) {
  const int h = int(x.shape().h()), w = int(x.shape().w());
  if (h == H && w == W) return x;
  const std::int64_t C = x.shape().c();
  Tensor<float, Cpu> out(Shape::nchw(1, C, H, W));
  const double sy = double(h) / H, sx = double(w) / W;
  std::vector<int> x0(static_cast<std::size_t>(W)), x1(static_cast<std::size_t>(W));
  std::vector<float> fx(static_cast<std::size_t>(W));
  for (int X = 0; X < W; ++X) {
    const double s = std::clamp((X + 0.5) * sx - 0.5, 0.0, double(w - 1));
    x0[std::size_t(X)] = int(s);
    x1[std::size_t(X)] = std::min(x0[std::size_t(X)] + 1, w - 1);
    fx[std::size_t(X)] = float(s - x0[std::size_t(X)]);
  }
  for (std::int64_t c = 0; c < C; ++c)
    for (int Y = 0; Y < H; ++Y) {
      const double s = std::clamp((Y + 0.5) * sy - 0.5, 0.0, double(h - 1));
      const int y0 = int(s), y1 = std::min(y0 + 1, h - 1);
      const float fy = float(s - y0);
      for (int X = 0; X < W; ++X) {
        const std::size_t i = std::size_t(X);
        const float top = x.at(0, c, y0, x0[i]) * (1 - fx[i]) + x.at(0, c, y0, x1[i]) * fx[i];
        const float bottom = x.at(0, c, y1, x0[i]) * (1 - fx[i]) + x.at(0, c, y1, x1[i]) * fx[i];
        out.at(0, c, Y, X) = top * (1 - fy) + bottom * fy;
      }
    }
  return out;
}

struct Colorized {
  io::Image grey;         // 1 channel, full resolution
  io::Image colour;       // 3 channels, full resolution
  Tensor<float, Cpu> L;   // [1,1,H,W] network scaling
  Tensor<float, Cpu> ab;  // [1,2,H,W] network scaling (ab/110)
  int infer_width = 0, infer_height = 0;
};

// The network's output is ab/110 (a regression model).
struct OutputIsAb {
  const Tensor<float, Cpu>& operator()(const Tensor<float, Cpu>& y) const { return y; }
};

// Colorizes `image` (any channel count, any size) with `net` in eval mode; `to_ab` maps the
// network's output to ab/110 (a classifier's host-side decoding, for small images).
template <class Net, class ToAb = OutputIsAb>
Colorized colorize(Network<Net>& net, const io::Image& image, const InferSize& how = {}, const ToAb& to_ab = {}) {
  Colorized r;
  r.grey = io::to_grey(image);
  r.L = io::image_to_L(r.grey);
  inference_size(image.width, image.height, how, r.infer_width, r.infer_height);
  const bool resized = r.infer_width != image.width || r.infer_height != image.height;
  const Tensor<float, Cpu> L_small = resized ? io::image_to_L(io::resize(r.grey, r.infer_width, r.infer_height)) : r.L;
  TileOptions tiles;
  tiles.tile = how.tile;
  r.ab = resize_planes(to_ab(infer_image(net, L_small, tiles)), image.height, image.width);
  r.colour = io::lab_to_image(r.L, r.ab, 0);
  return r;
}

// Images side by side (same height assumed; shorter ones are top-aligned), `gap` white pixels apart.
inline io::Image side_by_side(const std::vector<const io::Image*>& images, int gap = 4) {
  int w = 0, h = 0;
  for (const io::Image* im : images) {
    w += im->width;
    h = std::max(h, im->height);
  }
  w += gap * int(images.size() > 0 ? images.size() - 1 : 0);
  io::Image out{w, h, 3, std::vector<float>(std::size_t(w) * std::size_t(h) * 3, 1.0f)};
  int x0 = 0;
  for (const io::Image* im : images) {
    for (int y = 0; y < im->height; ++y)
      for (int x = 0; x < im->width; ++x)
        for (int c = 0; c < 3; ++c) out.at(x0 + x, y, c) = im->at(x, y, im->channels >= 3 ? c : 0);
    x0 += im->width + gap;
  }
  return out;
}

}  // namespace kiln::programs
