#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gradcheck.hpp"

using namespace kiln;
using kiln::test::relative_error;

namespace {
// A two-element parameter with a settable gradient, as an optimizer sees it.
struct Toy {
  Parameter<Cpu> p{Shape{2}};
  std::vector<ParameterSlot<Cpu>> slots() { return {{"toy.weight", &p.value, &p.grad}}; }
  void set(std::vector<float> value) { p.value.copy_from_host(value); }
  void grad(std::vector<float> g) { p.grad.copy_from_host(g); }
  std::vector<float> value() const { return p.value.to_vector(); }
};

void check_close(const std::vector<float>& got, const std::vector<double>& want, double tol = 1e-6) {
  REQUIRE(got.size() == want.size());
  std::vector<float> w(want.begin(), want.end());
  INFO("got ", got[0], ", ", got.size() > 1 ? got[1] : 0.0f, " want ", want[0], ", ", want.size() > 1 ? want[1] : 0.0);
  CHECK(relative_error(got, w) < tol);
}
}  // namespace

TEST_CASE("collect_parameters: names and tensors in visit order, buffers skipped") {
  Sequential<Named<"conv1", Conv2d<1, 2, 3>>, Named<"bn1", BatchNorm2d<2>>, ReLU<>> net;
  const auto slots = collect_parameters(net);
  REQUIRE(slots.size() == 4);
  CHECK(slots[0].name == "conv1.weight");
  CHECK(slots[1].name == "conv1.bias");
  CHECK(slots[2].name == "bn1.weight");
  CHECK(slots[3].name == "bn1.bias");
  CHECK(slots[0].value == &net.get<0>().weight().value);
  CHECK(slots[0].grad == &net.get<0>().weight().grad);
  CHECK(slots[3].value->shape() == Shape{2});
  Network<decltype(net)> wrapped;
  CHECK(collect_parameters(wrapped).size() == 4);
}

TEST_CASE("Adam: the first two steps by hand") {
  // lr 0.1, betas (0.9, 0.999), eps 1e-8; p0 = [1, -2]; g1 = [0.5, -1]; g2 = [0.1, 0.2].
  Toy toy;
  toy.set({1.0f, -2.0f});
  Adam adam(toy.slots(), AdamOptions{.lr = 0.1f});
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;

  // Step 1: m = 0.1 g1 = [0.05, -0.1]; v = 0.001 g1^2 = [0.00025, 0.001];
  // bias corrections 1 - 0.9 = 0.1 and 1 - 0.999 = 0.001, so m_hat = g1, sqrt(v_hat) = |g1|:
  // p = p0 - 0.1 * g1 / (|g1| + 1e-8) = [0.9, -1.9] (to 1e-8).
  toy.grad({0.5f, -1.0f});
  adam.step();
  CHECK(adam.step_count() == 1);
  check_close(toy.value(), {1.0 - lr * 0.5 / (0.5 + eps), -2.0 + lr * 1.0 / (1.0 + eps)});
  check_close(toy.value(), {0.9, -1.9});

  // Step 2: m = 0.9 [0.05, -0.1] + 0.1 [0.1, 0.2] = [0.055, -0.07];
  // v = 0.999 [0.00025, 0.001] + 0.001 [0.01, 0.04] = [0.00025975, 0.001039];
  // bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.998001 = 0.001999;
  // p -= 0.1 / 0.19 * m / (sqrt(v) / sqrt(0.001999) + 1e-8)  ->  [0.8196959, -1.8488974].
  toy.grad({0.1f, 0.2f});
  adam.step();
  const double bc1 = 1 - b1 * b1, bc2 = 1 - b2 * b2;
  const double m0 = 0.055, m1 = -0.07, v0 = 0.00025975, v1 = 0.001039;
  check_close(toy.value(), {0.9 - lr / bc1 * m0 / (std::sqrt(v0) / std::sqrt(bc2) + eps),
                            -1.9 - lr / bc1 * m1 / (std::sqrt(v1) / std::sqrt(bc2) + eps)});
  check_close(toy.value(), {0.8196959063846517, -1.8488973939904945});

  std::map<std::string, std::vector<float>> state;
  adam.visit_state([&](const std::string& name, Tensor<float, Cpu>& t) { state[name] = t.to_vector(); });
  REQUIRE(state.size() == 2);
  check_close(state["toy.weight.exp_avg"], {m0, m1});
  check_close(state["toy.weight.exp_avg_sq"], {v0, v1});
}

TEST_CASE("Adam: weight_decay is L2 added to the gradient") {
  // g = grad + wd * p = [0 + 0.5 * 1, 0 + 0.5 * -2] = [0.5, -1]: the same first step as above.
  Toy toy;
  toy.set({1.0f, -2.0f});
  toy.grad({0.0f, 0.0f});
  Adam adam(toy.slots(), AdamOptions{.lr = 0.1f, .weight_decay = 0.5});
  adam.step();
  check_close(toy.value(), {0.9, -1.9});
}

