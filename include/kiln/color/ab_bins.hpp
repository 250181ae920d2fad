#pragma once
// kiln/color/ab_bins.hpp — the colour classes of a classification colorizer (Zhang, Isola &
// Efros 2016, section 2.2): ab quantised into square bins (10 Lab units), the bins the data
// actually uses (the gamut found from data), and class rebalancing weights from the empirical
// colour distribution.
//
// Public API (namespace kiln::color):
//   struct AbHistogram {                       // counts on a grid of bin_size, bin centres at
//     explicit AbHistogram(float bin_size = 10);  // multiples of bin_size, |a|,|b| <= 130
//     void add(float a, float b);              // Lab units
//     void add_image(const io::Image&, int stride = 1);  // every stride-th pixel (sRGB -> Lab)
//     double total() const;
//   };
//   struct AbBins {
//     float bin_size; std::vector<float> centres;  // (a, b) interleaved, Lab units
//     std::vector<float> weights;                   // rebalancing weight per bin (E_p[w] = 1)
//     std::vector<float> prior;                     // the empirical probability per bin
//     std::size_t size() const;
//     std::vector<float> scaled_centres(float scale) const;  // centres * scale (network units: 1/110)
//   };
//   AbBins make_ab_bins(const AbHistogram&, std::size_t max_bins, double lambda = 0.5, double sigma = 5);
//       the occupied bins (the most frequent max_bins if more), sorted by (a, b); prior p = counts /
//       total; p~ = p smoothed with a Gaussian (sigma, Lab units) over the kept bins; weights
//       w ∝ 1 / ((1 - lambda) p~ + lambda / Q), scaled so that sum p~ w = 1 (the paper's rule).
//   std::string join_numbers(const std::vector<float>&);          // "1.5,-2,..." (%.9g: exact floats)
//   std::vector<float> parse_numbers(std::string_view, std::string_view what);  // throws on junk
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/core/error.hpp"
#include "kiln/io/image.hpp"
#include "kiln/ops/color.hpp"

namespace kiln::color {

struct AbHistogram {
  static constexpr float kLimit = 130.0f;  // beyond any sRGB colour's |a|, |b| (< 128)

  explicit AbHistogram(float bin_size = 10.0f) : bin_size_(bin_size) {
    KILN_CHECK(bin_size > 0.0f && bin_size <= kLimit, "AbHistogram: bin size must be in (0, 130], got ", bin_size);
    half_ = static_cast<int>(std::ceil(kLimit / bin_size));
    counts_.assign(std::size_t(2 * half_ + 1) * std::size_t(2 * half_ + 1), 0.0);
  }
  float bin_size() const { return bin_size_; }
  int side() const { return 2 * half_ + 1; }
  // The bin whose centre (a multiple of bin_size) is nearest.
  int index(float v) const { return std::clamp(static_cast<int>(std::lround(v / bin_size_)), -half_, half_) + half_; }
  void add(float a, float b, double count = 1.0) {
    counts_[std::size_t(index(a)) * std::size_t(side()) + std::size_t(index(b))] += count;
  }
  void add_image(const io::Image& image, int stride = 1) {
    KILN_CHECK(image.channels >= 3, "AbHistogram: needs a colour image, got ", image.channels, " channel(s)");
    stride = std::max(1, stride);
    for (int y = 0; y < image.height; y += stride)
      for (int x = 0; x < image.width; x += stride) {
        const Lab lab = srgb_to_lab({image.at(x, y, 0), image.at(x, y, 1), image.at(x, y, 2)});
        add(lab.a, lab.b);
      }
  }
  double count(int ia, int ib) const { return counts_[std::size_t(ia) * std::size_t(side()) + std::size_t(ib)]; }
  float centre(int i) const { return static_cast<float>(i - half_) * bin_size_; }
  double total() const { return std::accumulate(counts_.begin(), counts_.end(), 0.0); }

