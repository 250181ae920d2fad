// kiln/train/quality.hpp: PSNR for any value range and SSIM (Gaussian 11x11, sigma 1.5)
// against hand-computed values and an independent implementation of Wang et al. (2004).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kiln/train/quality.hpp"

using namespace kiln;

TEST_CASE("psnr: hand-computed values for ranges 0..1 and 0..255; identical signals are infinite") {
  const std::vector<float> zero(4, 0.0f), tenth(4, 0.1f);
  CHECK(train::mse(zero, tenth) == doctest::Approx(0.01));
  CHECK(train::psnr(zero, tenth) == doctest::Approx(20.0));  // 10 log10(1 / 0.01)
  const std::vector<float> a{0, 0, 0, 0}, b{10, 10, 10, 10};
  CHECK(train::psnr(a, b, 255.0) == doctest::Approx(10.0 * std::log10(255.0 * 255.0 / 100.0)));  // 28.1308 dB
  CHECK(train::psnr(a, b, 255.0) == doctest::Approx(28.1308).epsilon(1e-5));
  const std::vector<float> m{-1, 1}, n{-1, 0};  // range -1..1: peak 2, MSE 0.5
  CHECK(train::psnr(n, m, 2.0) == doctest::Approx(10.0 * std::log10(8.0)));
  CHECK(train::psnr(a, a) == std::numeric_limits<double>::infinity());
  CHECK_THROWS_AS(train::psnr(a, std::vector<float>{1, 2}), kiln::Error);
  CHECK_THROWS_AS(train::psnr(a, b, 0.0), kiln::Error);
}

TEST_CASE("ssim: identical images give 1, constant images the luminance term alone") {
  std::vector<float> img(16 * 12);
  for (std::size_t i = 0; i < img.size(); ++i) img[i] = float((i * 37) % 101) / 100.0f;
  CHECK(train::ssim(img, img, 16, 12) == doctest::Approx(1.0));
  // Constant 0.2 vs constant 0.6: no variance, so SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
  // with C1 = (0.01 * 1)^2: (0.24 + 1e-4) / (0.40 + 1e-4) = 0.600099...
  const std::vector<float> c2(16 * 12, 0.2f), c6(16 * 12, 0.6f);
  CHECK(train::ssim(c2, c6, 16, 12) == doctest::Approx(0.2401 / 0.4001).epsilon(1e-6));
  // The same with peak 255 (C1 = 2.55^2) on 0..255 values.
  const std::vector<float> d2(16 * 12, 51.0f), d6(16 * 12, 153.0f);
  const double c1 = 2.55 * 2.55;
  CHECK(train::ssim(d2, d6, 16, 12, 1, 255.0) ==
        doctest::Approx((2 * 51.0 * 153 + c1) / (51.0 * 51 + 153.0 * 153 + c1)));
  // An inverted image is anti-correlated: SSIM below zero.
  std::vector<float> inv(img.size());
  for (std::size_t i = 0; i < img.size(); ++i) inv[i] = 1.0f - img[i];
  CHECK(train::ssim(img, inv, 16, 12) < 0.0);
}

TEST_CASE("ssim: equals an independent implementation of Wang et al. on a 16x13 pattern (18 valid windows)") {
  // Reference: a plain Python transcription of ssim_index.m ('valid' windows, Gaussian 11x11,
  // sigma 1.5, K = 0.01 / 0.03, L = 1) on the same two images gave 0.9614064043193414.
  const int w = 16, h = 13;
  std::vector<float> a(w * h), b(w * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double va = double((x * 7 + y * 3) % 11) / 10.0;
      a[std::size_t(y * w + x)] = float(va);
      b[std::size_t(y * w + x)] = float(std::min(1.0, va * 0.8 + 0.1 + ((x + y) % 3) * 0.05));
    }
  CHECK(train::ssim(a, b, w, h) == doctest::Approx(0.9614064043193414).epsilon(1e-6));
  // Channels: the mean over channels, planar or interleaved alike.
  std::vector<float> a2, b2, ai(2 * a.size()), bi(2 * b.size());
  a2 = a;
  a2.insert(a2.end(), a.begin(), a.end());
  b2 = b;
  b2.insert(b2.end(), a.begin(), a.end());  // second channel identical: SSIM 1
  for (std::size_t i = 0; i < a.size(); ++i) {
    ai[2 * i] = a[i];
    ai[2 * i + 1] = a[i];
    bi[2 * i] = b[i];
    bi[2 * i + 1] = a[i];
  }
  const double expected = (0.9614064043193414 + 1.0) / 2;
  CHECK(train::ssim(a2, b2, w, h, 2) == doctest::Approx(expected).epsilon(1e-6));
  CHECK(train::ssim(ai, bi, w, h, 2, 1.0, train::Layout::interleaved) == doctest::Approx(expected).epsilon(1e-6));
  CHECK_THROWS_AS(train::ssim(a, b, w, h + 1), kiln::Error);
}