TEST_CASE("AdamW: decoupled decay p *= 1 - lr * wd, then the Adam update") {
  Toy toy;
  toy.set({1.0f, -2.0f});
  SUBCASE("zero gradient: only the decay acts (m = v = 0 give a zero update)") {
    toy.grad({0.0f, 0.0f});
    AdamW adamw(toy.slots(), AdamWOptions{.lr = 0.1f, .weight_decay = 0.2});
    adamw.step();
    check_close(toy.value(), {1.0 * (1 - 0.1 * 0.2), -2.0 * (1 - 0.1 * 0.2)});  // [0.98, -1.96]
  }
  SUBCASE("default weight_decay 0.01, as PyTorch") {
    toy.grad({0.5f, -1.0f});
    AdamW adamw(toy.slots(), AdamWOptions{.lr = 0.1f});
    CHECK(adamw.weight_decay() == 0.01);
    adamw.step();
    // [1, -2] * (1 - 0.001) - 0.1 * sign(g) = [0.899, -1.898]
    check_close(toy.value(), {0.999 - 0.1, -1.998 + 0.1});
  }
}

TEST_CASE("SGD: momentum, two steps by hand") {
  Toy toy;
  toy.set({1.0f, 2.0f});
  SUBCASE("heavy ball") {
    SGD sgd(toy.slots(), SgdOptions{.lr = 0.1f, .momentum = 0.9});
    // step 1: buf = g = [1, -1]; p = [1 - 0.1, 2 + 0.1] = [0.9, 2.1]
    toy.grad({1.0f, -1.0f});
    sgd.step();
    check_close(toy.value(), {0.9, 2.1});
    // step 2: buf = 0.9 [1, -1] + [0.5, 0.5] = [1.4, -0.4]; p = [0.9 - 0.14, 2.1 + 0.04] = [0.76, 2.14]
    toy.grad({0.5f, 0.5f});
    sgd.step();
    check_close(toy.value(), {0.76, 2.14});
    std::map<std::string, std::vector<float>> state;
    sgd.visit_state([&](const std::string& name, Tensor<float, Cpu>& t) { state[name] = t.to_vector(); });
    REQUIRE(state.count("toy.weight.momentum_buffer") == 1);
    check_close(state["toy.weight.momentum_buffer"], {1.4, -0.4});
  }
  SUBCASE("nesterov") {
    SGD sgd(toy.slots(), SgdOptions{.lr = 0.1f, .momentum = 0.9, .nesterov = true});
    // step 1: buf = [1, -1]; d = g + 0.9 buf = [1.9, -1.9]; p = [0.81, 2.19]
    toy.grad({1.0f, -1.0f});
    sgd.step();
    check_close(toy.value(), {0.81, 2.19});
    // step 2: buf = [1.4, -0.4]; d = [0.5 + 1.26, 0.5 - 0.36] = [1.76, 0.14]; p = [0.634, 2.176]
    toy.grad({0.5f, 0.5f});
    sgd.step();
    check_close(toy.value(), {0.634, 2.176});
  }
  SUBCASE("weight decay and dampening (the first step ignores dampening)") {
    SGD sgd(toy.slots(), SgdOptions{.lr = 0.1f, .momentum = 0.5, .dampening = 0.5, .weight_decay = 0.1});
    // step 1: g = [1, -1] + 0.1 [1, 2] = [1.1, -0.8]; buf = g; p = [0.89, 2.08]
    toy.grad({1.0f, -1.0f});
    sgd.step();
    check_close(toy.value(), {0.89, 2.08});
    // step 2: g = [0, 0] + 0.1 [0.89, 2.08] = [0.089, 0.208];
    // buf = 0.5 [1.1, -0.8] + 0.5 g = [0.5945, -0.296]; p = [0.89 - 0.05945, 2.08 + 0.0296]
    toy.grad({0.0f, 0.0f});
    sgd.step();
    check_close(toy.value(), {0.83055, 2.1096});
  }
  SUBCASE("plain SGD keeps no state") {
    SGD sgd(toy.slots(), SgdOptions{.lr = 0.5f});
    toy.grad({1.0f, -1.0f});
    sgd.step();
    check_close(toy.value(), {0.5, 2.5});
    int n = 0;
    sgd.visit_state([&](const std::string&, Tensor<float, Cpu>&) { ++n; });
    CHECK(n == 0);
  }
}

