// kiln/train/quality.hpp — image quality metrics for any task, on spans.
//
// Public API (namespace kiln::train):
//   double mse(std::span<const float> a, std::span<const float> b);
//   double psnr(std::span<const float> pred, std::span<const float> truth, double peak = 1.0);
//       10 log10(peak² / MSE) in dB; peak = the value range (1 for 0..1, 255 for 8-bit,
//       2 for -1..1); +infinity for identical signals
//   double ssim(std::span<const float> a, std::span<const float> b, int width, int height,
//               int channels = 1, double peak = 1.0, Layout layout = Layout::planar);
//       Wang, Bovik, Sheikh & Simoncelli (2004): Gaussian window 11x11, σ = 1.5, K1 = 0.01,
//       K2 = 0.03, C1 = (K1 peak)², C2 = (K2 peak)²; local statistics over the windows that
//       fit inside the image ("valid", as the reference ssim_index.m), the mean SSIM map,
//       averaged over channels. Images smaller than 11 pixels use a window clipped to the
//       image (weights renormalised). Layout::planar = [C, H, W]; Layout::interleaved = HWC.
#pragma once

#include "kiln/core/error.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

namespace kiln::train {

enum class Layout { planar, interleaved };

inline double mse(std::span<const float> a, std::span<const float> b) {
  KILN_CHECK(a.size() == b.size() && !a.empty(), "mse: the signals hold ", a.size(), " and ", b.size(), " values");
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    sum += d * d;
  }
  return sum / double(a.size());
}

inline double psnr(std::span<const float> pred, std::span<const float> truth, double peak = 1.0) {
  KILN_CHECK(peak > 0.0, "psnr: the peak value must be positive, got ", peak);
  const double m = mse(pred, truth);
  if (m <= 0.0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(peak * peak / m);
}

namespace detail {

// The normalised 1-D Gaussian (the 2-D window is its outer product: separable).
inline std::array<double, 11> ssim_gaussian() {
  std::array<double, 11> g{};
  double sum = 0.0;
  for (int i = 0; i < 11; ++i) {
    const double d = i - 5;
    g[std::size_t(i)] = std::exp(-d * d / (2.0 * 1.5 * 1.5));
    sum += g[std::size_t(i)];
  }
  for (auto& v : g) v /= sum;
  return g;
}

// Mean SSIM of one channel (values read through at(x, y) of each image).
template <class A, class B>
double ssim_channel(A a, B b, int w, int h, double peak) {
  const auto g = ssim_gaussian();
  const double c1 = (0.01 * peak) * (0.01 * peak), c2 = (0.03 * peak) * (0.03 * peak);
  // Window extent per axis: 11 where it fits ("valid" positions), else the whole axis.
  const int kw = std::min(11, w), kh = std::min(11, h);
  const int ox = kw == 11 ? 0 : 5 - (kw - 1) / 2, oy = kh == 11 ? 0 : 5 - (kh - 1) / 2;
  double gx_sum = 0, gy_sum = 0;
  for (int i = 0; i < kw; ++i) gx_sum += g[std::size_t(ox + i)];
  for (int i = 0; i < kh; ++i) gy_sum += g[std::size_t(oy + i)];
  const int nx = w - kw + 1, ny = h - kh + 1;
  double total = 0.0;
  for (int y = 0; y < ny; ++y)
    for (int x = 0; x < nx; ++x) {
      double ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
      for (int j = 0; j < kh; ++j)
        for (int i = 0; i < kw; ++i) {
          const double wt = g[std::size_t(oy + j)] * g[std::size_t(ox + i)] / (gx_sum * gy_sum);
          const double va = a(x + i, y + j), vb = b(x + i, y + j);
          ma += wt * va;
          mb += wt * vb;
          saa += wt * va * va;
          sbb += wt * vb * vb;
          sab += wt * va * vb;
        }
      const double var_a = saa - ma * ma, var_b = sbb - mb * mb, cov = sab - ma * mb;
      total += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (var_a + var_b + c2));
    }
  return total / (double(nx) * double(ny));
}

}  // namespace detail

inline double ssim(std::span<const float> a, std::span<const float> b, int width, int height, int channels = 1,
                   double peak = 1.0, Layout layout = Layout::planar) {
  KILN_CHECK(width > 0 && height > 0 && channels > 0 &&
                 a.size() == std::size_t(width) * std::size_t(height) * std::size_t(channels) && b.size() == a.size(),
             "ssim: expected two images of ", width, "x", height, "x", channels, " values, got ", a.size(), " and ",
             b.size());
  KILN_CHECK(peak > 0.0, "ssim: the peak value must be positive, got ", peak);
  const std::size_t w = std::size_t(width), plane = w * std::size_t(height), c = std::size_t(channels);
  double sum = 0.0;
  for (std::size_t ch = 0; ch < c; ++ch) {
    auto index = [&](int x, int y) {
      return layout == Layout::planar ? ch * plane + std::size_t(y) * w + std::size_t(x)
                                      : (std::size_t(y) * w + std::size_t(x)) * c + ch;
    };
    sum += detail::ssim_channel([&](int x, int y) { return double(a[index(x, y)]); },
                                [&](int x, int y) { return double(b[index(x, y)]); }, width, height, peak);
  }
  return sum / double(c);
}

}  // namespace kiln::train
