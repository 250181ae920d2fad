// The eval plan (Arena lifetimes, Network::infer): same outputs as the eval forward pass on
// a train plan, bytes as liveness predicts, re-planning across modes, backward refused.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "gradcheck.hpp"
#include "kiln/models/unet.hpp"

using namespace kiln;

namespace {

std::size_t aligned(std::size_t bytes) {
  constexpr std::size_t a = Arena<Cpu>::alignment;
  return (bytes + a - 1) / a * a;
}
std::size_t activation_bytes(const Shape& s) { return aligned(s.numel() * sizeof(float)); }
std::size_t conv_scratch_bytes(const ConvShape& s) {
  return aligned((Backend<Cpu>::conv2d_forward_workspace_floats(s) + 1) * sizeof(float));
}

// The eval forward pass as before this plan existed: every layer's buffers alive throughout.
template <class Net>
std::vector<float> eval_on_train_plan(Net& layers, const Tensor<float, Cpu>& x) {
  Arena<Cpu> arena;
  arena.begin(Mode::train);
  layers.plan(x.shape(), arena, "");
  arena.finalize();
  return layers.forward(x, Mode::eval).to_vector();
}

// Running statistics away from (0, 1), so that eval differs from the identity map.
template <class Net>
void randomise_running_stats(Network<Net>& net, Rng& rng) {
  net.visit([&](StateRef<Cpu> r) {
    if (r.kind != StateRef<Cpu>::Kind::buffer) return;
    const bool var = r.name.find("running_var") != std::string::npos;
    std::vector<float> v(r.value->numel());
    for (auto& e : v) e = var ? rng.uniform(0.5f, 2.0f) : rng.uniform(-0.5f, 0.5f);
    r.value->copy_from_host(v);
  });
}

template <class Net>
void check_infer_matches_train_plan(const Shape& shape, std::uint64_t seed) {
  Rng rng(seed);
  Network<Net> net;
  randomise_running_stats(net, rng);
  const auto x = kiln::test::random_tensor(shape, rng);
  const std::vector<float> expected = eval_on_train_plan(net.layers(), x);
  const std::vector<float> got = net.infer(x).to_vector();
  REQUIRE(net.planned_mode() == Mode::eval);
  REQUIRE(got.size() == expected.size());
  std::size_t differ = 0;
  for (std::size_t i = 0; i < got.size(); ++i) differ += got[i] != expected[i];
  CHECK(differ == 0);
}

using ConvChain = Sequential<Conv2d<1, 8, 3>, Conv2d<8, 16, 3>, Conv2d<16, 4, 3>>;
using BlockNet = Sequential<Conv2d<2, 6, 3>, BatchNorm2d<6>, ReLU<>, MaxPool2d<2>, Conv2d<6, 6, 1>,
                            Upsample<2, UpsampleMode::bilinear>, Conv2d<6, 3, 3>>;
using SkipNet = Sequential<Conv2d<2, 4, 3>, ReLU<>, SkipConcat<Sequential<Conv2d<4, 3, 1>, BatchNorm2d<3>, ReLU<>>>,
                           Conv2d<7, 2, 3>>;

}  // namespace

TEST_CASE("Arena: an eval plan reuses a buffer once its last reader has run, never while it is alive") {
  Arena<Cpu> arena;
  Tensor<float, Cpu> a, b, c, d;
  arena.begin(Mode::eval);
  const auto va = arena.output(a, Shape{1000});  // 4000 B -> 4032 B
  arena.retain(va);                              // read again after c (a skip)
  const auto vb = arena.output(b, Shape{1000});
  arena.release(va);
  arena.output(c, Shape{1000});
  arena.release(vb);  // b dies: d may take its bytes, not a's (still retained) nor c's
  arena.output(d, Shape{1000});
  arena.release(va);
  arena.finalize();
  CHECK(arena.bytes_planned() == 3 * 4032);
  CHECK(arena.live_peak() == 3 * 4032);
  CHECK(d.data() == b.data());
  CHECK(a.data() != c.data());
  CHECK(a.data() != d.data());
  CHECK(c.data() != d.data());

  // The same requests in a train plan: all alive throughout, laid out in order.
  arena.begin(Mode::train);
  arena.output(a, Shape{1000});
  arena.output(b, Shape{1000});
  arena.release(0);  // ignored in training
  arena.finalize();
  CHECK(arena.bytes_planned() == 2 * 4032);
  CHECK(b.data() == a.data() + 1008);

  arena.begin(Mode::eval);
  const auto v = arena.output(a, Shape{4});
  arena.release(v);
  CHECK_THROWS_WITH_AS(arena.release(v), doctest::Contains("released more often"), kiln::Error);
}

TEST_CASE("Network eval plan: a chain of convolutions holds two neighbouring activations and one workspace") {
  const std::int64_t h = 40, w = 48;
  Network<ConvChain> net;
  const Shape x = Shape::nchw(1, 1, h, w);
  net.plan(x, Mode::train);
  const std::size_t train = net.arena().bytes_planned();
  net.plan(x, Mode::eval);
  const std::size_t eval = net.arena().bytes_planned();
  // Live while conv i runs: its input (conv i-1's output; the network input is outside the
  // arena), its output and its workspace.
  const std::size_t y0 = activation_bytes(Shape::nchw(1, 8, h, w)), y1 = activation_bytes(Shape::nchw(1, 16, h, w)),
                    y2 = activation_bytes(Shape::nchw(1, 4, h, w));
  const std::size_t expected =
      std::max({y0 + conv_scratch_bytes({1, 1, 8, h, w, 3}), y0 + y1 + conv_scratch_bytes({1, 8, 16, h, w, 3}),
                y1 + y2 + conv_scratch_bytes({1, 16, 4, h, w, 3})});
  CHECK(net.arena().live_peak() == expected);
  CHECK(eval == expected);
  CHECK(eval * 4 < train);
  MESSAGE("conv chain 40x48: train plan ", train, " B, eval plan ", eval, " B");
}

