#include <doctest/doctest.h>
#include <omp.h>

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
  kiln::test::check_gradients(bn, Shape::nchw(2, 3, 2, 3));     // N*H*W = 12 per channel
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
  CHECK(rv[0] == doctest::Approx(0.9 + 0.1 * 20.0 / 3.0));   // squared deviations 9+1+1+9 = 20
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

// ---- the fast CPU path and the BatchNorm + ReLU fusion, against the plain loops ----------------

namespace {
struct BnRun {
  std::vector<float> y, rm, rv, mean, invstd, dx, dw, db;
};

// Runs forward + backward of one batch norm (fast, fused with a ReLU or not, or the reference
// loops followed by a plain ReLU) on the same data. The ReLU's backward for the reference is
// dx = y > 0 ? dy : 0, as in cpu/elementwise.hpp.
enum class BnPath { reference, fast, fused };
BnRun run_batchnorm(BnPath path, bool relu, const BatchNormArgs& a, const std::vector<float>& x,
                    const std::vector<float>& w, const std::vector<float>& b, const std::vector<float>& dy) {
  const std::size_t n = x.size(), c = std::size_t(a.c);
  BnRun r{std::vector<float>(n),       std::vector<float>(c, 0.2f),  std::vector<float>(c, 1.3f),
          std::vector<float>(c),       std::vector<float>(c),        std::vector<float>(n),
          std::vector<float>(c, 0.5f), std::vector<float>(c, -0.25f)};
  if (path == BnPath::fused) {
    cpu::batchnorm_relu_forward(a, x.data(), w.data(), b.data(), r.rm.data(), r.rv.data(), r.mean.data(),
                                r.invstd.data(), r.y.data());
    cpu::batchnorm_relu_backward(a, x.data(), w.data(), r.mean.data(), r.invstd.data(), r.y.data(), dy.data(),
                                 r.dx.data(), r.dw.data(), r.db.data());
    return r;
  }
  auto forward = path == BnPath::fast ? cpu::batchnorm_forward : cpu::reference::batchnorm_forward;
  auto backward = path == BnPath::fast ? cpu::batchnorm_backward : cpu::reference::batchnorm_backward;
  forward(a, x.data(), w.data(), b.data(), r.rm.data(), r.rv.data(), r.mean.data(), r.invstd.data(), r.y.data());
  std::vector<float> g(dy);
  if (relu) {
    for (auto& v : r.y) v = v > 0.0f ? v : 0.0f;
    for (std::size_t i = 0; i < n; ++i) g[i] = r.y[i] > 0.0f ? dy[i] : 0.0f;
  }
  backward(a, x.data(), w.data(), r.mean.data(), r.invstd.data(), g.data(), r.dx.data(), r.dw.data(), r.db.data());
  return r;
}

void check_close(const BnRun& got, const BnRun& want, double tol) {
  CHECK(relative_error(got.y, want.y) < tol);
  CHECK(relative_error(got.rm, want.rm) < tol);
  CHECK(relative_error(got.rv, want.rv) < tol);
  CHECK(relative_error(got.mean, want.mean) < tol);
  CHECK(relative_error(got.invstd, want.invstd) < tol);
  CHECK(relative_error(got.dx, want.dx) < tol);
  CHECK(relative_error(got.dw, want.dw) < tol);
  CHECK(relative_error(got.db, want.db) < tol);
}
}  // namespace

