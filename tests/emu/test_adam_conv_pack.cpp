// Adam fused with the convolutions' TF32 packings (kernels/adam_conv_pack.cuh, Backend<Cuda>::
// adam_step_multi, core/conv_packing.hpp): the same bits as the unfused update followed by the
// forward's batched packing; the update guard; the shapes and settings it leaves to the forward;
// a network's training steps with and without it; and the record's life: whatever may write the
// weights or the workspace after the optimizer makes the next forward pack again (visit, an eval
// forward, a changed plan), and a write behind the record's back is caught by these checks
// (deliberate bug).
#include <doctest/doctest.h>

#include <bit>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "emu/kernel_cases.hpp"
#include "emu/launch_log.hpp"
#include "kiln/models/unet.hpp"

namespace {

using kiln::ConvShape;
using kiln::Cuda;
using kiln::Shape;
using kiln::Tensor;
using B = kiln::Backend<Cuda>;
using T = Tensor<float, Cuda>;
namespace tp = kiln::cuda::kernels::tf32_forward;

std::vector<std::uint32_t> bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = std::bit_cast<std::uint32_t>(v[i]);
  return out;
}

class OptimizerPackingScope {
 public:
  explicit OptimizerPackingScope(bool on) : saved_(kiln::cuda::optimizer_packing()) {
    kiln::cuda::set_optimizer_packing(on);
  }
  ~OptimizerPackingScope() { kiln::cuda::set_optimizer_packing(saved_); }
  OptimizerPackingScope(const OptimizerPackingScope&) = delete;
  OptimizerPackingScope& operator=(const OptimizerPackingScope&) = delete;

 private:
  bool saved_;
};

// One convolution's weights, gradient, moments and training workspace (random, so its split-K
// counters are not zero), twice: one copy for the fused update, one for the unfused path.
struct Conv {
  ConvShape s;
  T w, g, m, v, ws;
  kiln::ConvPacking<Cuda> packing;
  Conv(const ConvShape& shape, kiln::Rng& rng) : s(shape) {
    const Shape ws_shape{s.c_out, s.c_in, s.k, s.k};
    w = T::from_host(ws_shape, kiln_test::random_vector(ws_shape.numel(), rng));
    g = T::from_host(ws_shape, kiln_test::random_vector(ws_shape.numel(), rng));
    m = T::from_host(ws_shape, kiln_test::random_vector(ws_shape.numel(), rng, -0.1f, 0.1f));
    v = T::from_host(ws_shape, kiln_test::random_vector(ws_shape.numel(), rng, 0.0f, 0.1f));
    const Shape work{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1};
    ws = T::from_host(work, kiln_test::random_vector(work.numel(), rng));
    packing = {s, &w, &ws};
  }
  Conv(const Conv& other)
      : s(other.s), w(other.w.clone()), g(other.g.clone()), m(other.m.clone()), v(other.v.clone()),
        ws(other.ws.clone()), packing{s, &w, &ws} {}
};

// Adam on `convs` with their packings (fused where the backend takes them), or without (the
// multi-tensor update, then the forward's batched packing of them); the kernels launched.
std::set<std::string> adam_step(std::vector<Conv>& convs, int step, bool fused) {
  std::vector<B::AdamTensors> list;
  std::vector<kiln::ConvPacking<Cuda>*> registered;
  for (Conv& c : convs) {
    list.push_back({&c.w, &c.g, &c.m, &c.v, fused ? &c.packing : nullptr});
    registered.push_back(&c.packing);
  }
  kiln_test::record_launches(true);
  B::adam_step_multi(kiln_test::adam_case_args(step), list);
  if (!fused) B::conv2d_pack_forwards(registered);
  kiln_test::record_launches(false);
  return kiln_test::launched_kernels();
}

void check_same_bits(std::vector<Conv>& a, std::vector<Conv>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("convolution ", i, ": ", a[i].s.c_in, " -> ", a[i].s.c_out, ", k ", a[i].s.k);
    CHECK(bits(a[i].w.to_vector()) == bits(b[i].w.to_vector()));
    CHECK(bits(a[i].m.to_vector()) == bits(b[i].m.to_vector()));
    CHECK(bits(a[i].v.to_vector()) == bits(b[i].v.to_vector()));
    CHECK(bits(a[i].ws.to_vector()) == bits(b[i].ws.to_vector()));  // both packings, both counter sets, the rest
  }
}