 private:
  float bin_size_;
  int half_ = 0;
  std::vector<double> counts_;
};

struct AbBins {
  float bin_size = 10.0f;
  std::vector<float> centres, weights, prior;
  std::size_t size() const { return centres.size() / 2; }
  std::vector<float> scaled_centres(float scale) const {
    std::vector<float> s(centres);
    for (float& v : s) v *= scale;
    return s;
  }
};

inline AbBins make_ab_bins(const AbHistogram& h, std::size_t max_bins, double lambda = 0.5, double sigma = 5.0) {
  KILN_CHECK(max_bins > 0, "make_ab_bins: max_bins must be positive");
  KILN_CHECK(lambda >= 0.0 && lambda <= 1.0, "make_ab_bins: lambda must be in [0, 1], got ", lambda);
  struct Bin {
    int ia, ib;
    double count;
  };
  std::vector<Bin> bins;
  for (int ia = 0; ia < h.side(); ++ia)
    for (int ib = 0; ib < h.side(); ++ib)
      if (h.count(ia, ib) > 0) bins.push_back({ia, ib, h.count(ia, ib)});
  KILN_CHECK(!bins.empty(), "make_ab_bins: the histogram is empty (no colour pixels seen)");
  if (bins.size() > max_bins) {  // keep the most frequent (ties: lower index), then grid order again
    std::stable_sort(bins.begin(), bins.end(), [](const Bin& x, const Bin& y) { return x.count > y.count; });
    bins.resize(max_bins);
    std::sort(bins.begin(), bins.end(),
              [](const Bin& x, const Bin& y) { return x.ia != y.ia ? x.ia < y.ia : x.ib < y.ib; });
  }
  const std::size_t Q = bins.size();
  double total = 0.0;
  for (const Bin& b : bins) total += b.count;
  AbBins out;
  out.bin_size = h.bin_size();
  std::vector<double> p(Q), smooth(Q);
  for (std::size_t q = 0; q < Q; ++q) {
    out.centres.push_back(h.centre(bins[q].ia));
    out.centres.push_back(h.centre(bins[q].ib));
    p[q] = bins[q].count / total;
  }
  // Smoothed over ab space (the paper: a Gaussian kernel, sigma 5), renormalised over the kept bins.
  double smooth_total = 0.0;
  for (std::size_t q = 0; q < Q; ++q) {
    double s = 0.0, norm = 0.0;
    for (std::size_t r = 0; r < Q; ++r) {
      const double da = out.centres[2 * q] - out.centres[2 * r], db = out.centres[2 * q + 1] - out.centres[2 * r + 1];
      const double g = sigma > 0 ? std::exp(-(da * da + db * db) / (2 * sigma * sigma)) : (q == r ? 1.0 : 0.0);
      s += g * p[r], norm += g;
    }
    smooth[q] = s / norm;
    smooth_total += smooth[q];
  }
  double expectation = 0.0;
  std::vector<double> w(Q);
  for (std::size_t q = 0; q < Q; ++q) {
    smooth[q] /= smooth_total;
    w[q] = 1.0 / ((1.0 - lambda) * smooth[q] + lambda / double(Q));
    expectation += smooth[q] * w[q];
  }
  for (std::size_t q = 0; q < Q; ++q) {
    out.weights.push_back(static_cast<float>(w[q] / expectation));
    out.prior.push_back(static_cast<float>(p[q]));
  }
  return out;
}

inline std::string join_numbers(const std::vector<float>& v) {
  std::string s;
  char buf[32];
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%.9g", double(v[i]));
    if (i) s += ',';
    s += buf;
  }
  return s;
}

// Comma-separated finite numbers; `what` names the list in the error.
inline std::vector<float> parse_numbers(std::string_view text, std::string_view what) {
  std::vector<float> v;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string item(text.substr(at, comma - at));
    char* end = nullptr;
    const double x = std::strtod(item.c_str(), &end);
    KILN_CHECK(!item.empty() && end == item.c_str() + item.size() && std::isfinite(x) && std::fabs(x) < 3.4e38, what,
               ": '", item, "' (item ", v.size() + 1, ") is not a finite number");
    v.push_back(static_cast<float>(x));
    at = comma + 1;
  }
  return v;
}

}  // namespace kiln::color

// The programs (examples/) still spell these kiln::train::; drop once they say kiln::color::.
namespace kiln::train {
using color::AbBins;
using color::AbHistogram;
using color::join_numbers;
using color::make_ab_bins;
using color::parse_numbers;
}  // namespace kiln::train
