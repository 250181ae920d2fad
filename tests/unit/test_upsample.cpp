#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "gradcheck.hpp"

using namespace kiln;
using kiln::test::relative_error;

namespace {
template <class L>
void plan_layer(L& layer, Arena<Cpu>& arena, const Shape& s) {
  arena.begin();
  layer.plan(s, arena, "up");
  arena.finalize();
}

// <Up(x), r> must equal <x, Up^T(r)>: backward is the adjoint of forward.
template <class L>
void check_adjoint(const Shape& s) {
  L up;
  Arena<Cpu> arena;
  plan_layer(up, arena, s);
  Rng rng(21);
  auto x = kiln::test::random_tensor(s, rng);
  const auto& y = up.forward(x, Mode::train);
  auto r = kiln::test::random_tensor(y.shape(), rng);
  double lhs = 0, rhs = 0;
  for (std::size_t i = 0; i < y.numel(); ++i) lhs += double(y[i]) * r[i];
  const auto& dx = up.backward(r);
  for (std::size_t i = 0; i < x.numel(); ++i) rhs += double(x[i]) * dx[i];
  CHECK(std::fabs(lhs - rhs) <= 1e-5 * (std::fabs(lhs) + 1.0));
}
}  // namespace

TEST_CASE("Upsample nearest x2: hand values") {
  Upsample<2> up;
  Arena<Cpu> arena;
  plan_layer(up, arena, Shape::nchw(1, 1, 2, 2));
  auto x = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 2, 2), std::vector<float>{1, 2, 3, 4});
  const auto& y = up.forward(x, Mode::eval);
  CHECK(y.shape() == Shape::nchw(1, 1, 4, 4));
  CHECK(y.to_vector() == std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  // backward sums each 2x2 block
  std::vector<float> g(16);
  for (int i = 0; i < 16; ++i) g[size_t(i)] = float(i);
  auto dy = Tensor<float, Cpu>::from_host(y.shape(), g);
  CHECK(up.backward(dy).to_vector() ==
        std::vector<float>{0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15});
}

TEST_CASE("Upsample bilinear x2 (align_corners=false): PyTorch's values, edges included") {
  Upsample<2, UpsampleMode::bilinear> up;
  Arena<Cpu> arena;
  plan_layer(up, arena, Shape::nchw(1, 1, 2, 2));
  auto x = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 2, 2), std::vector<float>{1, 2, 3, 4});
  const auto y = up.forward(x, Mode::eval).to_vector();
  // torch.nn.functional.interpolate(tensor([[[[1., 2.], [3., 4.]]]]), scale_factor=2, mode='bilinear')
  const std::vector<float> expected{1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                                    2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
  CHECK(relative_error(y, expected) < 1e-7);
}

TEST_CASE("Upsample bilinear: a constant image stays constant (weights sum to 1), scale 3 too") {
  Upsample<3, UpsampleMode::bilinear> up;
  Arena<Cpu> arena;
  plan_layer(up, arena, Shape::nchw(2, 2, 3, 5));
  Tensor<float, Cpu> x(Shape::nchw(2, 2, 3, 5));
  for (auto& v : x.span()) v = 0.7f;
  for (float v : up.forward(x, Mode::eval).span()) CHECK(v == doctest::Approx(0.7f).epsilon(1e-6));
}

TEST_CASE("Upsample: backward is the adjoint of forward") {
  check_adjoint<Upsample<2>>(Shape::nchw(2, 3, 3, 5));
  check_adjoint<Upsample<3>>(Shape::nchw(1, 2, 4, 2));
  check_adjoint<Upsample<2, UpsampleMode::bilinear>>(Shape::nchw(2, 3, 3, 5));
  check_adjoint<Upsample<3, UpsampleMode::bilinear>>(Shape::nchw(1, 2, 4, 2));
  check_adjoint<Upsample<2, UpsampleMode::bilinear>>(Shape::nchw(1, 1, 1, 1));
}

TEST_CASE("Upsample: gradients match finite differences") {
  SUBCASE("nearest") {
    Upsample<2> up;
    kiln::test::check_gradients(up, Shape::nchw(2, 2, 3, 4));
  }
  SUBCASE("bilinear x2") {
    Upsample<2, UpsampleMode::bilinear> up;
    kiln::test::check_gradients(up, Shape::nchw(2, 2, 3, 4));
  }
  SUBCASE("bilinear x3") {
    Upsample<3, UpsampleMode::bilinear> up;
    kiln::test::check_gradients(up, Shape::nchw(1, 2, 3, 3), 2);
  }
}

TEST_CASE("BatchNorm2d -> Conv2d -> Upsample bilinear in a Sequential: gradients check") {
  // A smooth chain (no ReLU, no pooling), so finite differences are valid everywhere.
  // (BatchNorm comes first: a conv bias right before a train-mode BatchNorm has
  // an exactly zero gradient, which a relative check cannot compare.)
  Sequential<Named<"bn", BatchNorm2d<2>>, Named<"conv", Conv2d<2, 3, 3>>,
             Named<"up", Upsample<2, UpsampleMode::bilinear>>>
      net;
  kiln::test::check_gradients(net, Shape::nchw(2, 2, 3, 3), 9);
  std::vector<std::string> names;
  net.visit([&](StateRef<Cpu> ref) { names.push_back(ref.name); }, "");
  CHECK(names == std::vector<std::string>{"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                          "bn.num_batches_tracked", "conv.weight", "conv.bias"});
}
