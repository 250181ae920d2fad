// A tiny network must fit a fixed small batch: the whole training loop
// (forward, loss, backward, Adam) working together, deterministically.
#include <doctest/doctest.h>

#include "gradcheck.hpp"
#include "kiln/nn/batchnorm2d.hpp"
#include "kiln/nn/loss.hpp"
#include "kiln/optim/adam.hpp"

using namespace kiln;

namespace {
using TinyNet = Sequential<Conv2d<1, 8, 3>, BatchNorm2d<8>, ReLU<>, SkipConcat<Sequential<Conv2d<8, 8, 3>, ReLU<>>>,
                           Conv2d<16, 2, 1>>;

std::vector<float> fit(int steps, std::uint64_t seed) {
  manual_seed(seed);
  Network<TinyNet> net;
  Rng rng(seed);
  auto x = kiln::test::random_tensor(Shape::nchw(4, 1, 8, 8), rng);
  // A target the network can represent: a smooth function of the input.
  Tensor<float, Cpu> target(Shape::nchw(4, 2, 8, 8));
  for (std::int64_t n = 0; n < 4; ++n)
    for (std::int64_t i = 0; i < 8; ++i)
      for (std::int64_t j = 0; j < 8; ++j) {
        target.at(n, 0, i, j) = 0.5f * x.at(n, 0, i, j);
        target.at(n, 1, i, j) = x.at(n, 0, i, j) > 0 ? 0.3f : -0.2f;
      }
  MSELoss<Cpu> loss;
  Adam<Cpu> adam(collect_parameters(net), AdamOptions{.lr = 1e-2f});
  std::vector<float> losses;
  for (int step = 0; step < steps; ++step) {
    const auto& y = net.forward(x, Mode::train);
    losses.push_back(loss.forward(y, target));
    net.zero_grad();
    net.backward(loss.backward());
    adam.step();
  }
  return losses;
}
}  // namespace

TEST_CASE("A tiny network fits a fixed batch: the loss falls by 10x in 150 steps") {
  auto losses = fit(150, 7);
  INFO("first loss ", losses.front(), ", last loss ", losses.back());
  CHECK(losses.back() < losses.front() / 10.0f);
}

TEST_CASE("Training is deterministic for a seed") {
  CHECK(fit(5, 11) == fit(5, 11));
  CHECK(fit(5, 11) != fit(5, 12));
}
