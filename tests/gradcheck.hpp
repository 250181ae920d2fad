#pragma once
// Test helpers: finite-difference gradient checks for any kiln layer or
// network on the CPU (dlib's test_layer habit), and normalised error measures
// (ggml's test-backend-ops habit: errors relative to the values' scale).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kiln/kiln.hpp"

namespace kiln::test {

inline std::vector<float> random_vector(std::size_t n, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

inline Tensor<float, Cpu> random_tensor(const Shape& s, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  return Tensor<float, Cpu>::from_host(s, random_vector(s.numel(), rng, lo, hi));
}

// ||a - b|| / max(||b||, tiny): the normalised error.
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-20);
}

// Checks dL/dx and every parameter gradient of `layer` against central
// differences of L = sum(forward(x) * r) for a random r, at up to `samples`
// randomly chosen coordinates of each tensor.
template <class Layer>
void check_gradients(Layer& layer, const Shape& input_shape, std::uint64_t seed = 1, double tolerance = 2e-2,
                     float eps = 1e-2f, int samples = 24, Mode mode = Mode::train, bool check_input = true) {
  Rng rng(seed);
  Arena<Cpu> arena;
  arena.begin();
  const Shape out_shape = layer.plan(input_shape, arena, "layer");
  arena.finalize();

  Tensor<float, Cpu> x = random_tensor(input_shape, rng);
  Tensor<float, Cpu> r = random_tensor(out_shape, rng);

  auto loss = [&]() {
    const auto& y = layer.forward(x, mode);
    double s = 0;
    for (std::size_t i = 0; i < y.numel(); ++i) s += double(y[i]) * r[i];
    return s;
  };

  zero_grad(layer);
  loss();
  const auto& dx = layer.backward(r);
  std::vector<float> analytic_dx(dx.span().begin(), dx.span().end());

  auto check_tensor = [&](Tensor<float, Cpu>& value, const std::vector<float>& analytic, const std::string& what) {
    std::vector<float> numeric, picked;
    const std::size_t n = value.numel();
    const double centre = loss();
    for (int s = 0, tries = 0; s < samples && tries < 8 * samples; ++tries) {
      const bool every = n <= static_cast<std::size_t>(samples);
      const std::size_t i = every ? static_cast<std::size_t>(tries) : rng.below(n);
      if (every && i >= n) break;
      const float saved = value[i];
      value[i] = saved + eps;
      const double up = loss();
      value[i] = saved - eps;
      const double down = loss();
      value[i] = saved;
      // A kink (ReLU, max-pool switching) inside [x-eps, x+eps] makes the
      // one-sided slopes disagree: such a point has no finite difference to
      // compare with: skip it (at most half the points may be skipped).
      const double forward_slope = (up - centre) / eps, backward_slope = (centre - down) / eps;
      const bool kink = std::abs(forward_slope - backward_slope) >
                        0.05 * std::max({std::abs(forward_slope), std::abs(backward_slope), 1e-3});
      if (kink) continue;
      ++s;
      numeric.push_back(static_cast<float>((up - down) / (2.0 * eps)));
      picked.push_back(analytic[i]);
    }
    loss();  // leave the layer's saved state as at the unperturbed point
    INFO("compared ", picked.size(), " coordinates of ", what);
    CHECK(picked.size() >= std::min<std::size_t>(n, static_cast<std::size_t>(samples)) / 2);
    const double err = relative_error(picked, numeric);
    INFO("gradient of ", what, ": relative error ", err);
    CHECK(err < tolerance);
  };

  if (check_input) check_tensor(x, analytic_dx, "the input");
  layer.visit(
      [&](StateRef<Cpu> ref) {
        if (ref.kind != StateRef<Cpu>::Kind::parameter) return;
        std::vector<float> analytic(ref.grad->span().begin(), ref.grad->span().end());
        check_tensor(*ref.value, analytic, ref.name);
      },
      "");
}

}  // namespace kiln::test