TEST_CASE("Arena::measure: a dry plan sizes both modes exactly as finalize() does, without allocating") {
  const Shape x = Shape::nchw(2, 1, 24, 40);
  Network<UNet<1, 2, 4, 2>> net;
  for (Mode mode : {Mode::train, Mode::eval}) {
    Arena<Cpu> dry;
    dry.begin(mode);
    (void)net.layers().plan(x, dry, "");
    const std::size_t measured = dry.measure();
    CHECK(dry.allocations() == 0);
    net.plan(x, mode);
    CHECK(measured == net.arena().bytes_planned());
    CHECK(measured > 0);
  }
}

TEST_CASE("Network::infer equals the eval forward pass on a train plan, bitwise") {
  check_infer_matches_train_plan<ConvChain>(Shape::nchw(2, 1, 9, 20), 1);
  check_infer_matches_train_plan<BlockNet>(Shape::nchw(2, 2, 18, 22), 2);  // fused BN+ReLU, pooling, bilinear
  check_infer_matches_train_plan<SkipNet>(Shape::nchw(1, 2, 7, 33), 3);    // skip connection
  check_infer_matches_train_plan<UNet<1, 2, 4, 2>>(Shape::nchw(2, 1, 12, 20), 4);
  check_infer_matches_train_plan<UNet<1, 2, 16, 4>>(Shape::nchw(1, 1, 64, 96), 5);
}

TEST_CASE("UNet<1,2,16,4> at 256x256: the eval plan is a small fraction of the train plan") {
  Network<UNet<1, 2, 16, 4>> net;
  const Shape x = Shape::nchw(1, 1, 256, 256);
  net.plan(x, Mode::train);
  const std::size_t train = net.arena().bytes_planned();
  net.plan(x, Mode::eval);
  const std::size_t eval = net.arena().bytes_planned();
  // The largest live set is at the outermost concat: the skip (16 channels), the upsampled
  // branch (16) and their concatenation (32), full size.
  const std::size_t concat_peak = 64 * activation_bytes(Shape::nchw(1, 1, 256, 256));
  // Plus each BatchNorm's save_mean and save_invstd (C floats each, kept for the whole plan)
  // of the 16 BatchNorms planned before that concat: 2 x (16 + 32 + 64 + 128) going down,
  // 2 x 256 in the bottleneck, 2 x (128 + 64 + 32) coming up.
  const std::size_t stats = 2 * sizeof(float) * (2 * (16 + 32 + 64 + 128) + 2 * 256 + 2 * (128 + 64 + 32));
  CHECK(net.arena().live_peak() == concat_peak + stats);
  CHECK(eval == concat_peak + stats);
  CHECK(eval * 16 < train);
  MESSAGE("UNet<1,2,16,4> 256x256: train plan ", train, " B, eval plan ", eval, " B");
}

TEST_CASE("Network: a forward in the other mode re-plans, within the block already allocated") {
  Rng rng(7);
  Network<SkipNet> net;
  const auto x = kiln::test::random_tensor(Shape::nchw(2, 2, 8, 8), rng);
  const std::vector<float> train1 = net.forward(x, Mode::train).to_vector();
  CHECK(net.planned_mode() == Mode::train);
  const std::size_t train_bytes = net.arena().bytes_planned();
  const std::vector<float> eval1 = net.infer(x).to_vector();
  CHECK(net.planned_mode() == Mode::eval);
  CHECK(net.arena().bytes_planned() < train_bytes);
  const std::vector<float> train2 = net.forward(x, Mode::train).to_vector();
  CHECK(net.planned_mode() == Mode::train);
  CHECK(net.arena().bytes_planned() == train_bytes);
  net.backward(net.forward(x, Mode::train));  // a train plan again: backward works
  CHECK(train2 == train1);
  CHECK(net.infer(x).to_vector() != train1);  // eval uses the running statistics
  CHECK(net.arena().allocations() == 1);
  (void)eval1;
}

TEST_CASE("Network::backward after an eval forward, or before any forward, says so") {
  Rng rng(8);
  Network<SkipNet> net;
  const auto x = kiln::test::random_tensor(Shape::nchw(1, 2, 6, 6), rng);
  Tensor<float, Cpu> dy(Shape::nchw(1, 2, 6, 6));
  CHECK_THROWS_WITH_AS(net.backward(dy), doctest::Contains("no forward()"), kiln::Error);
  net.infer(x);
  CHECK_THROWS_WITH_AS(net.backward(dy), doctest::Contains("planned for Mode::eval"), kiln::Error);
  // A layer planned for eval refuses too, instead of writing through an empty gradient.
  Conv2d<2, 2, 3> conv;
  Arena<Cpu> arena;
  arena.begin(Mode::eval);
  conv.plan(x.shape(), arena, "conv");
  arena.finalize();
  conv.forward(x, Mode::eval);
  CHECK_THROWS_WITH_AS(conv.backward(dy), doctest::Contains("Mode::eval"), kiln::Error);
}