TEST_CASE("Optimizers: lr can be changed, state restores for resume") {
  // Run A for 3 steps; B copies A's state after 2 steps and must then match A exactly.
  const std::vector<std::vector<float>> grads{{0.3f, -0.7f}, {-0.2f, 0.4f}, {0.9f, 0.1f}};
  Toy a, b;
  a.set({0.5f, -0.25f});
  AdamW opt_a(a.slots(), AdamWOptions{.lr = 0.05f});
  CHECK(opt_a.lr() == 0.05f);
  opt_a.set_lr(0.02f);
  CHECK(opt_a.lr() == 0.02f);
  for (int s = 0; s < 2; ++s) {
    a.grad(grads[size_t(s)]);
    opt_a.step();
  }
  b.set(a.value());
  AdamW opt_b(b.slots(), AdamWOptions{.lr = 0.02f});
  std::map<std::string, std::vector<float>> saved;
  opt_a.visit_state([&](const std::string& n, Tensor<float, Cpu>& t) { saved[n] = t.to_vector(); });
  opt_b.visit_state([&](const std::string& n, Tensor<float, Cpu>& t) { t.copy_from_host(saved.at(n)); });
  opt_b.set_step_count(opt_a.step_count());
  a.grad(grads[2]);
  b.grad(grads[2]);
  opt_a.step();
  opt_b.step();
  CHECK(a.value() == b.value());
  CHECK(opt_b.step_count() == 3);

  SGD sgd(a.slots(), SgdOptions{.lr = 0.1f, .momentum = 0.9});
  sgd.set_lr(0.3f);
  CHECK(sgd.lr() == 0.3f);
}

TEST_CASE("Optimizers: a few Adam steps reduce a small network's loss") {
  manual_seed(3);
  Network<Sequential<Conv2d<1, 4, 3>, BatchNorm2d<4>, ReLU<>, Conv2d<4, 1, 1>>> net;
  Rng rng(8);
  auto x = kiln::test::random_tensor(Shape::nchw(2, 1, 4, 4), rng);
  auto target = kiln::test::random_tensor(Shape::nchw(2, 1, 4, 4), rng);
  MSELoss<> loss;
  Adam adam(collect_parameters(net), AdamOptions{.lr = 1e-2f});
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    adam.zero_grad();
    const auto& y = net.forward(x, Mode::train);
    last = loss.forward(y, target);
    if (step == 0) first = last;
    net.backward(loss.backward());
    adam.step();
  }
  CHECK(last < 0.7f * first);
}

TEST_CASE("Backend<Cpu>::adam_step_multi: the same bits as adam_step per tensor; sizes checked") {
  // Tensors of 0, 1, 37 and 4099 elements (tails of every vector width, one larger than a thread's share).
  const std::vector<std::int64_t> sizes{0, 1, 37, 4099};
  Rng rng(11);
  auto random = [&](std::int64_t n, float lo, float hi) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = lo + (hi - lo) * rng.uniform();
    return v;
  };
  using T = Tensor<float, Cpu>;
  std::vector<T> p1, g, m1, v1, p2, m2, v2;
  std::vector<std::vector<float>> before;
  for (const std::int64_t n : sizes) {
    const Shape s{n};
    const auto pv = random(n, -1, 1), gv = random(n, -1, 1), mv = random(n, -0.1f, 0.1f), vv = random(n, 0, 0.01f);
    before.push_back(pv);
    p1.push_back(T::from_host(s, pv));
    p2.push_back(T::from_host(s, pv));
    g.push_back(T::from_host(s, gv));
    m1.push_back(T::from_host(s, mv));
    m2.push_back(T::from_host(s, mv));
    v1.push_back(T::from_host(s, vv));
    v2.push_back(T::from_host(s, vv));
  }
  AdamStepArgs a;
  a.beta1 = 0.9f, a.beta2 = 0.999f, a.one_minus_beta1 = 0.1f, a.one_minus_beta2 = 0.001f, a.eps = 1e-8f;
  a.l2 = 0.01f, a.decay = 0.999f, a.step_size = 0.03f, a.bias_correction2_sqrt = 0.2f;
  std::vector<Backend<Cpu>::AdamTensors> list;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    a.numel = sizes[i];
    Backend<Cpu>::adam_step(a, p1[i], g[i], m1[i], v1[i]);
    list.push_back({&p2[i], &g[i], &m2[i], &v2[i]});
  }
  a.numel = -1;  // ignored by adam_step_multi
  Backend<Cpu>::adam_step_multi(a, list);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO("tensor ", i, " of ", sizes[i], " elements");
    CHECK(p2[i].to_vector() == p1[i].to_vector());
    CHECK(m2[i].to_vector() == m1[i].to_vector());
    CHECK(v2[i].to_vector() == v1[i].to_vector());
    if (sizes[i] > 0) CHECK(p2[i].to_vector() != before[i]);  // it did update
  }
  T short_grad(Shape{36});
  list[2].grad = &short_grad;
  CHECK_THROWS_WITH_AS(Backend<Cpu>::adam_step_multi(a, list),
                       doctest::Contains("tensor 2 has 37 parameters but 36 gradients"), kiln::Error);
}

static_assert(Backend<Cpu>::multi_tensor_adam && HasMultiTensorAdam<Cpu>, "Adam<Cpu> takes the multi-tensor step");
