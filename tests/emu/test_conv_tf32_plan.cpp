// The TF32 forward's plan (kernels/conv2d_tf32_plan.cuh) and Backend<Cuda> on it: which family
// (mma.sync or wgmma) convolves each of the U-Net's shapes by the model, the workspace that serves
// either, and the backend's forward and input gradient on wgmma (the emulator runs sm_90a code, so
// its plan is an H100's): against the same passes on mma.sync (the same products; in the same
// split-K slices on these small shapes, where both plans stop at the tail bound, so the same bits
// in practice; bounded near fp32 rounding, as other slices would sum in another order) and the CPU
// backend (TF32), the kept input-gradient packing bit for bit the repacked one, an unsplit
// workspace, and a network's step under either preference.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "emu/kernel_cases.hpp"
#include "emu/launch_log.hpp"
#include "kiln/models/unet.hpp"

namespace {

using kiln::ConvShape;
using kiln::Cuda;
using kiln::Shape;
using kiln::Tensor;
using kiln_test::normalised_error;
namespace mc = kiln::cuda::kernels::mma_conv;
namespace tp = kiln::cuda::kernels::tf32_forward;

}  // namespace

// UNet<1, 2, 32, 4> at batch 16: the forward shapes (and an input gradient's transposed one) the
// model sends to wgmma, and those it keeps on mma.sync (docs/kernels.md, "wgmma in the backend").
TEST_CASE("tf32 plan: wgmma where the model prefers it on the U-Net's shapes, on devices that run it") {
  struct Case {
    const char* name;
    ConvShape s;
    bool wgmma;
    int bn, rows, splits;
  };
  const Case cases[] = {
      // 128 x 128 crops
      {"128: down.2.conv1", {16, 64, 128, 32, 32, 3}, true, 128, 128, 1},
      {"128: down.3.conv1 (128-row tiles in 2 slices)", {16, 128, 256, 16, 16, 3}, true, 128, 128, 2},
      {"128: bottleneck.conv1 (4 slices of 128-row tiles: short ones)", {16, 256, 512, 8, 8, 3}, true, 128, 64, 2},
      {"128: down.3.conv1's input gradient", mc::transposed({16, 128, 256, 16, 16, 3}), true, 128, 64, 2},
      {"128: up.2.conv1 (64 out)", {16, 128, 64, 64, 64, 3}, false, 0, 0, 0},
      {"128: up.0.reduce (1x1)", {16, 512, 256, 16, 16, 1}, false, 0, 0, 0},
      {"128: down.0.conv1 (1 in)", {16, 1, 32, 128, 128, 3}, false, 0, 0, 0},
      // 64 x 64 crops: the deep levels on short tiles
      {"64: up.1.conv1", {16, 256, 128, 16, 16, 3}, true, 128, 64, 2},
      {"64: down.2.conv2", {16, 128, 128, 16, 16, 3}, true, 128, 64, 2},
      {"64: bottleneck.conv2", {16, 512, 512, 4, 4, 3}, true, 128, 64, 8},
      {"64: up.2.conv1 (64 out)", {16, 128, 64, 32, 32, 3}, false, 0, 0, 0},
      // 256 x 256 crops: 128 x 256 tiles where they give 100 blocks or more
      {"256: down.3.conv2", {16, 256, 256, 32, 32, 3}, true, 256, 128, 1},
      {"256: up.1.conv1", {16, 256, 128, 64, 64, 3}, true, 128, 128, 1},
      // a 128-row plan in 2 slices of fewer than 32 k steps (50 tiles, Cin 48: 27 k steps): mma.sync
      {"2 slices of 13 k steps", {16, 48, 128, 20, 20, 3}, false, 0, 0, 0},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    CHECK(tp::wgmma_preferred(c.s) == c.wgmma);
    const tp::Plan on_h100 = tp::plan(c.s, true), elsewhere = tp::plan(c.s, false);
    CHECK(on_h100.wgmma == c.wgmma);
    CHECK(elsewhere == tp::mma_plan(c.s));
    if (c.wgmma) {
      CHECK(on_h100.bn == c.bn);
      CHECK(on_h100.rows == c.rows);
      CHECK(on_h100.splits == c.splits);
    } else {
      CHECK(on_h100 == elsewhere);
    }
    // One workspace for either device: both plans fit, the kept input-gradient packing past both.
    CHECK(tp::workspace_floats(c.s) >= tp::workspace_floats(c.s, tp::mma_plan(c.s)));
    if (tp::wgmma_takes(c.s)) CHECK(tp::workspace_floats(c.s) >= tp::workspace_floats(c.s, tp::wgmma_plan(c.s)));
    CHECK(tp::dgrad_offset(c.s) >= tp::workspace_floats(c.s));
    CHECK(tp::dgrad_offset(c.s) % 4 == 0);
    CHECK(tp::kept_workspace_floats(c.s) == tp::dgrad_offset(c.s) + tp::workspace_floats(mc::transposed(c.s)));
  }
  // The preference: mma.sync only, or wgmma wherever it takes the shape (3 x 3, Cin >= 16).
  const ConvShape narrow_tiles{16, 128, 64, 32, 32, 3};  // up.2.conv1 at 64 x 64
  {
    tp::PreferenceScope wgmma(tp::Preference::wgmma);
    CHECK(tp::plan(narrow_tiles, true).wgmma);
    CHECK(!tp::plan({16, 512, 256, 16, 16, 1}, true).wgmma);
    CHECK(!tp::plan(narrow_tiles, false).wgmma);
  }
  {
    tp::PreferenceScope mma_sync(tp::Preference::mma_sync);
    CHECK(!tp::plan({16, 64, 128, 32, 32, 3}, true).wgmma);
  }
  CHECK(tp::preference() == tp::Preference::model);
  // A workspace without room for the partial tiles: one slice.
  const ConvShape split{16, 256, 512, 8, 8, 3};
  const tp::Plan p = tp::plan(split, true);
  REQUIRE(p.splits > 1);
  CHECK(tp::fitted(split, p, tp::workspace_floats(split, p)).splits == p.splits);
  CHECK(tp::fitted(split, p, tp::workspace_floats(split, p) - 1).splits == 1);
  CHECK(tp::fitted(split, p, tp::workspace_floats(split, p) - 1).rows == 128);  // short tiles are for splits
}

