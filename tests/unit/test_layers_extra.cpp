// The everyday layers beyond the U-Net's: LeakyReLU, SiLU, Sigmoid, Tanh, Dropout, strided Conv2d,
// Tensor::clone and the element-wise helpers (kiln/core/ops.hpp). Values against PyTorch's
// formulas, gradients against finite differences (tests/gradcheck.hpp), eval planning, aliasing.
// (CPU against CUDA: tests/emu/kernel_cases_layers.hpp.)
#include <doctest/doctest.h>

#include <cmath>
#include <deque>
#include <vector>

#include "gradcheck.hpp"

using namespace kiln;
using kiln::test::check_gradients;
using kiln::test::random_tensor;
using kiln::test::relative_error;

namespace {

Tensor<float, Cpu> tensor(std::vector<float> v) {
  return Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 1, static_cast<std::int64_t>(v.size())), v);
}

// Plans `layer` for x in an arena that lives to the end of the test binary (backward may follow).
template <class Layer>
std::vector<float> forward_once(Layer& layer, const Tensor<float, Cpu>& x, Mode mode = Mode::train) {
  static std::deque<Arena<Cpu>> arenas;
  Arena<Cpu>& arena = arenas.emplace_back();
  arena.begin(mode);
  layer.plan(x.shape(), arena, "");
  arena.finalize();
  return layer.forward(x, mode).to_vector();
}

// A Dropout whose every forward draws mask number 1: a fixed function of x, so central
// differences of its forward can be compared with its backward.
struct FixedMaskDropout : Dropout<Cpu> {
  FixedMaskDropout() : Dropout<Cpu>(0.4f, 99) {}
  const Tensor<float, Cpu>& forward(const Tensor<float, Cpu>& x, Mode mode) {
    set_step(0);
    return Dropout<Cpu>::forward(x, mode);
  }
};

}  // namespace

// ---- activations ------------------------------------------------------------------------------

TEST_CASE("activations: values as PyTorch (LeakyReLU default slope 0.01, SiLU, Sigmoid, Tanh)") {
  const auto x = tensor({-2.0f, -0.5f, 0.0f, 1.0f, 3.0f});
  {
    LeakyReLU<> l;
    CHECK(l.negative_slope() == 0.01f);
    CHECK(relative_error(forward_once(l, x), {-0.02f, -0.005f, 0.0f, 1.0f, 3.0f}) < 1e-7);
    LeakyReLU<> l2(0.2f);
    CHECK(relative_error(forward_once(l2, x), {-0.4f, -0.1f, 0.0f, 1.0f, 3.0f}) < 1e-7);
  }
  std::vector<float> silu, sig, th;
  for (float v : {-2.0f, -0.5f, 0.0f, 1.0f, 3.0f}) {
    const double s = 1.0 / (1.0 + std::exp(-double(v)));
    silu.push_back(static_cast<float>(v * s));
    sig.push_back(static_cast<float>(s));
    th.push_back(static_cast<float>(std::tanh(double(v))));
  }
  SiLU<> a;
  Sigmoid<> b;
  Tanh<> c;
  CHECK(relative_error(forward_once(a, x), silu) < 1e-6);
  CHECK(relative_error(forward_once(b, x), sig) < 1e-6);
  CHECK(relative_error(forward_once(c, x), th) < 1e-6);
  CHECK(SiLU<>::kind == "SiLU");
  CHECK(LeakyReLU<>::kind == "LeakyReLU");
  // they keep the channel count, like ReLU
  static_assert(Sigmoid<>::in_channels == any_channels && Sigmoid<>::out_channels == same_channels);
}

TEST_CASE("activations: gradients match finite differences") {
  const Shape s = Shape::nchw(2, 3, 4, 5);
  {
    LeakyReLU<> l;
    check_gradients(l, s, 1);
  }
  {
    LeakyReLU<> l(0.2f);
    check_gradients(l, s, 2);
  }
  {
    SiLU<> l;
    check_gradients(l, s, 3);
  }
  {
    Sigmoid<> l;
    check_gradients(l, s, 4);
  }
  {
    Tanh<> l;
    check_gradients(l, s, 5);
  }
}

