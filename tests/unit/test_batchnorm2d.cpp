#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "gradcheck.hpp"

using namespace kiln;
using kiln::test::random_vector;
using kiln::test::relative_error;

namespace {
template <int C>
void plan_layer(BatchNorm2d<C>& bn, Arena<Cpu>& arena, const Shape& s) {
  arena.begin();
  bn.plan(s, arena, "bn");
  arena.finalize();
}
}  // namespace

TEST_CASE("BatchNorm2d: train-mode gradients (input, weight, bias) match finite differences") {
  BatchNorm2d<3> bn;
  Rng rng(7);
  bn.weight().value.copy_from_host(random_vector(3, rng, 0.5f, 1.5f));
  bn.bias().value.copy_from_host(random_vector(3, rng, -0.5f, 0.5f));
  kiln::test::check_gradients(bn, Shape::nchw(2, 3, 2, 3));  // N*H*W = 12 per channel
  kiln::test::check_gradients(bn, Shape::nchw(4, 3, 1, 2), 5);  // N*H*W = 8
}

TEST_CASE("BatchNorm2d: eval-mode gradients (the affine map with running statistics)") {
  BatchNorm2d<2> bn;
  bn.running_mean().copy_from_host(std::vector<float>{0.3f, -0.2f});
  bn.running_var().copy_from_host(std::vector<float>{0.5f, 2.0f});
  bn.weight().value.copy_from_host(std::vector<float>{1.5f, -0.7f});
  bn.bias().value.copy_from_host(std::vector<float>{0.1f, 0.2f});
  kiln::test::check_gradients(bn, Shape::nchw(2, 2, 3, 2), 3, 2e-2, 1e-2f, 24, Mode::eval);
  // Eval forwards leave the running statistics and the counter alone.
  CHECK(bn.running_mean().to_vector() == std::vector<float>{0.3f, -0.2f});
  CHECK(bn.running_var().to_vector() == std::vector<float>{0.5f, 2.0f});
  CHECK(bn.num_batches_tracked() == 0);
}

TEST_CASE("BatchNorm2d: running statistics after two training steps, by hand") {
  BatchNorm2d<1> bn;
  Arena<Cpu> arena;
  plan_layer(bn, arena, Shape::nchw(1, 1, 2, 2));

  // Step 1: x = [1, 2, 3, 4]: mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5,
  // biased var 5/4 = 1.25 (normalises), unbiased var 5/3 (running).
  // running_mean = 0.9 * 0 + 0.1 * 2.5 = 0.25; running_var = 0.9 * 1 + 0.1 * 5/3 = 1.0666667.
  auto x1 = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 2, 2), std::vector<float>{1, 2, 3, 4});
  const auto& y1 = bn.forward(x1, Mode::train);
  for (int i = 0; i < 4; ++i)
    CHECK(y1[size_t(i)] == doctest::Approx((i + 1 - 2.5) / std::sqrt(1.25 + 1e-5)).epsilon(1e-6));
  CHECK(bn.running_mean().to_vector()[0] == doctest::Approx(0.25).epsilon(1e-6));
  CHECK(bn.running_var().to_vector()[0] == doctest::Approx(0.9 + 0.1 * 5.0 / 3.0).epsilon(1e-6));
  CHECK(bn.num_batches_tracked() == 1);

  // Step 2: x = [0, 0, 2, 6]: mean 2, squared deviations 4 + 4 + 0 + 16 = 24, biased 6, unbiased 8.
  // running_mean = 0.9 * 0.25 + 0.1 * 2 = 0.425; running_var = 0.9 * 1.0666667 + 0.1 * 8 = 1.76.
  auto x2 = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 2, 2), std::vector<float>{0, 0, 2, 6});
  const auto& y2 = bn.forward(x2, Mode::train);
  const std::vector<float> xs{0, 0, 2, 6};
  for (int i = 0; i < 4; ++i)
    CHECK(y2[size_t(i)] == doctest::Approx((xs[size_t(i)] - 2.0) / std::sqrt(6.0 + 1e-5)).epsilon(1e-6));
  CHECK(bn.running_mean().to_vector()[0] == doctest::Approx(0.425).epsilon(1e-6));
  CHECK(bn.running_var().to_vector()[0] == doctest::Approx(1.76).epsilon(1e-6));
  CHECK(bn.num_batches_tracked() == 2);

  // Eval: y = weight * (x - 0.425) / sqrt(1.76 + eps) + bias, with weight 2 and bias 0.5.
  bn.weight().value.copy_from_host(std::vector<float>{2.0f});
  bn.bias().value.copy_from_host(std::vector<float>{0.5f});
  const auto& y3 = bn.forward(x1, Mode::eval);
  for (int i = 0; i < 4; ++i)
    CHECK(y3[size_t(i)] == doctest::Approx(2.0 * (i + 1 - 0.425) / std::sqrt(1.76 + 1e-5) + 0.5).epsilon(1e-6));
  CHECK(bn.num_batches_tracked() == 2);
  CHECK(bn.running_mean().to_vector()[0] == doctest::Approx(0.425).epsilon(1e-6));
}