#if !KILN_EMU_THREADS  // blocks of 256 OS threads in OS-thread mode (TSan): the kernel table's tiny case runs there
namespace {

// How many of the launched kernels' names are wgmma forwards (128-row or short tiles).
std::size_t wgmma_kernels(const std::set<std::string>& names) {
  return static_cast<std::size_t>(std::count_if(
      names.begin(), names.end(), [](const std::string& n) { return n.rfind("conv2d_wgmma_forward_", 0) == 0; }));
}

std::vector<std::uint32_t> bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> out;
  out.reserve(v.size());
  for (float f : v) out.push_back(std::bit_cast<std::uint32_t>(f));
  return out;
}

struct Passes {
  std::vector<float> y, dx;
  std::set<std::string> launched;
};

// One convolution's inputs, seeded (`perturb`: one weight of output channel 0 changed).
struct Data {
  ConvShape s;
  std::vector<float> x, w, b, dy;
};
Data make_data(const ConvShape& s, std::uint64_t seed, bool perturb = false) {
  kiln::Rng rng(seed);
  Data d{s, kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), rng, -2.0f, 2.0f),
         kiln_test::random_vector(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), rng),
         kiln_test::random_vector(static_cast<std::size_t>(s.c_out), rng),
         kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), rng)};
  if (perturb) d.w[0] += 0.5f;
  return d;
}

// Backend<Device>'s forward and input gradient of d, on a workspace of `floats` (0: the training
// plan's); `kept`: a training forward keeps the input gradient's packing.
template <class Device>
Passes run_on(const Data& d, std::int64_t floats = 0, bool kept = false) {
  using B = kiln::Backend<Device>;
  using T = Tensor<float, Device>;
  const ConvShape& s = d.s;
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const T x = T::from_host(xs, d.x), w = T::from_host(Shape{s.c_out, s.c_in, s.k, s.k}, d.w),
          b = T::from_host(Shape{s.c_out}, d.b), dy = T::from_host(ys, d.dy);
  T y(ys), dx(xs), no_dw, no_db,
      ws(Shape{floats > 0 ? floats
                          : std::max<std::int64_t>(1, static_cast<std::int64_t>(B::conv2d_workspace_floats(s)))});
  kiln_test::record_launches(true);
  B::conv2d_forward(s, x, w, b, y, ws);
  const kiln::ConvKept keep = kept ? B::conv2d_forward_kept(s, ws) : kiln::ConvKept::nothing;
  B::conv2d_backward(s, x, w, dy, dx, no_dw, no_db, ws, keep);
  kiln_test::record_launches(false);
  return {y.to_vector(), dx.to_vector(), kiln_test::launched_kernel_names()};
}