std::vector<ConvShape> assorted_shapes(int count) {
  std::vector<ConvShape> shapes;
  const int channels[] = {16, 32, 48, 64};
  for (int i = 0; i < count; ++i)
    shapes.push_back({2, channels[i % 4], channels[(i / 4 + i) % 4], 6 + i % 3, 5, i % 3 == 2 ? 1 : 3});
  return shapes;
}

// `count` convolutions of assorted shapes, twice: one set for the fused update, one for it apart.
std::pair<std::vector<Conv>, std::vector<Conv>> twin_convs(int count, kiln::Rng& rng) {
  std::vector<Conv> fused;
  for (const ConvShape& s : assorted_shapes(count)) fused.emplace_back(s, rng);
  std::vector<Conv> apart(fused.begin(), fused.end());
  return {std::move(fused), std::move(apart)};
}

}  // namespace

// (Bits, as on a GPU where nvcc compiles both kernels alike: on the emulator both compile in this
// unit, at its flags; in kiln_cuda_once at -O3 the host compiler contracted adam_update's
// multiply-adds otherwise, so neither kernel is in include/kiln/cuda/separate.hpp's list.)
TEST_CASE("adam_conv_pack_kernel: Adam's bits and the forward's packings' bits, in one pass") {
  kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
  kiln::Rng rng(501);
  // Two launches (24 per launch); OS-thread mode (the ThreadSanitizer build) runs a few.
  auto [fused, apart] = twin_convs(KILN_EMU_THREADS ? 3 : 27, rng);
  for (int step = 1; step <= 3; ++step) {
    INFO("step ", step);
    const auto fused_kernels = adam_step(fused, step, true), apart_kernels = adam_step(apart, step, false);
    CHECK(fused_kernels == std::set<std::string>{"adam_conv_pack_kernel"});
    CHECK(apart_kernels.count("adam_multi_tensor_kernel") == 1);
    CHECK(apart_kernels.count("conv2d_mma_pack_batch_kernel") == 1);
    check_same_bits(fused, apart);
    for (const Conv& c : fused) CHECK(B::conv2d_packed_current(c.packing));
  }
}

TEST_CASE("adam_conv_pack_kernel under the update guard: the weights kept, packed as they are") {
  kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
  kiln::Rng rng(503);
  auto [fused, apart] = twin_convs(KILN_EMU_THREADS ? 2 : 5, rng);
  std::vector<std::vector<float>> before;
  for (const Conv& c : fused) before.push_back(c.w.to_vector());
  const auto flag = Tensor<std::int32_t, Cuda>::from_host(Shape{1}, std::vector<std::int32_t>{1});
  kiln::cuda::set_update_guard(reinterpret_cast<const unsigned*>(flag.data()));
  adam_step(fused, 1, true);
  adam_step(apart, 1, false);
  kiln::cuda::set_update_guard(nullptr);
  check_same_bits(fused, apart);
  for (std::size_t i = 0; i < fused.size(); ++i) CHECK(bits(fused[i].w.to_vector()) == bits(before[i]));
}