TEST_CASE("activations: LeakyReLU's gradient at 0 is the slope (PyTorch), backward overwrites") {
  LeakyReLU<> l(0.25f);
  const auto x = tensor({-1.0f, 0.0f, 2.0f});
  forward_once(l, x);
  const auto dy = tensor({4.0f, 4.0f, 4.0f});
  CHECK(relative_error(l.backward(dy).to_vector(), {1.0f, 1.0f, 4.0f}) < 1e-7);
  CHECK(relative_error(l.backward(dy).to_vector(), {1.0f, 1.0f, 4.0f}) < 1e-7);  // not accumulated
}

TEST_CASE(
    "activations in a network: eval plan, infer equals the eval forward on a train plan, backward after eval throws") {
  using Net = Sequential<Conv2d<2, 4, 3>, SiLU<>, Conv2d<4, 4, 3>, LeakyReLU<>, Conv2d<4, 3, 3>, Tanh<>,
                         Conv2d<3, 1, 1>, Sigmoid<>>;
  Rng rng(7);
  const auto x = random_tensor(Shape::nchw(2, 2, 9, 11), rng);
  Network<Net> net;
  const std::vector<float> on_train_plan = net.forward(x, Mode::train).to_vector();
  const std::size_t train_bytes = net.arena().bytes_planned();
  const std::vector<float> inferred = net.infer(x).to_vector();
  CHECK(net.planned_mode() == Mode::eval);
  CHECK(inferred == on_train_plan);  // bitwise: same arithmetic (no BatchNorm, so train == eval)
  CHECK(net.arena().bytes_planned() * 3 < train_bytes);
  CHECK_THROWS_WITH_AS(net.backward(Tensor<float, Cpu>(Shape::nchw(2, 1, 9, 11))), doctest::Contains("Mode::eval"),
                       kiln::Error);
  SiLU<> alone;
  Arena<Cpu> arena;
  arena.begin(Mode::eval);
  alone.plan(x.shape(), arena, "act");
  arena.finalize();
  alone.forward(x, Mode::eval);
  CHECK_THROWS_WITH_AS(alone.backward(x), doctest::Contains("Mode::eval"), kiln::Error);
}

TEST_CASE("activations: a wrong input rank names the layer and its path") {
  Tanh<> t;
  Arena<Cpu> arena;
  arena.begin();
  CHECK_THROWS_WITH_AS(t.plan(Shape{3, 4}, arena, "head.act"), doctest::Contains("Tanh at 'head.act'"), kiln::Error);
}

// ---- Dropout ----------------------------------------------------------------------------------

TEST_CASE("Dropout: train zeroes about p of the elements and scales the rest by 1/(1-p); backward uses the same mask") {
  const float p = 0.3f;
  Dropout<> d(p, 1234);
  Rng rng(3);
  const Shape s = Shape::nchw(4, 8, 32, 32);
  const auto x = random_tensor(s, rng, 0.5f, 1.5f);  // never 0, so a 0 in y is a dropped element
  const std::vector<float> y = forward_once(d, x);
  CHECK(d.step() == 1);
  std::size_t dropped = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (y[i] == 0.0f)
      ++dropped;
    else
      CHECK_MESSAGE(y[i] == x[i] * (1.0f / (1.0f - p)), "element ", i);
  }
  const double frac = double(dropped) / double(y.size());
  INFO("dropped fraction ", frac);
  CHECK(std::abs(frac - p) < 0.01);  // 32768 draws: sd 0.0025
  // backward: dy where kept, times the scale; 0 where dropped
  const auto dy = random_tensor(s, rng);
  const std::vector<float> dx = d.backward(dy).to_vector();
  for (std::size_t i = 0; i < y.size(); ++i) CHECK((y[i] == 0.0f ? 0.0f : dy[i] * (1.0f / (1.0f - p))) == dx[i]);
  // the mask is a function of (seed, step, index): every element is dropper or keeper as the hash says
  for (std::size_t i = 0; i < y.size(); i += 97) CHECK((y[i] == 0.0f) == (dropout_uniform(1234, 1, i) < p));
}