TEST_CASE("BatchNorm2d: statistics are per channel over N, H and W") {
  BatchNorm2d<2> bn;
  Arena<Cpu> arena;
  plan_layer(bn, arena, Shape::nchw(2, 2, 1, 2));
  // channel 0 sees {1, 3, 5, 7} (mean 4), channel 1 sees {10, 10, 20, 20} (mean 15).
  auto x = Tensor<float, Cpu>::from_host(Shape::nchw(2, 2, 1, 2), std::vector<float>{1, 3, 10, 10, 5, 7, 20, 20});
  bn.forward(x, Mode::train);
  const auto rm = bn.running_mean().to_vector();
  CHECK(rm[0] == doctest::Approx(0.4));
  CHECK(rm[1] == doctest::Approx(1.5));
  const auto rv = bn.running_var().to_vector();
  CHECK(rv[0] == doctest::Approx(0.9 + 0.1 * 20.0 / 3.0));  // squared deviations 9+1+1+9 = 20
  CHECK(rv[1] == doctest::Approx(0.9 + 0.1 * 100.0 / 3.0));  // 4 * 25 = 100
}

TEST_CASE("BatchNorm2d: state_dict names, kinds and initial values") {
  BatchNorm2d<4> bn;
  std::vector<std::string> names;
  std::vector<StateRef<Cpu>::Kind> kinds;
  bn.visit(
      [&](StateRef<Cpu> ref) {
        names.push_back(ref.name);
        kinds.push_back(ref.kind);
        if (ref.kind == StateRef<Cpu>::Kind::counter) CHECK(*ref.counter == 0);
      },
      "down.0.bn1");
  CHECK(names == std::vector<std::string>{"down.0.bn1.weight", "down.0.bn1.bias", "down.0.bn1.running_mean",
                                          "down.0.bn1.running_var", "down.0.bn1.num_batches_tracked"});
  using K = StateRef<Cpu>::Kind;
  CHECK(kinds == std::vector<K>{K::parameter, K::parameter, K::buffer, K::buffer, K::counter});
  CHECK(bn.weight().value.to_vector() == std::vector<float>(4, 1.0f));
  CHECK(bn.bias().value.to_vector() == std::vector<float>(4, 0.0f));
  CHECK(bn.running_mean().to_vector() == std::vector<float>(4, 0.0f));
  CHECK(bn.running_var().to_vector() == std::vector<float>(4, 1.0f));
  CHECK(count_parameters(bn) == BatchNorm2d<4>::parameter_count);
}

TEST_CASE("BatchNorm2d: parameter gradients accumulate, the input gradient is overwritten") {
  BatchNorm2d<2> bn;
  Arena<Cpu> arena;
  const Shape s = Shape::nchw(2, 2, 2, 2);
  plan_layer(bn, arena, s);
  Rng rng(11);
  auto x = kiln::test::random_tensor(s, rng);
  auto dy = kiln::test::random_tensor(s, rng);
  zero_grad(bn);
  bn.forward(x, Mode::train);
  const std::vector<float> dx1 = bn.backward(dy).to_vector();
  const std::vector<float> dw1 = bn.weight().grad.to_vector(), db1 = bn.bias().grad.to_vector();
  bn.forward(x, Mode::train);
  const std::vector<float> dx2 = bn.backward(dy).to_vector();
  CHECK(relative_error(dx2, dx1) < 1e-6);
  std::vector<float> dw2x(dw1), db2x(db1);
  for (auto& v : dw2x) v *= 2;
  for (auto& v : db2x) v *= 2;
  CHECK(relative_error(bn.weight().grad.to_vector(), dw2x) < 1e-6);
  CHECK(relative_error(bn.bias().grad.to_vector(), db2x) < 1e-6);
}

TEST_CASE("BatchNorm2d: errors name the layer and the shapes") {
  BatchNorm2d<3> bn;
  Arena<Cpu> arena;
  arena.begin();
  try {
    bn.plan(Shape::nchw(2, 4, 8, 8), arena, "down.0.bn1");
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("down.0.bn1") != std::string::npos);
    CHECK(msg.find("[2, 4, 8, 8]") != std::string::npos);
    CHECK(msg.find("[N, 3, H, W]") != std::string::npos);
  }
  // One value per channel cannot be normalised in training (PyTorch refuses too).
  arena.begin();
  bn.plan(Shape::nchw(1, 3, 1, 1), arena, "bottleneck.bn");
  arena.finalize();
  Tensor<float, Cpu> x(Shape::nchw(1, 3, 1, 1));
  try {
    bn.forward(x, Mode::train);
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("bottleneck.bn") != std::string::npos);
    CHECK(msg.find("[1, 3, 1, 1]") != std::string::npos);
  }
  CHECK_NOTHROW(bn.forward(x, Mode::eval));
}
