#pragma once
// The error measure of kiln's device-vs-reference tests (ggml test-backend-ops style).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace kiln_test {

// ||got - want|| / max(||want||, floor) (floor = 0: ||got - want|| when want is all zeros);
// infinity for a size mismatch or a non-finite value where want is finite.
inline double normalised_error(const std::vector<float>& got, const std::vector<float>& want, double floor = 0.0) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) && !(std::isnan(got[i]) && std::isnan(want[i])))
      return std::numeric_limits<double>::infinity();
    if (std::isnan(want[i])) continue;
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  den = std::max(std::sqrt(den), floor);
  return den > 0.0 ? std::sqrt(num) / den : std::sqrt(num);
}

}  // namespace kiln_test