TEST_CASE("BatchNorm2d CPU fast path and BatchNorm+ReLU fusion match the plain loops, identically across threads") {
  // Planes shorter than, equal to and longer than the 16 lanes, with tails; an offset mean.
  const std::vector<BatchNormArgs> shapes{{2, 3, 35}, {16, 4, 16}, {3, 5, 64 * 3 + 7}, {1, 2, 4096}};
  Rng rng(31);
  for (BatchNormArgs a : shapes) {
    for (bool training : {true, false}) {
      a.training = training;
      CAPTURE(a.n);
      CAPTURE(a.c);
      CAPTURE(a.hw);
      CAPTURE(training);
      const std::size_t n = std::size_t(a.n * a.c * a.hw);
      const auto x = random_vector(n, rng, 2.0f, 5.0f);  // mean ~3.5: the centring matters
      const auto w = random_vector(std::size_t(a.c), rng, 0.5f, 1.5f);
      const auto b = random_vector(std::size_t(a.c), rng, -0.5f, 0.5f);
      const auto dy = random_vector(n, rng);
      for (bool relu : {false, true}) {
        CAPTURE(relu);
        const BnRun want = run_batchnorm(BnPath::reference, relu, a, x, w, b, dy);
        const BnPath path = relu ? BnPath::fused : BnPath::fast;
        const BnRun got = run_batchnorm(path, relu, a, x, w, b, dy);
        check_close(got, want, 2e-6);
        // The fused pass equals the unfused fast layers (BN, then ReLU) to rounding.
        if (relu) check_close(got, run_batchnorm(BnPath::fast, true, a, x, w, b, dy), 1e-6);
        const int saved = omp_get_max_threads();
        for (int threads : {1, 2, 3}) {
          omp_set_num_threads(threads);
          const BnRun again = run_batchnorm(path, relu, a, x, w, b, dy);
          CHECK(again.y == got.y);
          CHECK(again.dx == got.dx);
          CHECK(again.dw == got.dw);
          CHECK(again.rv == got.rv);
        }
        omp_set_num_threads(saved);
      }
    }
  }
}

TEST_CASE("BatchNorm2d + ReLU in a Sequential: fused, same values as the layers one by one, finite differences") {
  using Pair = Sequential<BatchNorm2d<3>, ReLU<Cpu>>;
  static_assert(detail::FusedWithNext<BatchNorm2d<3>, ReLU<Cpu>, Cpu>, "the CPU backend fuses BatchNorm + ReLU");
  Pair pair;
  BatchNorm2d<3> bn;
  ReLU<Cpu> relu;
  Rng rng(41);
  const auto w = random_vector(3, rng, 0.5f, 1.5f), b = random_vector(3, rng, -0.5f, 0.5f);
  for (auto* layer : {&pair.get<0>(), &bn}) {
    layer->weight().value.copy_from_host(w);
    layer->bias().value.copy_from_host(b);
  }
  const Shape s = Shape::nchw(2, 3, 5, 6);
  Arena<Cpu> arena;
  arena.begin();
  pair.plan(s, arena, "pair");
  bn.plan(s, arena, "bn");
  relu.plan(s, arena, "relu");
  arena.finalize();
  const auto x = kiln::test::random_tensor(s, rng);
  const auto dy = kiln::test::random_tensor(s, rng);
  for (Mode mode : {Mode::train, Mode::eval}) {
    CAPTURE(mode == Mode::train);
    zero_grad(pair);
    zero_grad(bn);
    const auto y_fused = pair.forward(x, mode).to_vector();
    const auto y_plain = relu.forward(bn.forward(x, mode), mode).to_vector();
    CHECK(relative_error(y_fused, y_plain) < 1e-6);
    CHECK(pair.get<0>().num_batches_tracked() == bn.num_batches_tracked());
    CHECK(relative_error(pair.get<0>().running_var().to_vector(), bn.running_var().to_vector()) < 1e-6);
    const auto dx_fused = pair.backward(dy).to_vector();
    const auto dx_plain = bn.backward(relu.backward(dy)).to_vector();
    CHECK(relative_error(dx_fused, dx_plain) < 1e-6);
    CHECK(relative_error(pair.get<0>().weight().grad.to_vector(), bn.weight().grad.to_vector()) < 1e-6);
    CHECK(relative_error(pair.get<0>().bias().grad.to_vector(), bn.bias().grad.to_vector()) < 1e-6);
  }
  // The fused backward against central differences (input, weight, bias), both modes. (A
  // convolution in front would have a bias gradient of exactly 0 in train mode, which no
  // relative error compares: see test_unet.)
  Pair fd;
  fd.get<0>().weight().value.copy_from_host(w);
  fd.get<0>().bias().value.copy_from_host(b);
  kiln::test::check_gradients(fd, Shape::nchw(2, 3, 3, 4), 3);
  kiln::test::check_gradients(fd, Shape::nchw(2, 3, 3, 4), 4, 2e-2, 1e-2f, 24, Mode::eval);
}