TEST_CASE("Dropout: a new mask each step, the same mask for the same (seed, step); manual_seed reproduces") {
  Rng rng(4);
  const Shape s = Shape::nchw(1, 2, 16, 16);
  const auto x = random_tensor(s, rng, 0.5f, 1.5f);
  Dropout<> a(0.5f, 77);
  Arena<Cpu> arena;
  arena.begin();
  a.plan(s, arena, "");
  arena.finalize();
  const auto y1 = a.forward(x, Mode::train).to_vector();
  const auto y2 = a.forward(x, Mode::train).to_vector();
  CHECK(y1 != y2);
  a.set_step(0);
  CHECK(a.forward(x, Mode::train).to_vector() == y1);
  Dropout<> b(0.5f, 78);
  CHECK(forward_once(b, x) != y1);
  manual_seed(5);
  Dropout<> c;
  manual_seed(5);
  Dropout<> e;
  CHECK(c.seed() == e.seed());
  CHECK(c.p() == 0.5f);  // PyTorch's default
}

TEST_CASE("Dropout: the identity in eval (no memory in an eval plan), p = 0 and p = 1, bad p") {
  Rng rng(5);
  const Shape s = Shape::nchw(2, 3, 5, 7);
  const auto x = random_tensor(s, rng);
  {
    Dropout<> d(0.5f, 1);
    Arena<Cpu> arena;
    arena.begin(Mode::eval);
    d.plan(s, arena, "");
    arena.finalize();
    CHECK(arena.bytes_planned() == 0);
    CHECK(&d.forward(x, Mode::eval) == &x);  // pass-through
    CHECK(d.step() == 0);
  }
  {
    Dropout<> d(0.5f, 1);  // eval forward on a train plan: a copy in its buffer, backward the identity
    Arena<Cpu> arena;
    arena.begin(Mode::train);
    d.plan(s, arena, "");
    arena.finalize();
    const auto& y = d.forward(x, Mode::eval);
    CHECK(&y != &x);
    CHECK(y.to_vector() == x.to_vector());
    CHECK(d.backward(x).to_vector() == x.to_vector());
  }
  {
    Dropout<> d(0.0f, 1);
    CHECK(forward_once(d, x) == x.to_vector());
  }
  {
    Dropout<> d(1.0f, 1);
    for (float v : forward_once(d, x)) CHECK(v == 0.0f);
  }
  CHECK_THROWS_WITH_AS(Dropout<>(1.5f), doctest::Contains("between 0 and 1"), kiln::Error);
  CHECK_THROWS_WITH_AS(Dropout<>(-0.1f), doctest::Contains("between 0 and 1"), kiln::Error);
}

TEST_CASE("Dropout: gradient matches finite differences (fixed mask)") {
  FixedMaskDropout d;
  check_gradients(d, Shape::nchw(2, 3, 4, 5), 6);
}

TEST_CASE("Dropout in a network: train plan trains, infer is the network without it") {
  using WithDropout = Sequential<Conv2d<1, 4, 3>, ReLU<>, Dropout<>, Conv2d<4, 1, 3>>;
  using Without = Sequential<Conv2d<1, 4, 3>, ReLU<>, Conv2d<4, 1, 3>>;
  manual_seed(11);
  Network<WithDropout> a;
  manual_seed(11);
  Network<Without> b;
  // same weights: copy parameters in visiting order
  std::vector<Tensor<float, Cpu>*> pa, pb;
  a.visit([&](StateRef<Cpu> r) { pa.push_back(r.value); });
  b.visit([&](StateRef<Cpu> r) { pb.push_back(r.value); });
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) copy(*pa[i], *pb[i]);
  Rng rng(12);
  const auto x = random_tensor(Shape::nchw(2, 1, 8, 9), rng);
  CHECK(a.infer(x).to_vector() == b.infer(x).to_vector());
  const auto y = a.forward(x, Mode::train).to_vector();
  CHECK(y != b.infer(x).to_vector());
  a.zero_grad();
  a.backward(random_tensor(Shape::nchw(2, 1, 8, 9), rng));
  double norm = 0;
  a.visit([&](StateRef<Cpu> r) {
    for (float g : r.grad->span()) norm += double(g) * g;
  });
  CHECK(norm > 0.0);
}

