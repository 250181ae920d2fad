#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gradcheck.hpp"

using namespace kiln;

namespace {
template <class L>
void plan_layer(L& layer, Arena<Cpu>& arena, const Shape& s, std::string_view path = "pool") {
  arena.begin();
  layer.plan(s, arena, path);
  arena.finalize();
}

// The smallest gap between the largest and the second largest value of any
// Size x Size window: finite differences with step eps are valid if it exceeds 2 eps.
double smallest_gap(const Tensor<float, Cpu>& x, int size) {
  const Shape s = x.shape();
  double gap = 1e30;
  for (std::int64_t n = 0; n < s.n(); ++n)
    for (std::int64_t c = 0; c < s.c(); ++c)
      for (std::int64_t i = 0; i < s.h(); i += size)
        for (std::int64_t j = 0; j < s.w(); j += size) {
          std::vector<float> v;
          for (int u = 0; u < size; ++u)
            for (int w = 0; w < size; ++w) v.push_back(x.at(n, c, i + u, j + w));
          std::sort(v.rbegin(), v.rend());
          gap = std::min(gap, double(v[0]) - v[1]);
        }
  return gap;
}
}  // namespace

TEST_CASE("MaxPool2d: forward picks the window maxima and saves their positions") {
  MaxPool2d<2> pool;
  Arena<Cpu> arena;
  plan_layer(pool, arena, Shape::nchw(1, 1, 4, 4));
  // clang-format off
  auto x = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 4, 4), std::vector<float>{
      1, 5,   2, 0,
      3, 4,  -1, 7,
      9, 0,  -2, -3,
      0, 8,  -4, -1});
  // clang-format on
  const auto& y = pool.forward(x, Mode::train);
  CHECK(y.shape() == Shape::nchw(1, 1, 2, 2));
  CHECK(y.to_vector() == std::vector<float>{5, 7, 9, -1});
  CHECK(pool.argmax().to_vector() == std::vector<std::int32_t>{1, 7, 8, 15});
  auto dy = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 2, 2), std::vector<float>{10, 20, 30, 40});
  const auto& dx = pool.backward(dy);
  std::vector<float> expected(16, 0.0f);
  expected[1] = 10;
  expected[7] = 20;
  expected[8] = 30;
  expected[15] = 40;
  CHECK(dx.to_vector() == expected);
}

TEST_CASE("MaxPool2d: ties route the gradient to the first maximum in row-major order") {
  MaxPool2d<2> pool;
  Arena<Cpu> arena;
  plan_layer(pool, arena, Shape::nchw(1, 3, 2, 2));
  // channel 0: all equal -> index 0; channel 1: maxima at 1 and 3 -> 1; channel 2: at 2 and 3 -> 2.
  auto x =
      Tensor<float, Cpu>::from_host(Shape::nchw(1, 3, 2, 2), std::vector<float>{2, 2, 2, 2, 0, 5, 1, 5, -3, -3, 4, 4});
  pool.forward(x, Mode::train);
  CHECK(pool.argmax().to_vector() == std::vector<std::int32_t>{0, 1, 2});
  auto dy = Tensor<float, Cpu>::from_host(Shape::nchw(1, 3, 1, 1), std::vector<float>{1, 1, 1});
  CHECK(pool.backward(dy).to_vector() == std::vector<float>{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0});
}

TEST_CASE("MaxPool2d: gradients match finite differences (inputs without near-ties)") {
  const Shape s = Shape::nchw(2, 3, 4, 6);
  const float eps = 1e-3f;
  const std::uint64_t seed = 5;  // smallest top-2 gap 0.032
  {
    // check_gradients draws x first from Rng(seed): make sure no window has a near-tie.
    Rng rng(seed);
    auto x = kiln::test::random_tensor(s, rng);
    REQUIRE(smallest_gap(x, 2) > 4 * eps);
  }
  MaxPool2d<2> pool;
  kiln::test::check_gradients(pool, s, seed, 1e-3, eps, 48);
}

TEST_CASE("MaxPool2d<3>: windows of 3") {
  MaxPool2d<3> pool;
  Arena<Cpu> arena;
  plan_layer(pool, arena, Shape::nchw(1, 1, 3, 6));
  auto x = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 3, 6),
                                         std::vector<float>{0, 1, 2, 9, 9, 9, 3, 8, 4, 9, 9, 9, 5, 6, 7, 9, 9, 9});
  CHECK(pool.forward(x, Mode::eval).to_vector() == std::vector<float>{8, 9});
  CHECK(pool.argmax().to_vector() == std::vector<std::int32_t>{7, 3});
}

TEST_CASE("MaxPool2d: an odd image size names the layer path and the shape") {
  MaxPool2d<2> pool;
  Arena<Cpu> arena;
  arena.begin();
  try {
    pool.plan(Shape::nchw(1, 8, 7, 8), arena, "down.1.pool");
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("down.1.pool") != std::string::npos);
    CHECK(msg.find("needs H and W divisible by 2, got [1, 8, 7, 8]") != std::string::npos);
  }
  CHECK_THROWS_AS(pool.plan(Shape::nchw(1, 8, 8, 5), arena, "p"), kiln::Error);
}

TEST_CASE("MaxPool2d: the 2x2 fast path equals the reference loops bitwise (ties, NaN, odd sizes)") {
  Rng rng(7);
  for (const auto& [n, c, h, w] :
       std::vector<std::array<std::int64_t, 4>>{{2, 3, 8, 8}, {1, 2, 6, 10}, {3, 1, 2, 14}, {1, 5, 4, 2}}) {
    const PoolArgs a{n, c, h, w, 2};
    std::vector<float> x(static_cast<std::size_t>(n * c * h * w));
    for (float& v : x) v = float(int(rng.uniform() * 4));  // values 0..3: many ties
    for (std::size_t i = 0; i < x.size(); i += 7) x[i] = std::numeric_limits<float>::quiet_NaN();
    const std::size_t out = static_cast<std::size_t>(n * c * a.out_h() * a.out_w());
    std::vector<float> y_fast(out), y_ref(out);
    std::vector<std::int32_t> i_fast(out, -1), i_ref(out, -2);
    cpu::maxpool2d_forward(a, x.data(), y_fast.data(), i_fast.data());
    cpu::reference::maxpool2d_forward(a, x.data(), y_ref.data(), i_ref.data());
    CAPTURE(a.h);  // (a.h, not h: clang 14 cannot capture a structured binding in CAPTURE's lambda)
    CAPTURE(a.w);
    CHECK(std::memcmp(y_fast.data(), y_ref.data(), out * sizeof(float)) == 0);
    CHECK(i_fast == i_ref);
  }
}