TEST_CASE("Adam leaves to the forward the convolutions the fused kernel does not take") {
  kiln::Rng rng(505);
  auto fused_kernel_ran = [](std::vector<Conv>& convs) {
    return adam_step(convs, 1, true).count("adam_conv_pack_kernel") == 1;
  };
  SUBCASE("shapes: Cin 1 (the first layer), Cout 2 (the head), Cin 24 (a channel tail)") {
    kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
    std::vector<Conv> convs;
    for (const ConvShape& s :
         {ConvShape{2, 1, 16, 8, 8, 3}, ConvShape{2, 16, 2, 8, 8, 1}, ConvShape{2, 24, 32, 8, 8, 3}})
      convs.emplace_back(s, rng);
    CHECK(!fused_kernel_ran(convs));
    for (const Conv& c : convs) CHECK(!c.packing.packed_by_optimizer());
  }
  SUBCASE("strict fp32 and BF16: no TF32 packings to keep") {
    std::vector<Conv> convs;
    {
      kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);  // a TF32 training workspace
      convs.emplace_back(ConvShape{2, 16, 32, 8, 8, 3}, rng);
    }
    for (const auto mode : {kiln::cuda::MathMode::strict_fp32, kiln::cuda::MathMode::bf16}) {
      kiln::cuda::MathModeScope math(mode);
      CHECK(!fused_kernel_ran(convs));
      CHECK(!convs[0].packing.packed_by_optimizer());
    }
  }
  SUBCASE("no room for both packings (a workspace planned for eval)") {
    kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
    std::vector<Conv> convs;
    convs.emplace_back(ConvShape{2, 16, 32, 8, 8, 3}, rng);
    convs[0].ws = T(Shape{static_cast<std::int64_t>(B::conv2d_forward_workspace_floats(convs[0].s)) + 1});
    CHECK(!fused_kernel_ran(convs));
  }
  SUBCASE("the optimizer's packing turned off") {
    kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
    OptimizerPackingScope off(false);
    std::vector<Conv> convs;
    convs.emplace_back(ConvShape{2, 16, 32, 8, 8, 3}, rng);
    CHECK(!fused_kernel_ran(convs));
  }
}

// The record names the plans: a forward under another preference (here wgmma vs mma.sync, whose
// tiles, slices and counters differ on this shape) finds it stale and packs again.
TEST_CASE("the optimizer's record is stale under another forward plan") {
  kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
  const ConvShape s{16, 256, 512, 8, 8, 3};  // UNet<1, 2, 32, 4>'s bottleneck.conv1 at 128 x 128
  T w(Shape{s.c_out, s.c_in, 3, 3}), ws(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1});
  kiln::ConvPacking<Cuda> packing{s, &w, &ws};
  std::array<std::uint64_t, 4> on_wgmma{}, on_mma{};
  {
    tp::PreferenceScope scope(tp::Preference::wgmma);
    on_wgmma = B::optimizer_packing_key(packing);
  }
  {
    tp::PreferenceScope scope(tp::Preference::mma_sync);
    on_mma = B::optimizer_packing_key(packing);
  }
  CHECK(on_wgmma[0] != 0);
  CHECK(on_mma[0] != 0);
  CHECK(on_wgmma != on_mma);
  packing.optimizer_packed = on_mma;
  tp::PreferenceScope scope(tp::Preference::wgmma);
  CHECK(!B::conv2d_packed_current(packing));
}

namespace {

// Depth 1 on 2 x 2 images: every convolution of a width-16 U-Net at the fewest blocks, 6 of them
// packed by Adam (both kernel sizes); whole networks are the sanitizer stage's slowest tests.
using Net = kiln::Network<kiln::UNet<1, 2, 16, 1, Cuda>>;

struct Trainer {
  Net net;
  kiln::Adam<Cuda> opt;
  explicit Trainer(kiln::Rng& rng) : opt(init(net, rng)) {}
  static std::vector<kiln::ParameterSlot<Cuda>> init(Net& net, kiln::Rng& rng) {
    net.reset_parameters(rng);
    return kiln::collect_parameters(net);
  }
  std::vector<float> step(const T& x, const T& dy) {
    opt.zero_grad();
    auto y = net.forward(x, kiln::Mode::train).to_vector();
    net.backward(dy);
    opt.step();
    return y;
  }
};

// The parameters through the optimizer's slots (a visit would forget the optimizer's records).
std::vector<std::vector<float>> parameters_of(const Trainer& t) {
  std::vector<std::vector<float>> out;
  for (const auto& slot : t.opt.parameters()) out.push_back(slot.value->to_vector());
  return out;
}

}  // namespace