// ... on the emulated Cuda device under a preference.
Passes run_passes(const ConvShape& s, tp::Preference preference, std::uint64_t seed, std::int64_t floats = 0,
                  bool kept = false, bool perturb = false) {
  tp::PreferenceScope scope(preference);
  return run_on<Cuda>(make_data(s, seed, perturb), floats, kept);
}

}  // namespace

// Shapes the emulator can afford: split-K plans (a 128-pixel tile in 3 slices, its input gradient
// in 6), tiles across images with channel tails (136 outputs: a second, mostly empty column tile;
// 20 inputs), and the input gradient's transposed shape with Cin' < 16 (mma.sync's NarrowCin).
TEST_CASE("Backend<Cuda> TF32 on wgmma: forward and input gradient against mma.sync and the CPU backend") {
  kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
  const ConvShape shapes[] = {{2, 32, 128, 8, 8, 3}, {1, 20, 136, 12, 12, 3}, {2, 16, 144, 8, 8, 3}};
  std::uint64_t seed = 71;
  std::set<std::string> launched;
  for (const ConvShape& s : shapes) {
    INFO("N=" << s.n << " " << s.c_in << "->" << s.c_out << " " << s.h << "x" << s.w);
    ++seed;
    const Passes on_wgmma = run_passes(s, tp::Preference::wgmma, seed);
    const Passes on_mma = run_passes(s, tp::Preference::mma_sync, seed);
    CHECK(wgmma_kernels(on_wgmma.launched) >= 1);
    CHECK(wgmma_kernels(on_mma.launched) == 0);
    launched.insert(on_wgmma.launched.begin(), on_wgmma.launched.end());
    // the input gradient on wgmma where its transposed shape has Cin' >= 16 (all but the last)
    const bool dgrad_wgmma = tp::wgmma_takes(mc::transposed(s));
    CHECK(on_wgmma.launched.count("conv2d_mma_forward_kernel<3, 64, true>") == (dgrad_wgmma ? 0U : 1U));
    const Passes cpu = run_on<kiln::Cpu>(make_data(s, seed));
    const double y_vs_mma = normalised_error(on_wgmma.y, on_mma.y),
                 dx_vs_mma = normalised_error(on_wgmma.dx, on_mma.dx);
    MESSAGE("wgmma vs mma.sync, normalised: y ", y_vs_mma, ", dx ", dx_vs_mma);
    CHECK(y_vs_mma < 1e-6);  // the same TF32 products, summed in other slices
    CHECK(dx_vs_mma < 1e-6);
    CHECK(normalised_error(on_wgmma.y, cpu.y) < 2e-3);
    CHECK(normalised_error(on_wgmma.dx, cpu.dx) < 2e-3);
  }
  // Both wgmma tiles ran: 128-row (the third shape's forward, 2 slices) and short (the others' splits).
  CHECK(launched.count("conv2d_wgmma_forward_kernel<3, 128>") == 1);
  CHECK(launched.count("conv2d_wgmma_forward_short_kernel<3>") == 1);
  // One weight changed on the wgmma side shows in that comparison (the check can fail).
  const ConvShape s = shapes[0];
  const Passes changed = run_passes(s, tp::Preference::wgmma, 90, 0, false, true),
               mma = run_passes(s, tp::Preference::mma_sync, 90);
  const double y_changed = normalised_error(changed.y, mma.y), dx_changed = normalised_error(changed.dx, mma.dx);
  MESSAGE("one weight changed: y ", y_changed, ", dx ", dx_changed);
  CHECK(y_changed > 1e-3);
  CHECK(dx_changed > 1e-3);
}

