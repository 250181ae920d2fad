#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "kiln/kiln.hpp"
#include "kiln/models/unet.hpp"

// ---- counting heap allocations -------------------------------------------------------------
// The global operator new of the whole test binary is replaced here; it counts only while
// g_counting is set (the rest of the binary is unaffected). GCC warns that the replaced
// operator delete calls free() on memory from "operator new": the replacement pair below is
// malloc/free on both sides, so the warning does not apply here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

void* counted_alloc(std::size_t n, std::size_t align = 0) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p =
      align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align) : std::malloc(n);
  return p;
}
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, std::size_t(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, std::size_t(a))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, std::size_t(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, std::size_t(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

using namespace kiln;

namespace {
struct CountAllocations {
  CountAllocations() {
    g_allocations = 0;
    g_counting = true;
  }
  ~CountAllocations() { g_counting = false; }
  long count() const { return g_allocations.load(); }
};

// The 14 state_dict entries of a ConvBlock, in PyTorch's order.
std::vector<std::string> block(const std::string& p) {
  return {p + ".conv1.weight",
          p + ".conv1.bias",
          p + ".bn1.weight",
          p + ".bn1.bias",
          p + ".bn1.running_mean",
          p + ".bn1.running_var",
          p + ".bn1.num_batches_tracked",
          p + ".conv2.weight",
          p + ".conv2.bias",
          p + ".bn2.weight",
          p + ".bn2.bias",
          p + ".bn2.running_mean",
          p + ".bn2.running_var",
          p + ".bn2.num_batches_tracked"};
}
}  // namespace

static_assert(UNet<1, 2, 32, 4>::parameter_count == 7243202);
static_assert(UNet<1, 2, 32, 4>::size_multiple == 16);

TEST_CASE("UNet: the reference size has 7,243,202 parameters, at compile time and when visited") {
  auto net = std::make_unique<UNet<1, 2, 32, 4>>();
  CHECK(count_parameters(*net) == 7243202);
}

TEST_CASE("UNet: state names in PyTorch's state_dict order") {
  UNet<1, 2, 4, 2> net;
  std::vector<std::string> names;
  net.visit([&](StateRef<Cpu> r) { names.push_back(r.name); }, "");
  std::vector<std::string> expected;
  for (const auto& part : {block("down.0"), block("down.1"), block("bottleneck")})
    expected.insert(expected.end(), part.begin(), part.end());
  expected.push_back("up.0.reduce.weight");
  expected.push_back("up.0.reduce.bias");
  for (const auto& n : block("up.0")) expected.push_back(n);
  expected.push_back("up.1.reduce.weight");
  expected.push_back("up.1.reduce.bias");
  for (const auto& n : block("up.1")) expected.push_back(n);
  expected.push_back("head.weight");
  expected.push_back("head.bias");
  REQUIRE(expected.size() == 76);
  CHECK(names == expected);

  // Shapes of a few, as PyTorch's (c_0 = 4, c_1 = 8, bottleneck 16).
  std::map<std::string, Shape> shapes;
  net.visit(
      [&](StateRef<Cpu> r) {
        if (r.value) shapes[r.name] = r.value->shape();
      },
      "");
  CHECK(shapes["down.0.conv1.weight"] == Shape{4, 1, 3, 3});
  CHECK(shapes["down.1.conv2.weight"] == Shape{8, 8, 3, 3});
  CHECK(shapes["bottleneck.conv1.weight"] == Shape{16, 8, 3, 3});
  CHECK(shapes["up.0.reduce.weight"] == Shape{8, 16, 1, 1});
  CHECK(shapes["up.0.conv1.weight"] == Shape{8, 16, 3, 3});
  CHECK(shapes["up.1.conv1.weight"] == Shape{4, 8, 3, 3});
  CHECK(shapes["head.weight"] == Shape{2, 4, 1, 1});
  CHECK(shapes["down.0.bn1.running_var"] == Shape{4});
}

// The U-Net runs each up level's Conv1x1 before the nearest upsample (a quarter of the pixels);
// the reference order is Upsample -> Conv1x1. Both orders must be the same function: forward
// bitwise (each output pixel is the same dot product), all gradients to rounding.
TEST_CASE("UNet: Conv1x1 before the nearest upsample equals the reference order") {
  using Reference = Sequential<Upsample<2, UpsampleMode::nearest>, Conv2d<6, 3, 1>>;
  using Reordered = Sequential<Conv2d<6, 3, 1>, Upsample<2, UpsampleMode::nearest>>;
  Reference ref;
  Reordered fast;
  Rng rng(21);
  ref.get<1>().reset_parameters(rng);
  copy(fast.get<0>().weight().value, ref.get<1>().weight().value);
  copy(fast.get<0>().bias().value, ref.get<1>().bias().value);
  const Shape in = Shape::nchw(3, 6, 5, 7);
  Arena<Cpu> arena;
  arena.begin();
  const Shape out_ref = ref.plan(in, arena, "ref");
  const Shape out_fast = fast.plan(in, arena, "fast");
  arena.finalize();
  REQUIRE(out_ref == out_fast);
  const auto x = kiln::test::random_tensor(in, rng);
  const auto dy = kiln::test::random_tensor(out_ref, rng);
  CHECK(ref.forward(x, Mode::train).to_vector() == fast.forward(x, Mode::train).to_vector());
  zero_grad(ref);
  zero_grad(fast);
  const auto dx_ref = ref.backward(dy).to_vector();
  const auto dx_fast = fast.backward(dy).to_vector();
  CHECK(kiln::test::relative_error(dx_fast, dx_ref) < 1e-6);
  CHECK(kiln::test::relative_error(fast.get<0>().weight().grad.to_vector(), ref.get<1>().weight().grad.to_vector()) <
        1e-6);
  CHECK(kiln::test::relative_error(fast.get<0>().bias().grad.to_vector(), ref.get<1>().bias().grad.to_vector()) < 1e-6);
}

TEST_CASE("UNet: output shape and the size-multiple error") {
  Network<UNet<1, 2, 4, 2>> net;
  Rng rng(1);
  net.reset_parameters(rng);
  auto x = kiln::test::random_tensor(Shape::nchw(3, 1, 8, 12), rng);
  CHECK(net.forward(x, Mode::train).shape() == Shape::nchw(3, 2, 8, 12));
  CHECK(net.forward(x, Mode::eval).shape() == Shape::nchw(3, 2, 8, 12));
  auto bad = kiln::test::random_tensor(Shape::nchw(1, 1, 6, 8), rng);
  CHECK_THROWS_WITH_AS(net.forward(bad, Mode::train), doctest::Contains("must be a multiple of 4"), kiln::Error);
  auto wrong_channels = kiln::test::random_tensor(Shape::nchw(1, 3, 8, 8), rng);
  CHECK_THROWS_WITH_AS(net.forward(wrong_channels, Mode::train), doctest::Contains("[N, 1, H, W]"), kiln::Error);
}

TEST_CASE("UNet: gradients match finite differences in train mode (UNet<1,2,2,2>, 2x1x4x8)") {
  // Train mode: a conv bias followed by BatchNorm has an exactly zero gradient (the batch mean
  // removes it), which no relative error can compare (tests/gradcheck.hpp's check_gradients
  // fails on them for that reason alone); those are checked to be ~0, every other parameter and
  // the input against central differences, skipping points where a ReLU/max-pool switches.
  // (An eval-mode check is not meaningful: layers keep backward state in train mode only.)
  UNet<1, 2, 2, 2> net;
  Rng rng(4);
  net.reset_parameters(rng);
  Arena<Cpu> arena;
  arena.begin();
  const Shape out = net.plan(Shape::nchw(2, 1, 4, 8), arena, "");
  arena.finalize();
  Tensor<float, Cpu> x = kiln::test::random_tensor(Shape::nchw(2, 1, 4, 8), rng);
  Tensor<float, Cpu> r = kiln::test::random_tensor(out, rng);
  auto loss = [&] {
    const auto& y = net.forward(x, Mode::train);
    double s = 0;
    for (std::size_t i = 0; i < y.numel(); ++i) s += double(y[i]) * r[i];
    return s;
  };
  zero_grad(net);
  loss();
  const std::vector<float> dx = net.backward(r).to_vector();
  const double eps = 1e-3;
  const double centre = loss();
  std::vector<float> analytic, numeric;
  int kinks = 0;
  double worst_diff = 0;
  std::string worst;
  auto probe = [&](Tensor<float, Cpu>& t, const std::vector<float>& grad, int samples, const std::string& what) {
    for (int s = 0, tries = 0; s < samples && tries < 4 * samples; ++tries) {
      const std::size_t i = rng.below(t.numel());
      const float saved = t[i];
      t[i] = saved + float(eps);
      const double up = loss();
      t[i] = saved - float(eps);
      const double down = loss();
      t[i] = saved;
      // A ReLU or max-pool switching inside [-eps, eps] leaves no derivative to compare with.
      const double fwd = (up - centre) / eps, bwd = (centre - down) / eps;
      if (std::abs(fwd - bwd) > 0.05 * std::max({std::abs(fwd), std::abs(bwd), 1e-2})) {
        ++kinks;
        continue;
      }
      ++s;
      analytic.push_back(grad[i]);
      numeric.push_back(float((up - down) / (2 * eps)));
      const double diff = std::abs(double(grad[i]) - numeric.back());
      if (diff > worst_diff) worst_diff = diff, worst = what + "[" + std::to_string(i) + "]";
    }
  };
  probe(x, dx, 8, "input");
  std::vector<std::pair<std::string, Tensor<float, Cpu>*>> params;
  std::vector<std::vector<float>> grads;
  net.visit(
      [&](StateRef<Cpu> ref) {
        if (ref.kind != StateRef<Cpu>::Kind::parameter) return;
        params.emplace_back(ref.name, ref.value);
        grads.push_back(ref.grad->to_vector());
      },
      "");
  int zero_checked = 0;
  for (std::size_t p = 0; p < params.size(); ++p) {
    const std::string& name = params[p].first;
    if (name.ends_with("conv1.bias") || name.ends_with("conv2.bias")) {
      for (float g : grads[p]) CHECK(std::abs(g) < 1e-4f);
      ++zero_checked;
    } else {
      probe(*params[p].second, grads[p], 2, name);
    }
  }
  CHECK(zero_checked == 10);
  INFO("skipped ", kinks, " coordinates at a kink");
  CHECK(analytic.size() >= 60);  // 8 input + 2 per each of the 36 other parameter tensors, few kinks
  loss();
  const double err = kiln::test::relative_error(analytic, numeric);
  INFO("relative error over ", analytic.size(), " coordinates: ", err, " (largest difference ", worst_diff, " at ",
       worst, ")");
  CHECK(err < 3e-2);
}

TEST_CASE("UNet: no heap allocation after the first training step (forward + backward)") {
  Network<UNet<1, 2, 4, 2>> net;
  Rng rng(7);
  net.reset_parameters(rng);
  auto x = kiln::test::random_tensor(Shape::nchw(2, 1, 8, 8), rng);
  auto dy = kiln::test::random_tensor(Shape::nchw(2, 2, 8, 8), rng);
  const auto slots = collect_parameters(net);
  auto step = [&] {
    for (const auto& slot : slots) slot.grad->zero();
    net.forward(x, Mode::train);
    net.backward(dy);
  };
  step();
  CountAllocations counter;
  for (int i = 2; i <= 4; ++i) step();
  CHECK(counter.count() == 0);
}

// Network::zero_grad() gathers the gradient tensors once (visit() builds names), so later
// calls allocate nothing.
TEST_CASE("UNet: Network::zero_grad() allocates nothing") {
  Network<UNet<1, 2, 4, 2>> net;
  net.zero_grad();
  CountAllocations counter;
  net.zero_grad();
  CHECK(counter.count() == 0);
}

TEST_CASE("UNet: no heap allocation after the first step with Adam (hand-written MSE gradient)") {
  Network<UNet<1, 2, 4, 2>> net;
  Rng rng(8);
  net.reset_parameters(rng);
  Adam<Cpu> adam(collect_parameters(net));
  auto x = kiln::test::random_tensor(Shape::nchw(2, 1, 8, 8), rng);
  auto target = kiln::test::random_tensor(Shape::nchw(2, 2, 8, 8), rng);
  Tensor<float, Cpu> dy(target.shape());
  auto step = [&] {
    adam.zero_grad();
    const auto& y = net.forward(x, Mode::train);
    for (std::size_t i = 0; i < y.numel(); ++i) dy[i] = 2.0f * (y[i] - target[i]) / float(y.numel());
    net.backward(dy);
    adam.step();
  };
  step();
  CountAllocations counter;
  for (int i = 2; i <= 4; ++i) step();
  CHECK(counter.count() == 0);
}

// Loss::forward copies its one float straight to the host (no temporary vector).
TEST_CASE("UNet: no heap allocation after the first step of the full loop (MSELoss + Adam)") {
  Network<UNet<1, 2, 4, 2>> net;
  Rng rng(9);
  net.reset_parameters(rng);
  Adam<Cpu> adam(collect_parameters(net));
  MSELoss<Cpu> loss;
  auto x = kiln::test::random_tensor(Shape::nchw(2, 1, 8, 8), rng);
  auto target = kiln::test::random_tensor(Shape::nchw(2, 2, 8, 8), rng);
  float first = 0, last = 0;
  auto step = [&] {
    adam.zero_grad();
    const auto& y = net.forward(x, Mode::train);
    last = loss.forward(y, target);
    net.backward(loss.backward());
    adam.step();
  };
  step();
  first = last;
  long allocations = 0;
  {
    CountAllocations counter;
    for (int i = 2; i <= 4; ++i) step();
    allocations = counter.count();
  }
  INFO("allocations in steps 2..4: ", allocations);
  CHECK(allocations == 0);
  CHECK(last < first);  // it learns
}