// (Batch 2 of Net's 2 x 2 images; whole networks are too slow in OS-thread mode, as in
// test_step_graph.cpp.)
TEST_CASE("a network's training steps with the optimizer's packing: the bits of the steps without it") {
  if (KILN_EMU_THREADS) return;
  kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
  kiln::Rng rng(507), same(507);
  Trainer with(rng), without(same);
  const Shape in = Shape::nchw(2, 1, 2, 2), out = Shape::nchw(2, 2, 2, 2);
  kiln::Rng data(509);
  const auto x = T::from_host(in, kiln_test::random_vector(in.numel(), data));
  const auto dy = T::from_host(out, kiln_test::random_vector(out.numel(), data));
  for (int step = 1; step <= 2; ++step) {  // the second step's forward runs on Adam's packings
    INFO("step ", step);
    kiln_test::record_launches(true);
    const auto y_with = with.step(x, dy);
    kiln_test::record_launches(false);
    const auto kernels = kiln_test::launched_kernels();
    std::vector<float> y_without;
    {
      OptimizerPackingScope off(false);
      kiln_test::record_launches(true);
      y_without = without.step(x, dy);
      kiln_test::record_launches(false);
    }
    const auto kernels_without = kiln_test::launched_kernels();
    CHECK(kernels.count("adam_conv_pack_kernel") == 1);
    CHECK(kernels_without.count("adam_conv_pack_kernel") == 0);
    CHECK(bits(y_with) == bits(y_without));
    const auto a = parameters_of(with), b = parameters_of(without);
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(bits(a[i]) == bits(b[i]));
  }
}

// One network through the four writes in turn (a step before each sets the records again); the
// deliberate bug first, while the two networks' weights are far apart.
TEST_CASE("after the optimizer's packing, a write to the weights makes the next forward pack again") {
  if (KILN_EMU_THREADS) return;
  kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
  kiln::Rng rng(511), other(513);
  Trainer trained(rng);
  Net fresh;  // other weights, never packed by an optimizer
  fresh.reset_parameters(other);
  const Shape in = Shape::nchw(2, 1, 2, 2), out = Shape::nchw(2, 2, 2, 2);
  kiln::Rng data(515);
  const auto x = T::from_host(in, kiln_test::random_vector(in.numel(), data));
  const auto dy = T::from_host(out, kiln_test::random_vector(out.numel(), data));
  const auto want = fresh.forward(x, kiln::Mode::train).to_vector();
  const auto slots = trained.opt.parameters();  // pointers kept from before the steps
  auto step = [&] {
    trained.step(x, dy);
    int packed = 0;
    for (const auto& slot : slots) packed += slot.packing != nullptr && slot.packing->packed_by_optimizer() ? 1 : 0;
    CHECK(packed == 6);  // Net: every convolution but the first and the head
  };
  auto write_fresh_parameters = [&] {
    std::size_t i = 0;
    fresh.visit([&](kiln::StateRef<Cuda> r) {
      if (r.kind == kiln::StateRef<Cuda>::Kind::parameter) slots.at(i++).value->copy_from_host(r.value->to_vector());
    });
  };
  auto train_forward = [&] { return trained.net.forward(x, kiln::Mode::train).to_vector(); };

  step();  // through a kept slot without parameter_written: the forward runs on the old packings (deliberate bug)
  write_fresh_parameters();
  const double error = kiln_test::normalised_error(train_forward(), want);
  MESSAGE("normalised error of a forward on the old weights' packings: ", error);
  CHECK(error > 0.1);

  step();  // through a kept slot, then parameter_written
  write_fresh_parameters();
  for (const auto& slot : slots) kiln::parameter_written(slot);
  CHECK(bits(train_forward()) == bits(want));

  step();  // through visit (checkpoints, copy_state)
  kiln_test::copy_state(fresh, trained.net);
  CHECK(bits(train_forward()) == bits(want));

  step();  // an eval forward in between (its plan reuses the workspaces)
  trained.net.forward(x, kiln::Mode::eval);
  Net copy;
  std::size_t i = 0;
  copy.visit([&](kiln::StateRef<Cuda> r) {
    if (r.kind == kiln::StateRef<Cuda>::Kind::parameter) r.value->copy_from_host(slots.at(i++).value->to_vector());
  });
  CHECK(bits(train_forward()) == bits(copy.forward(x, kiln::Mode::train).to_vector()));
}