// ---- strided Conv2d -------------------------------------------------------------------------

TEST_CASE("Conv2d stride 2/3: output size as PyTorch (padding K/2) and equal to the stride-1 output subsampled") {
  Conv2d<2, 3, 3, Cpu, 2> s2;
  Conv2d<2, 3, 3> s1;
  copy(s1.weight().value, s2.weight().value);
  copy(s1.bias().value, s2.bias().value);
  Rng rng(8);
  const auto x = random_tensor(Shape::nchw(2, 2, 7, 6), rng);
  Arena<Cpu> arena;
  arena.begin();
  // torch: floor((H + 2*1 - 3) / 2) + 1: 7 -> 4, 6 -> 3
  CHECK(s2.plan(x.shape(), arena, "") == Shape::nchw(2, 3, 4, 3));
  s1.plan(x.shape(), arena, "");
  arena.finalize();
  const auto& y2 = s2.forward(x, Mode::train);
  const auto& y1 = s1.forward(x, Mode::train);
  double worst = 0;
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t o = 0; o < 3; ++o)
      for (std::int64_t i = 0; i < 4; ++i)
        for (std::int64_t j = 0; j < 3; ++j)
          worst = std::max(worst, double(std::abs(y2.at(n, o, i, j) - y1.at(n, o, 2 * i, 2 * j))));
  CHECK(worst < 1e-5);
  Conv2d<1, 1, 5, Cpu, 3> s3;
  Arena<Cpu> a3;
  a3.begin();
  CHECK(s3.plan(Shape::nchw(1, 1, 10, 9), a3, "") == Shape::nchw(1, 1, 4, 3));  // (10+4-5)/3+1, (9+4-5)/3+1
  CHECK(Conv2d<1, 1, 3, Cpu, 2>::stride == 2);
  CHECK(Conv2d<1, 1, 3>::stride == 1);
}

TEST_CASE("Conv2d stride > 1: gradients match finite differences") {
  {
    Conv2d<2, 3, 3, Cpu, 2> c;
    check_gradients(c, Shape::nchw(2, 2, 7, 6), 21);
  }
  {
    Conv2d<3, 2, 1, Cpu, 2> c;
    check_gradients(c, Shape::nchw(1, 3, 5, 8), 22);
  }
  {
    Conv2d<1, 2, 5, Cpu, 3> c;
    check_gradients(c, Shape::nchw(2, 1, 10, 9), 23);
  }
}

TEST_CASE("Conv2d stride 2 in a network: an encoder that halves the image, eval plan, state_dict names as stride 1") {
  using Net =
      Sequential<Conv2d<1, 4, 3, Cpu, 2>, LeakyReLU<>, Conv2d<4, 8, 3, Cpu, 2>, SiLU<>, Upsample<4>, Conv2d<8, 1, 1>>;
  Network<Net> net;
  Rng rng(9);
  const auto x = random_tensor(Shape::nchw(1, 1, 16, 12), rng);
  const auto y = net.forward(x, Mode::train).to_vector();
  CHECK(net.output_shape() == Shape::nchw(1, 1, 16, 12));
  net.zero_grad();
  net.backward(random_tensor(Shape::nchw(1, 1, 16, 12), rng));
  CHECK(net.infer(x).to_vector() == y);
  std::vector<std::string> names;
  net.visit([&](StateRef<Cpu> r) { names.push_back(r.name); });
  CHECK(names.front() == "0.weight");
  // the receptive field follows the stride (alignment = total stride 4)
  CHECK(ReceptiveField<Net>::alignment == 4);
}

// ---- Tensor::clone, aliasing, element-wise helpers ---------------------------------------------