// A training forward on wgmma packs the input gradient's weights with its own and zeroes both wgmma
// plans' counters; the backward told so runs on them: the bits of the input gradient that packs
// again. A workspace without room for the partial tiles runs unsplit, and an eval workspace too.
TEST_CASE("Backend<Cuda> TF32 on wgmma: the kept input-gradient packing, split-K and unsplit workspaces") {
  using B = kiln::Backend<Cuda>;
  kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
  const ConvShape s{2, 32, 128, 8, 8, 3};
  {
    tp::PreferenceScope scope(tp::Preference::wgmma);
    REQUIRE(tp::plan(s).wgmma);
    REQUIRE(tp::plan(s).splits > 1);
    REQUIRE(tp::plan(mc::transposed(s)).wgmma);
    REQUIRE(tp::plan(mc::transposed(s)).splits > 1);
  }
  const Passes kept = run_passes(s, tp::Preference::wgmma, 5, 0, true);
  const Passes repacked = run_passes(s, tp::Preference::wgmma, 5, 0, false);
  CHECK(kept.launched.count("conv2d_mma_pack_weights_both_kernel<3>") == 1);
  CHECK(kept.launched.count("conv2d_mma_pack_weights_dgrad_kernel<3>") == 0);
  CHECK(repacked.launched.count("conv2d_mma_pack_weights_dgrad_kernel<3>") == 1);
  CHECK(bits(kept.y) == bits(repacked.y));
  CHECK(bits(kept.dx) == bits(repacked.dx));
  // Room for the packed weights only: unsplit, the same sums up to their order.
  const std::int64_t packed_only = std::max(mc::packed_weight_floats(s), mc::packed_dgrad_weight_floats(s));
  const Passes unsplit = run_passes(s, tp::Preference::wgmma, 5, packed_only);
  CHECK(unsplit.launched.count("conv2d_wgmma_forward_kernel<3, 128>") == 1);  // unsplit: the 128-row tile
  CHECK(normalised_error(unsplit.y, kept.y) < 1e-6);
  CHECK(normalised_error(unsplit.dx, kept.dx) < 1e-6);
  // An eval workspace holds the wgmma plan's split-K tiles too.
  CHECK(static_cast<std::int64_t>(B::conv2d_forward_workspace_floats(s)) >= tp::workspace_floats(s, tp::wgmma_plan(s)));
}

// A small U-Net's training step (the forwards' packings in one launch, the input gradients on the
// kept packings, the weight gradients) with every 3 x 3 convolution that wgmma takes on it, against
// the same step on mma.sync only: outputs and every gradient at fp32 rounding of each other.
TEST_CASE("tf32 Network on wgmma: a training step against the same step on mma.sync") {
  using Net = kiln::Network<kiln::UNet<1, 2, 16, 2, Cuda>>;
  kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
  kiln::Rng rng(37);
  Net on_wgmma, on_mma;
  on_wgmma.reset_parameters(rng);
  kiln_test::copy_state(on_wgmma, on_mma);
  const Shape in = Shape::nchw(2, 1, 8, 8), out = Shape::nchw(2, 2, 8, 8);
  const auto x = Tensor<float, Cuda>::from_host(in, kiln_test::random_vector(in.numel(), rng));
  const auto dy = Tensor<float, Cuda>::from_host(out, kiln_test::random_vector(out.numel(), rng));
  auto step = [&](Net& net, tp::Preference p) {
    tp::PreferenceScope scope(p);
    kiln_test::record_launches(true);
    auto y = net.forward(x, kiln::Mode::train).to_vector();
    net.backward(dy);
    kiln_test::record_launches(false);
    return std::pair{y, kiln_test::launched_kernel_names()};
  };
  const auto [y_wgmma, wgmma_names] = step(on_wgmma, tp::Preference::wgmma);
  const auto [y_mma, mma_names] = step(on_mma, tp::Preference::mma_sync);
  CHECK(wgmma_kernels(wgmma_names) >= 1);
  CHECK(wgmma_kernels(mma_names) == 0);
  CHECK(normalised_error(y_wgmma, y_mma) < 1e-5);
  const auto wgmma_grads = kiln_test::gradients_of(on_wgmma), mma_grads = kiln_test::gradients_of(on_mma);
  REQUIRE(wgmma_grads.size() == mma_grads.size());
  for (std::size_t g = 0; g < wgmma_grads.size(); ++g) {
    INFO(wgmma_grads[g].first);
    CHECK(normalised_error(wgmma_grads[g].second, mma_grads[g].second) < 1e-4);
  }
}
#endif
