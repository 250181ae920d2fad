#pragma once
// Test helpers: finite-difference gradient checks for any kiln layer or
// network on the CPU (dlib's test_layer habit), and normalised error measures
// (ggml's test-backend-ops habit: errors relative to the values' scale).
#include <doctest/doctest.h>

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
    for (int s = 0; s < samples && s < static_cast<int>(n); ++s) {
      const std::size_t i = n <= static_cast<std::size_t>(samples) ? static_cast<std::size_t>(s) : rng.below(n);
      const float saved = value[i];
      value[i] = saved + eps;
      const double up = loss();
      value[i] = saved - eps;
      const double down = loss();
      value[i] = saved;
      numeric.push_back(static_cast<float>((up - down) / (2.0 * eps)));
      picked.push_back(analytic[i]);
    }
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
