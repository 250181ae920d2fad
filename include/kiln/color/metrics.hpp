// kiln/color/metrics.hpp — the numbers a colorization run reports.
//
// Public API (namespace kiln::color):
//   double ab_mse(pred_ab, true_ab)      // Tensor<float,Cpu> [N,2,H,W] (or spans) in the network's
//                                        // scaling (ab/110); result in Lab units²: mean over every
//                                        // pixel and both channels of (110·Δ)²
//   double psnr_rgb(pred, truth)         // io::Image (3 channels, 0..1) or spans; dB, peak 1.0;
//                                        // +infinity for identical images
//   double colorfulness(rgb)             // Hasler & Süsstrunk (2003) on the 0..255 scale:
//                                        // rg = R-G, yb = (R+G)/2 - B,
//                                        // M = sqrt(σ_rg² + σ_yb²) + 0.3·sqrt(μ_rg² + μ_yb²)
//   struct ValidationMetrics {           // running accumulator over a validation pass
//     void add(L, pred_ab, true_ab);     // one batch (network scaling); converts to RGB per image
//     std::size_t images() const;
//     double ab_mse() const;             // over all pixels seen
//     double psnr() const;               // mean of the per-image PSNRs (dB, infinite images capped at 100 dB)
//     double colorfulness_pred() const;  // mean per-image colorfulness of the prediction / the truth
//     double colorfulness_true() const;
//     void reset();
//   };
#pragma once

#include "kiln/color/lab_tensor.hpp"
#include "kiln/color/scaling.hpp"
#include "kiln/core/error.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/io/image.hpp"
#include "kiln/train/quality.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

namespace kiln::color {

// Sum of squared differences in Lab units² (inputs in network scaling).
inline double ab_squared_error_sum(std::span<const float> pred_ab, std::span<const float> true_ab) {
  KILN_CHECK(pred_ab.size() == true_ab.size(), "ab_mse: prediction has ", pred_ab.size(), " values, target ",
             true_ab.size());
  double sum = 0.0;
  for (std::size_t i = 0; i < pred_ab.size(); ++i) {
    const double d = double(denormalise_ab(pred_ab[i])) - double(denormalise_ab(true_ab[i]));
    sum += d * d;
  }
  return sum;
}

inline double ab_mse(std::span<const float> pred_ab, std::span<const float> true_ab) {
  KILN_CHECK(!pred_ab.empty(), "ab_mse: no values");
  return ab_squared_error_sum(pred_ab, true_ab) / double(pred_ab.size());
}

inline double ab_mse(const Tensor<float, Cpu>& pred_ab, const Tensor<float, Cpu>& true_ab) {
  KILN_CHECK(pred_ab.shape() == true_ab.shape(), "ab_mse: prediction ", pred_ab.shape().str(), " and target ",
             true_ab.shape().str(), " differ in shape");
  return ab_mse(pred_ab.span(), true_ab.span());
}

// PSNR in dB of two 0..1 signals of the same length (peak value 1).
inline double psnr_rgb(std::span<const float> pred, std::span<const float> truth) {
  return train::psnr(pred, truth, 1.0);
}

inline double psnr_rgb(const io::Image& pred, const io::Image& truth) {
  KILN_CHECK(pred.width == truth.width && pred.height == truth.height && pred.channels == truth.channels,
             "psnr_rgb: images of ", pred.width, "x", pred.height, "x", pred.channels, " and ", truth.width, "x",
             truth.height, "x", truth.channels, " cannot be compared");
  return psnr_rgb(std::span<const float>(pred.pixels), std::span<const float>(truth.pixels));
}

// Interleaved RGB (3 floats per pixel, 0..1).
inline double colorfulness(std::span<const float> rgb) {
  KILN_CHECK(rgb.size() % 3 == 0 && !rgb.empty(), "colorfulness: expected interleaved RGB, got ", rgb.size(),
             " values");
  const std::size_t n = rgb.size() / 3;
  double s_rg = 0, s_yb = 0, q_rg = 0, q_yb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double r = 255.0 * rgb[3 * i], g = 255.0 * rgb[3 * i + 1], b = 255.0 * rgb[3 * i + 2];
    const double rg = r - g, yb = 0.5 * (r + g) - b;
    s_rg += rg;
    s_yb += yb;
    q_rg += rg * rg;
    q_yb += yb * yb;
  }
  const double m_rg = s_rg / double(n), m_yb = s_yb / double(n);
  const double var_rg = std::max(0.0, q_rg / double(n) - m_rg * m_rg);
  const double var_yb = std::max(0.0, q_yb / double(n) - m_yb * m_yb);
  return std::sqrt(var_rg + var_yb) + 0.3 * std::sqrt(m_rg * m_rg + m_yb * m_yb);
}

inline double colorfulness(const io::Image& rgb) {
  KILN_CHECK(rgb.channels == 3, "colorfulness: expected an RGB image, got ", rgb.channels, " channels");
  return colorfulness(std::span<const float>(rgb.pixels));
}

// Accumulates the validation metrics over batches.
struct ValidationMetrics {
  // Per-image PSNRs of identical images are infinite; they count as this many dB in the mean.
  static constexpr double psnr_cap_db = 100.0;

  void add(const Tensor<float, Cpu>& L, const Tensor<float, Cpu>& pred_ab, const Tensor<float, Cpu>& true_ab) {
    KILN_CHECK(pred_ab.shape() == true_ab.shape(), "ValidationMetrics::add: prediction ", pred_ab.shape().str(),
               " and target ", true_ab.shape().str(), " differ in shape");
    KILN_CHECK(L.shape().rank() == 4 && pred_ab.shape().rank() == 4 && L.shape().n() == pred_ab.shape().n() &&
                   L.shape().h() == pred_ab.shape().h() && L.shape().w() == pred_ab.shape().w(),
               "ValidationMetrics::add: L ", L.shape().str(), " does not match ab ", pred_ab.shape().str());
    squared_error_ += ab_squared_error_sum(pred_ab.span(), true_ab.span());
    values_ += pred_ab.numel();
    for (std::int64_t n = 0; n < L.shape().n(); ++n) {
      const io::Image pred = lab_to_image(L, pred_ab, n);
      const io::Image truth = lab_to_image(L, true_ab, n);
      psnr_sum_ += std::min(psnr_rgb(pred, truth), psnr_cap_db);
      colorfulness_pred_ += colorfulness(pred);
      colorfulness_true_ += colorfulness(truth);
      ++images_;
    }
  }

  std::size_t images() const { return images_; }
  double ab_mse() const { return values_ ? squared_error_ / double(values_) : 0.0; }
  double psnr() const { return images_ ? psnr_sum_ / double(images_) : 0.0; }
  double colorfulness_pred() const { return images_ ? colorfulness_pred_ / double(images_) : 0.0; }
  double colorfulness_true() const { return images_ ? colorfulness_true_ / double(images_) : 0.0; }
  void reset() { *this = ValidationMetrics{}; }

 private:
  double squared_error_ = 0, psnr_sum_ = 0, colorfulness_pred_ = 0, colorfulness_true_ = 0;
  std::size_t values_ = 0, images_ = 0;
};

}  // namespace kiln::color

// The programs (examples/) still spell these kiln::train::; drop once they say kiln::color::.
namespace kiln::train {
using color::ab_mse;
using color::colorfulness;
using color::psnr_rgb;
using color::ValidationMetrics;
}  // namespace kiln::train
