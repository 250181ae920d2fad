#include <doctest/doctest.h>

#include "gradcheck.hpp"

using namespace kiln;

namespace {
// A small network with a skip: conv -> relu -> [skip: conv 1x1] concat -> conv.
using Branch = Sequential<Named<"inner", Conv2d<4, 3, 1>>, ReLU<>>;
using SkipNet = Sequential<Named<"stem", Conv2d<2, 4, 3>>, ReLU<>, Named<"skip", SkipConcat<Branch>>,
                           Named<"head", Conv2d<7, 2, 3>>>;
}  // namespace

TEST_CASE("Sequential: channel counts and parameter count are compile-time facts") {
  static_assert(SkipNet::in_channels == 2);
  static_assert(SkipNet::out_channels == 2);
  static_assert(SkipConcat<Branch>::out_channels == 7);
  static_assert(SkipNet::parameter_count == (4 * 2 * 9 + 4) + (3 * 4 + 3) + (2 * 7 * 9 + 2));
  SkipNet net;
  CHECK(count_parameters(net) == SkipNet::parameter_count);
}

TEST_CASE("Sequential: parameters are visited with hierarchical names") {
  SkipNet net;
  std::vector<std::string> names;
  net.visit([&](StateRef<Cpu> ref) { names.push_back(ref.name); }, "net");
  std::vector<std::string> expected{
      "net.stem.weight", "net.stem.bias", "net.skip.branch.inner.weight", "net.skip.branch.inner.bias",
      "net.head.weight", "net.head.bias"};
  CHECK(names == expected);
}

TEST_CASE("Sequential with a skip connection: gradients match finite differences") {
  // Weights from the test's own generator: default construction draws from the process-wide
  // default_rng(), whose state depends on the tests run before in the same process. The step is
  // 1e-3, not the default 1e-2: a stem bias shifts 40 pre-activations of a ReLU, and at 1e-2 some
  // cross zero inside the step for many weight draws (kinks the one-sided-slope test misses, or too
  // few coordinates left to compare); at 1e-3 such draws are rare.
  SkipNet net;
  Rng rng(2);
  net.reset_parameters(rng);
  kiln::test::check_gradients(net, Shape::nchw(2, 2, 4, 5), 1, 2e-2, 1e-3f);
}

TEST_CASE("SkipConcat: the skip gradient is added to the branch's") {
  // Branch = identity-like 1x1 conv with weight 1 and bias 0: y = [x; x], so dL/dx = dy_branch + dy_skip.
  SkipConcat<Sequential<Conv2d<1, 1, 1>>> skip;
  skip.branch().get<0>().weight().value.copy_from_host(std::vector<float>{1.0f});
  skip.branch().get<0>().bias().value.copy_from_host(std::vector<float>{0.0f});
  Arena<Cpu> arena;
  arena.begin();
  CHECK(skip.plan(Shape::nchw(1, 1, 1, 2), arena, "") == Shape::nchw(1, 2, 1, 2));
  arena.finalize();
  auto x = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 1, 2), std::vector<float>{3, -4});
  CHECK(skip.forward(x, Mode::train).to_vector() == std::vector<float>{3, -4, 3, -4});
  auto dy = Tensor<float, Cpu>::from_host(Shape::nchw(1, 2, 1, 2), std::vector<float>{1, 2, 10, 20});
  CHECK(skip.backward(dy).to_vector() == std::vector<float>{11, 22});
}

TEST_CASE("Network: planned once per shape, then no new allocation") {
  Network<SkipNet> net;
  Rng rng(5);
  auto x = kiln::test::random_tensor(Shape::nchw(2, 2, 6, 6), rng);
  for (int step = 0; step < 3; ++step) {
    const auto& y = net.forward(x, Mode::train);
    net.backward(y);
  }
  CHECK(net.arena().allocations() == 1);
  auto x2 = kiln::test::random_tensor(Shape::nchw(1, 2, 4, 4), rng);  // smaller: fits the same block
  net.forward(x2, Mode::train);
  CHECK(net.arena().allocations() == 1);
}

TEST_CASE("Network: wrong input channels at run time name the layer and both shapes") {
  Network<SkipNet> net;
  Tensor<float, Cpu> x(Shape::nchw(1, 3, 4, 4));
  try {
    net.forward(x, Mode::eval);
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    std::string msg = e.what();
    CHECK(msg.find("stem") != std::string::npos);
    CHECK(msg.find("[1, 3, 4, 4]") != std::string::npos);
  }
}