TEST_CASE("Tensor: copies alias, clone() is a deep copy that owns its memory") {
  auto a = tensor({1, 2, 3});
  Tensor<float, Cpu> alias = a;  // same memory
  auto deep = a.clone();
  a[0] = 10.0f;
  CHECK(alias[0] == 10.0f);
  CHECK(deep[0] == 1.0f);
  CHECK(deep.owns_memory());
  CHECK(deep.data() != a.data());
  CHECK(deep.shape() == a.shape());
  std::vector<float> backing = {5, 6};
  auto view = Tensor<float, Cpu>::view(backing.data(), Shape{2});
  auto owned = view.clone();
  backing[0] = 0.0f;
  CHECK(!view.owns_memory());
  CHECK(owned.owns_memory());
  CHECK(owned[0] == 5.0f);
  CHECK(Tensor<float, Cpu>().clone().empty());
}

TEST_CASE("forward() returns a view into the arena that the next forward overwrites; clone() keeps it") {
  Network<Sequential<Conv2d<1, 2, 3>, Tanh<>>> net;
  Rng rng(10);
  const auto x1 = random_tensor(Shape::nchw(1, 1, 5, 5), rng), x2 = random_tensor(Shape::nchw(1, 1, 5, 5), rng);
  const auto& ref = net.forward(x1, Mode::train);
  const Tensor<float, Cpu> copy_of_ref = ref;  // aliases the arena too
  const auto kept = ref.clone();
  const auto first = ref.to_vector();
  CHECK(!ref.owns_memory());
  net.forward(x2, Mode::train);
  CHECK(ref.to_vector() != first);          // overwritten
  CHECK(copy_of_ref.to_vector() != first);  // so is the alias
  CHECK(kept.to_vector() == first);         // the clone is not
}

TEST_CASE("element-wise helpers: add, sub, mul, scale, affine, clamp (in place too), shape checks") {
  const auto a = tensor({1, -2, 3, 0.5f}), b = tensor({0.5f, 4, -1, 2});
  Tensor<float, Cpu> out(a.shape());
  add(a, b, out);
  CHECK(out.to_vector() == std::vector<float>{1.5f, 2, 2, 2.5f});
  sub(a, b, out);
  CHECK(out.to_vector() == std::vector<float>{0.5f, -6, 4, -1.5f});
  mul(a, b, out);
  CHECK(out.to_vector() == std::vector<float>{0.5f, -8, -3, 1});
  scale(a, 2.0f, out);
  CHECK(out.to_vector() == std::vector<float>{2, -4, 6, 1});
  affine(a, 2.0f, 1.0f, out);
  CHECK(out.to_vector() == std::vector<float>{3, -3, 7, 2});
  clamp(a, -1.0f, 1.0f, out);
  CHECK(out.to_vector() == std::vector<float>{1, -1, 1, 0.5f});
  auto c = a.clone();
  clamp(c, 0.0f, 2.0f, c);  // in place
  CHECK(c.to_vector() == std::vector<float>{1, 0, 2, 0.5f});
  CHECK(added(a, b).to_vector() == std::vector<float>{1.5f, 2, 2, 2.5f});
  CHECK(scaled(a, -1.0f).to_vector() == std::vector<float>{-1, 2, -3, -0.5f});
  CHECK(clamped(a, 0.0f, 1.0f).to_vector() == std::vector<float>{1, 0, 1, 0.5f});
  auto nan = tensor({std::nanf("")});
  CHECK(std::isnan(clamped(nan, 0.0f, 1.0f)[0]));  // torch.clamp keeps NaN
  Tensor<float, Cpu> wrong(Shape{3});
  CHECK_THROWS_WITH_AS(add(a, b, wrong), doctest::Contains("no broadcasting"), kiln::Error);
  CHECK_THROWS_WITH_AS(mul(a, wrong, out), doctest::Contains("differ in shape"), kiln::Error);
  CHECK_THROWS_WITH_AS(clamp(a, 1.0f, 0.0f, out), doctest::Contains("above hi"), kiln::Error);
}
