// Residual<Branch>: y = x + Branch(x). Gradients against finite differences, the
// split of dy to both paths, the eval plan's liveness (no buffer reused while the
// add still needs it), the receptive field, and the plan-time shape check.
#include <doctest/doctest.h>

#include <cstddef>
#include <vector>

#include "gradcheck.hpp"
#include "kiln/nn/receptive_field.hpp"
#include "kiln/nn/residual.hpp"

using namespace kiln;

namespace {
using Block = Residual<
    Sequential<Named<"conv1", Conv2d<4, 4, 3>>, Named<"bn", BatchNorm2d<4>>, ReLU<>, Named<"conv2", Conv2d<4, 4, 3>>>>;
using ResNet = Sequential<Named<"stem", Conv2d<2, 4, 3>>, ReLU<>, Named<"res0", Block>, Named<"res1", Block>,
                          Named<"head", Conv2d<4, 2, 3>>>;

static_assert(Block::in_channels == 4 && Block::out_channels == 4);
static_assert(Block::parameter_count == (4 * 4 * 9 + 4) * 2 + 2 * 4);
static_assert(ReceptiveField<ResNet>::radius == 1 + 2 * 2 + 1);  // stem, two blocks of two 3x3 convs, head
static_assert(ReceptiveField<ResNet>::alignment == 2);           // the 3x3s' Winograd tiles (nn/receptive_field.hpp)
}  // namespace

TEST_CASE("Residual: gradients match finite differences") {
  // Train mode without BatchNorm (a bias before a training-mode BatchNorm has no gradient
  // to speak of, and batch statistics make finite differences noisy): Conv-ReLU-Conv.
  using Plain = Residual<Sequential<Named<"conv1", Conv2d<3, 3, 3>>, ReLU<>, Named<"conv2", Conv2d<3, 3, 3>>>>;
  Plain block;
  kiln::test::check_gradients(block, Shape::nchw(2, 3, 5, 6), 11);
  Sequential<Named<"stem", Conv2d<2, 3, 3>>, Named<"res0", Plain>, Named<"res1", Plain>, Named<"head", Conv2d<3, 2, 1>>>
      net;
  kiln::test::check_gradients(net, Shape::nchw(1, 2, 6, 5), 12, 3e-2,
                              2e-3f);  // (a small step: fewer ReLU kinks crossed)
  // The Conv-BN-ReLU-Conv block and the whole network in eval mode (running statistics).
  Block eval_block;
  kiln::test::check_gradients(eval_block, Shape::nchw(1, 4, 4, 7), 13, 2e-2, 1e-2f, 24, Mode::eval);
  ResNet eval_net;
  kiln::test::check_gradients(eval_net, Shape::nchw(1, 2, 6, 5), 14, 3e-2, 2e-3f, 24, Mode::eval);
}

TEST_CASE("Residual: y = x + branch(x), and dy reaches x along both paths") {
  Residual<Sequential<Conv2d<1, 1, 1>>> res;  // branch(x) = w x + b
  res.visit(
      [](StateRef<Cpu> r) { r.value->copy_from_host(std::vector<float>{r.name.ends_with("weight") ? 3.0f : 0.5f}); },
      "");
  Arena<Cpu> arena;
  arena.begin();
  res.plan(Shape::nchw(1, 1, 1, 2), arena, "res");
  arena.finalize();
  const auto x = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 1, 2), std::vector<float>{1.0f, -2.0f});
  CHECK(res.forward(x, Mode::train).to_vector() == std::vector<float>{1.0f + 3.5f, -2.0f - 5.5f});
  zero_grad(res);
  const auto dy = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 1, 2), std::vector<float>{1.0f, 10.0f});
  CHECK(res.backward(dy).to_vector() == std::vector<float>{1.0f + 3.0f, 10.0f + 30.0f});  // dy + w dy
  // Called twice: dx is overwritten, parameter gradients accumulate.
  CHECK(res.backward(dy).to_vector() == std::vector<float>{4.0f, 40.0f});
  res.visit(
      [](StateRef<Cpu> r) {
        if (r.name.ends_with("bias")) CHECK((*r.grad)[0] == doctest::Approx(2 * 11.0));
      },
      "");
}

TEST_CASE("Residual: the eval plan reuses memory and infer() equals the eval forward on a train plan") {
  Rng rng(3);
  Network<ResNet> net;
  net.visit([&](StateRef<Cpu> r) {
    if (r.kind != StateRef<Cpu>::Kind::buffer) return;
    const bool var = r.name.find("running_var") != std::string::npos;
    std::vector<float> v(r.value->numel());
    for (auto& e : v) e = var ? rng.uniform(0.5f, 2.0f) : rng.uniform(-0.5f, 0.5f);
    r.value->copy_from_host(v);
  });
  const auto x = kiln::test::random_tensor(Shape::nchw(2, 2, 17, 23), rng);
  std::vector<float> expected;
  {
    Arena<Cpu> arena;
    arena.begin(Mode::train);
    net.layers().plan(x.shape(), arena, "");
    arena.finalize();
    expected = net.layers().forward(x, Mode::eval).to_vector();
  }
  const std::vector<float> got = net.infer(x).to_vector();
  CHECK(got == expected);
  const std::size_t eval = net.arena().bytes_planned();
  net.plan(x.shape(), Mode::train);
  const std::size_t train = net.arena().bytes_planned();
  CHECK(eval * 4 < train);
  // Alive at once at most: a block's input (retained), the branch's two neighbouring
  // activations and a convolution workspace; never more than 6 activations' worth.
  const std::size_t act = x.numel() / 2 * 4 * sizeof(float);
  CHECK(eval < 6 * act + 64 * 1024);
  MESSAGE("ResNet 2x17x23: train plan ", train, " B, eval plan ", eval, " B");
}

TEST_CASE("Residual: a branch that changes the image size is refused at plan time, naming the layer") {
  Network<Sequential<Named<"res", Residual<Sequential<Conv2d<2, 2, 1>, MaxPool2d<2>, Upsample<2>, MaxPool2d<2>>>>>> net;
  const auto x = Tensor<float, Cpu>(Shape::nchw(1, 2, 8, 8));
  CHECK_THROWS_WITH_AS(net.forward(x, Mode::train), doctest::Contains("Residual at 'res'"), kiln::Error);
}
