#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "gradcheck.hpp"

using namespace kiln;
using kiln::test::relative_error;

namespace {
const Shape kShape = Shape::nchw(1, 1, 2, 2);

Tensor<float, Cpu> tensor(std::vector<float> v, const Shape& s = kShape) { return Tensor<float, Cpu>::from_host(s, v); }

// Central differences of the loss in every prediction element against backward().
void check_loss_gradient(Loss<Cpu>& loss, std::uint64_t seed) {
  const Shape s = Shape::nchw(2, 3, 3, 2);
  Rng rng(seed);
  auto p = kiln::test::random_tensor(s, rng);
  // Targets at least 0.05 away from the prediction: no L1 kink within the step.
  std::vector<float> t(p.numel());
  for (std::size_t i = 0; i < t.size(); ++i) {
    const float off = rng.uniform(0.05f, 2.0f);
    t[i] = p[i] + (rng.uniform() < 0.5f ? off : -off);
  }
  auto target = tensor(t, s);
  loss.forward(p, target);
  const std::vector<float> analytic = loss.backward().to_vector();
  std::vector<float> numeric(p.numel());
  const float eps = 1e-2f;
  for (std::size_t i = 0; i < p.numel(); ++i) {
    const float saved = p[i];
    p[i] = saved + eps;
    const double up = loss.forward(p, target);
    p[i] = saved - eps;
    const double down = loss.forward(p, target);
    p[i] = saved;
    numeric[i] = static_cast<float>((up - down) / (2.0 * eps));
  }
  INFO(loss.name(), ": relative error ", relative_error(analytic, numeric));
  CHECK(relative_error(analytic, numeric) < 2e-2);
}
}  // namespace

// prediction [1, 2, 3, 4], target [0, 2, 5, 4.5]: d = p - t = [1, 0, -2, -0.5], N = 4.
TEST_CASE("MSELoss: hand values") {
  MSELoss<> loss;
  auto p = tensor({1, 2, 3, 4}), t = tensor({0, 2, 5, 4.5f});
  CHECK(loss.forward(p, t) == doctest::Approx((1 + 0 + 4 + 0.25) / 4.0));  // 1.3125
  // 2 d / N
  CHECK(relative_error(loss.backward().to_vector(), {0.5f, 0.0f, -1.0f, -0.25f}) < 1e-7);
}

TEST_CASE("L1Loss: hand values (gradient 0 where prediction == target)") {
  L1Loss<> loss;
  auto p = tensor({1, 2, 3, 4}), t = tensor({0, 2, 5, 4.5f});
  CHECK(loss.forward(p, t) == doctest::Approx((1 + 0 + 2 + 0.5) / 4.0));  // 0.875
  CHECK(relative_error(loss.backward().to_vector(), {0.25f, 0.0f, -0.25f, -0.25f}) < 1e-7);
}

TEST_CASE("HuberLoss: hand values for delta 1 and 0.5") {
  auto p = tensor({1, 2, 3, 4}), t = tensor({0, 2, 5, 4.5f});
  HuberLoss<> h1;  // |d| = 1 -> 1 * (1 - 0.5) = 0.5; 0 -> 0; 2 -> 1.5; 0.5 -> 0.125
  CHECK(h1.forward(p, t) == doctest::Approx((0.5 + 0 + 1.5 + 0.125) / 4.0));
  // clamp(d, -1, 1) / N
  CHECK(relative_error(h1.backward().to_vector(), {0.25f, 0.0f, -0.25f, -0.125f}) < 1e-7);
  HuberLoss<> h05(0.5f);  // 1 -> 0.5 * 0.75 = 0.375; 2 -> 0.5 * 1.75 = 0.875; 0.5 -> 0.5 * 0.25 = 0.125
  CHECK(h05.forward(p, t) == doctest::Approx((0.375 + 0 + 0.875 + 0.125) / 4.0));
  CHECK(relative_error(h05.backward().to_vector(), {0.125f, 0.0f, -0.125f, -0.125f}) < 1e-7);
}

TEST_CASE("HuberLoss(1) equals SmoothL1Loss(beta = 1)") {
  // SmoothL1(beta): |d| < beta ? 0.5 d^2 / beta : |d| - 0.5 beta; with beta = 1 it is Huber(1).
  Rng rng(5);
  auto p = kiln::test::random_tensor(Shape::nchw(1, 2, 4, 4), rng, -3, 3);
  auto t = kiln::test::random_tensor(Shape::nchw(1, 2, 4, 4), rng, -3, 3);
  double smooth = 0;
  for (std::size_t i = 0; i < p.numel(); ++i) {
    const double z = std::fabs(double(p[i]) - t[i]);
    smooth += z < 1 ? 0.5 * z * z : z - 0.5;
  }
  HuberLoss<> h;
  CHECK(h.forward(p, t) == doctest::Approx(smooth / double(p.numel())).epsilon(1e-6));
}

TEST_CASE("Losses: gradients match finite differences") {
  MSELoss<> mse;
  L1Loss<> l1;
  HuberLoss<> huber;
  HuberLoss<> huber_small(0.3f);
  check_loss_gradient(mse, 1);
  check_loss_gradient(l1, 2);
  check_loss_gradient(huber, 3);
  check_loss_gradient(huber_small, 4);
}

TEST_CASE("Losses: planned from an arena, and lazily re-sized for a new shape") {
  Arena<Cpu> arena;
  MSELoss<> loss;
  arena.begin();
  loss.plan(kShape, arena);
  arena.finalize();
  auto p = tensor({1, 2, 3, 4}), t = tensor({0, 2, 5, 4.5f});
  CHECK(loss.forward(p, t) == doctest::Approx(1.3125));
  const Shape s2 = Shape::nchw(1, 1, 1, 2);
  auto p2 = tensor({1, 1}, s2), t2 = tensor({0, 3}, s2);
  CHECK(loss.forward(p2, t2) == doctest::Approx((1 + 4) / 2.0));
  CHECK(loss.backward().shape() == s2);
  CHECK(relative_error(loss.backward().to_vector(), {1.0f, -2.0f}) < 1e-7);
}

TEST_CASE("Losses: mismatched shapes name both; names parse at run time") {
  MSELoss<> loss;
  auto p = Tensor<float, Cpu>(Shape::nchw(2, 2, 8, 8)), t = Tensor<float, Cpu>(Shape::nchw(2, 3, 8, 8));
  try {
    loss.forward(p, t);
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("MSELoss") != std::string::npos);
    CHECK(msg.find("[2, 2, 8, 8]") != std::string::npos);
    CHECK(msg.find("[2, 3, 8, 8]") != std::string::npos);
  }
  CHECK(parse_loss_kind("mse") == LossKind::mse);
  CHECK(parse_loss_kind("l1") == LossKind::l1);
  CHECK(parse_loss_kind("huber") == LossKind::huber);
  try {
    parse_loss_kind("smoothl2");
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("smoothl2") != std::string::npos);
    CHECK(msg.find("mse, l1, huber") != std::string::npos);
  }
  auto chosen = make_loss<Cpu>("huber", 0.5f);
  CHECK(chosen.kind() == LossKind::huber);
  CHECK(chosen.delta() == 0.5f);
  CHECK_THROWS_AS(HuberLoss<>(0.0f), kiln::Error);
}
