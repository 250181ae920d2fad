// The BF16 weight gradient from the NHWC BF16 copies of x and dy (kernels/conv2d_mma_bf16_wgrad.cuh:
// 16-byte cp.async, ldmatrix.trans, m16n8k16, split-K partial sums reduced in a fixed order), on the
// lane-accurate emulation of mma.sync / ldmatrix, against
//   * loops in double on the operands the tensor cores see (x and dy rounded to BF16): only the
//     fp32 accumulation order may differ, normalised error < 2e-6;
//   * the CPU reference in fp32 with BF16's bound 2^-7 (test_conv_mma_bf16.cpp says why), and
//     above 1e-3, which TF32 stays under: the BF16 path really ran;
//   * a deliberate bug (channels 0 and 8 of every pixel of dy's copy swapped) the bound must catch;
// split-K and unsplit, both schedules, and Backend<Cuda>::conv2d_backward under MathMode::bf16
// choosing it when the workspace holds the copies (reusing dy's copy from the input gradient, and
// x's from the forward when told so: ConvKept, bit for bit a fresh copy's result; a stale copy caught).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "conv2d_mma_bf16_wgrad.cuh"
#include "emu/conv_taps.hpp"
#include "emu/launch_log.hpp"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/cuda.hpp"
#include "kiln/gpu/gpu.hpp"
#include "normalised_error.hpp"
#include "test_emulator_support.hpp"

namespace {

using kiln::ConvShape;
using kiln_emu_test::DeviceBuffer;
using kiln_emu_test::uniform;
using kiln_test::normalised_error;
namespace mbw = kiln::cuda::kernels::mma_bf16_wgrad;
namespace mw = kiln::cuda::kernels::mma_wgrad;

constexpr double wgrad_bf16_bound = 1.0 / 128;  // 2u, u = 2^-8
constexpr double wgrad_tf32_level = 1e-3;

double bf16_value(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// dw in double on BF16-rounded operands (x and dy).
std::vector<float> exact_dw(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& dy) {
  std::vector<double> dw(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), 0.0);
  kiln_emu_test::for_each_conv_tap(
      s, [&](std::size_t yi, std::size_t xi, std::size_t wi) { dw[wi] += bf16_value(dy[yi]) * bf16_value(x[xi]); });
  return std::vector<float>(dw.begin(), dw.end());
}

// Split-K (as planned) and unsplit, under both schedules. Returns the planned split count.
[[maybe_unused]] int check_wgrad(const ConvShape& s, std::uint64_t seed) {
  INFO("N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w << ": tile "
            << mw::block_tile(s) << ", splits " << mw::split_k(s, mw::single_tap(s)).count);
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), seed + 1, -1.0f, 1.0f);
  const auto want = exact_dw(s, x, dy);
  std::vector<float> w(want.size(), 0.0f), strict(want.size(), 0.0f);
  kiln::cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, strict.data(), nullptr);
  REQUIRE(mbw::supports(s));
  DeviceBuffer<float> d_x(x), d_dy(dy), d_dw(want.size()), work(static_cast<std::size_t>(mbw::layout(s).total));
  const std::vector<unsigned> zeros(static_cast<std::size_t>(mw::tiles(s, mw::single_tap(s))), 0u);
  DeviceBuffer<unsigned> counters(zeros);
  const auto bits = [](const std::vector<float>& v) {
    std::vector<std::uint32_t> out(v.size());
    std::transform(v.begin(), v.end(), out.begin(), [](float f) { return std::bit_cast<std::uint32_t>(f); });
    return out;
  };
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    for (bool unsplit : {false, true}) {
      INFO("unsplit " << unsplit);
      d_dw.upload(std::vector<float>(want.size(), 0.0f));
      mbw::backward_weight(s, d_x.get(), d_dy.get(), d_dw.get(), work.get(), false, unsplit);
      const auto dw = d_dw.download();
      CHECK(normalised_error(dw, want) < 2e-6);
      const double vs_fp32 = normalised_error(dw, strict);
      CHECK(vs_fp32 < wgrad_bf16_bound);
      CHECK(vs_fp32 > wgrad_tf32_level);
      if (!unsplit && mw::split_k(s, mw::single_tap(s)).one_launch) {  // the splits added in the GEMM's launch
        d_dw.upload(std::vector<float>(want.size(), 0.0f));
        mbw::backward_weight(s, d_x.get(), d_dy.get(), d_dw.get(), work.get(), false, false, nullptr, counters.get());
        CHECK(bits(d_dw.download()) == bits(dw));  // the reduction launch's bits, whichever split is last
        CHECK(counters.download() == zeros);
      }
    }
  }
  return mw::split_k(s, mw::single_tap(s)).count;
}

// The launch log records names once; the NHWC copies are counted here as well.
int nhwc_copies = 0;
[[maybe_unused]] void record_and_count(const char* spelled) {
  kiln_test::record_launch(spelled);
  if (kiln_test::kernel_base_name(spelled) == "conv2d_nhwc_bf16_kernel") ++nhwc_copies;
}

}  // namespace

TEST_CASE("mma_bf16_wgrad::layout: x's copy first, then the packed weights, dy's copy and the partial sums") {
  const ConvShape s{4, 17, 66, 8, 8, 3};
  const auto l = mbw::layout(s);
  namespace mb = kiln::cuda::kernels::mma_bf16;
  const ConvShape t = kiln::cuda::kernels::mma_conv::transposed(s);
  CHECK(l.x_copy == 0);  // where the forward writes it and the weight gradient reads it
  CHECK(l.weights - l.x_copy == mb::nhwc_floats(s));
  CHECK(l.dy_copy - l.weights == mb::packed_weight_floats(t));  // the input gradient's packed weights
  CHECK(l.partials - l.dy_copy == mb::nhwc_floats(t));
  CHECK(l.total - l.partials == mw::workspace_floats(s, mw::single_tap(s)));
  CHECK(mw::workspace_floats(s, mw::single_tap(s)) > 0);
  CHECK(l.weights % 4 == 0);
  CHECK(l.dy_copy % 4 == 0);
  CHECK(l.partials % 4 == 0);
  // The input gradient's packing kept from the forward: past everything, the forward's packing included.
  CHECK(l.kept_dgrad >= l.total);
  CHECK(l.kept_dgrad >= l.weights + mb::packed_weight_floats(s));
  CHECK(l.kept_dgrad % 4 == 0);
  CHECK(l.kept_total - l.kept_dgrad == mb::packed_weight_floats(t));
  // Cin < Cout with few pixels: the forward's packing reaches past total, and kept_dgrad past it.
  const ConvShape narrow{1, 1, 32, 1, 1, 3};
  const auto ln = mbw::layout(narrow);
  CHECK(ln.weights + mb::packed_weight_floats(narrow) > ln.total);
  CHECK(ln.kept_dgrad >= ln.weights + mb::packed_weight_floats(narrow));
  // Backend<Cuda> plans them: the training workspace holds all of it, the forward's ends after its weights.
  using B = kiln::Backend<kiln::Cuda>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::bf16);
  CHECK(B::conv2d_workspace_floats(s) == static_cast<std::size_t>(l.kept_total));
  CHECK(B::conv2d_forward_workspace_floats(s) == static_cast<std::size_t>(l.weights + mb::packed_weight_floats(s)));
}

// Not in OS-thread mode (ThreadSanitizer builds): 32-128 std::threads meet at every mma.
#if !KILN_EMU_THREADS
TEST_CASE("conv2d_mma_bf16_wgrad_kernel: exact operands, the 2^-7 bound, channel tails, split-K and unsplit") {
  check_wgrad({1, 3, 5, 4, 5, 3}, 1);               // Cin 3, Cout 5: one chunk each, mostly zeros; H*W = 20
  check_wgrad({2, 32, 32, 8, 8, 3}, 2);             // a U-Net level (width 32), the 64x64 tile
  check_wgrad({3, 16, 8, 7, 9, 3}, 3);              // H*W = 63 (not a multiple of 4: the fp32-staged kernel refuses it)
  CHECK(check_wgrad({4, 17, 66, 8, 8, 3}, 4) > 1);  // Cin 17, Cout 66; split-K
#if !KILN_EMU_ASAN  // the sanitizer build emulates every lane's mma ~10x slower: the small shapes only
  check_wgrad({1, 96, 130, 4, 8, 3}, 5);             // the 128x128 tile, tails in both channel counts
  CHECK(check_wgrad({4, 96, 130, 8, 8, 1}, 6) > 1);  // the 128x128 tile, split-K, added in one launch
  CHECK(mw::split_k({4, 96, 130, 8, 8, 1}, mw::single_tap({4, 96, 130, 8, 8, 1})).one_launch);
#endif
}

TEST_CASE(
    "conv2d_mma_bf16_wgrad_kernel: the 2^-7 bound catches channels 0 and 8 of dy's copy swapped (deliberate bug)") {
  const ConvShape s{1, 32, 32, 8, 8, 3};
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 31, -2.0f, 2.0f);
  const auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), 32, -1.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(s.c_out * s.c_in * 9), 0.0f), strict(w.size(), 0.0f);
  kiln::cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, strict.data(), nullptr);
  const auto l = mbw::layout(s);
  DeviceBuffer<float> d_x(x), d_dy(dy), d_dw(std::vector<float>(w.size(), 0.0f)),
      work(static_cast<std::size_t>(l.total));
  mbw::backward_weight(s, d_x.get(), d_dy.get(), d_dw.get(), work.get());
  CHECK(normalised_error(d_dw.download(), strict) < wgrad_bf16_bound);
  // The bug: in every pixel's 16 channels of dy's copy, 0 and 8 swapped (what a chunk index that
  // ignores the swizzle does); the kernel told the copy is there already.
  auto ws = work.download();
  auto* h = reinterpret_cast<std::uint16_t*>(ws.data() + l.dy_copy);
  for (std::int64_t p = 0; p < s.n * s.h * s.w * 2; ++p) std::swap(h[p * 16], h[p * 16 + 8]);
  work.upload(ws);
  d_dw.upload(std::vector<float>(w.size(), 0.0f));
  mbw::backward_weight(s, d_x.get(), d_dy.get(), d_dw.get(), work.get(), true);
  const double buggy = normalised_error(d_dw.download(), strict);
  MESSAGE("normalised error with dy's channels 0 and 8 swapped: ", buggy);
  CHECK(buggy > wgrad_bf16_bound);
}

TEST_CASE(
    "Backend<Cuda>::conv2d_backward under MathMode::bf16 runs the NHWC BF16 weight gradient when ws holds the copies") {
  using B = kiln::Backend<kiln::Cuda>;
  using Tensor = kiln::Tensor<float, kiln::Cuda>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::bf16);
  const ConvShape s{4, 20, 24, 8, 8, 3};  // 256 pixels: 16 steps, 2 splits; 24 -> 20 input gradient
  REQUIRE(mw::split_k(s, mw::single_tap(s)).count == 2);
  CHECK(B::conv2d_workspace_floats(s) >= static_cast<std::size_t>(mbw::layout(s).total));
  const auto xv = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 41, -2.0f, 2.0f);
  const auto wv = uniform(static_cast<std::size_t>(s.c_out * s.c_in * 9), 42, -1.0f, 1.0f);
  const auto dyv = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), 43, -1.0f, 1.0f);
  const auto dw0 = uniform(wv.size(), 44, -1.0f, 1.0f);  // dw accumulates
  auto want = exact_dw(s, xv, dyv);
  for (std::size_t i = 0; i < want.size(); ++i) want[i] += dw0[i];
  Tensor x(kiln::Shape::nchw(s.n, s.c_in, s.h, s.w)), w(kiln::Shape{s.c_out, s.c_in, 3, 3}),
      dy(kiln::Shape::nchw(s.n, s.c_out, s.h, s.w)), dx(x.shape()), dw(w.shape()), no_dx, no_db;
  x.copy_from_host(xv);
  w.copy_from_host(wv);
  dy.copy_from_host(dyv);
  auto run = [&](Tensor& wanted_dx, std::int64_t ws_floats) {
    Tensor ws(kiln::Shape{ws_floats});
    dw.copy_from_host(dw0);
    kiln_test::record_launches(true);
    nhwc_copies = 0;
    kiln::gpu::emu::launch_observer().store(&record_and_count);
    B::conv2d_backward(s, x, w, dy, wanted_dx, dw, no_db, ws);
    kiln_test::record_launches(false);
    return kiln_test::launched_kernel_names();
  };
  const auto full = static_cast<std::int64_t>(B::conv2d_workspace_floats(s));
  // With dx: dy's copy made once, for the input gradient, and reused.
  const auto with_dx = run(dx, full);
  CHECK(with_dx.count("conv2d_mma_bf16_wgrad_kernel<3, 64>") == 1);
  CHECK(with_dx.count("conv2d_mma_wgrad_kernel<3, 64, 64, 1, true>") == 0);
  CHECK(with_dx.count("conv2d_mma_wgrad_reduce_kernel<3>") == 1);  // the partial sums after the copies
  CHECK(nhwc_copies == 2);                                         // dy's and x's
  CHECK(normalised_error(dw.to_vector(), want) < 2e-6);
  // Without dx (a first layer): the weight gradient makes dy's copy itself.
  const auto without_dx = run(no_dx, full);
  CHECK(without_dx.count("conv2d_mma_bf16_wgrad_kernel<3, 64>") == 1);
  CHECK(nhwc_copies == 2);
  CHECK(normalised_error(dw.to_vector(), want) < 2e-6);
  // Room for the copies but not the partial sums: the same kernel, unsplit.
  const auto unsplit = run(dx, mbw::layout(s).partials);
  CHECK(unsplit.count("conv2d_mma_bf16_wgrad_kernel<3, 64>") == 1);
  CHECK(unsplit.count("conv2d_mma_wgrad_reduce_kernel<3>") == 0);
  CHECK(normalised_error(dw.to_vector(), want) < 2e-6);
  // A workspace planned under TF32 (room for the packed weights only, not for the copies): the TF32
  // mma.sync kernel stands in (the fp32-staged BF16 kernel is retired), unsplit, at TF32's accuracy.
  const auto fallback = run(no_dx, kiln::cuda::kernels::mma_conv::packed_weight_floats(s));
  CHECK(fallback.count("conv2d_mma_bf16_wgrad_kernel<3, 64>") == 0);
  CHECK(fallback.count("conv2d_mma_wgrad_kernel<3, 64, 64, 1, true>") == 1);
  CHECK(fallback.count("conv2d_mma_wgrad_reduce_kernel<3>") == 0);
  CHECK(nhwc_copies == 0);
  std::vector<float> strict = dw0;
  kiln::cpu::reference::conv2d_backward(s, xv.data(), wv.data(), dyv.data(), nullptr, strict.data(), nullptr);
  CHECK(normalised_error(dw.to_vector(), strict) < 2e-3);
}
TEST_CASE(
    "Backend<Cuda> under MathMode::bf16: the weight gradient reads the forward's copy of x (ConvKept), bit for bit a "
    "fresh copy's; a stale copy is caught") {
  using B = kiln::Backend<kiln::Cuda>;
  using Tensor = kiln::Tensor<float, kiln::Cuda>;
  using kiln::ConvKept;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::bf16);
  const ConvShape s{4, 20, 24, 8, 8, 3};  // 2 splits: the partial sums follow both copies
  REQUIRE(mw::split_k(s, mw::single_tap(s)).count == 2);
  const auto xv = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 51, -2.0f, 2.0f);
  const auto other = uniform(xv.size(), 52, -2.0f, 2.0f);
  const auto wv = uniform(static_cast<std::size_t>(s.c_out * s.c_in * 9), 53, -1.0f, 1.0f);
  const auto bv = uniform(static_cast<std::size_t>(s.c_out), 54, -1.0f, 1.0f);
  const auto dyv = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), 55, -1.0f, 1.0f);
  const auto dw0 = uniform(wv.size(), 56, -1.0f, 1.0f);  // dw accumulates
  auto want = exact_dw(s, xv, dyv);
  for (std::size_t i = 0; i < want.size(); ++i) want[i] += dw0[i];
  Tensor x(kiln::Shape::nchw(s.n, s.c_in, s.h, s.w)), x_other(x.shape()), w(kiln::Shape{s.c_out, s.c_in, 3, 3}),
      b(kiln::Shape{s.c_out}), y(kiln::Shape::nchw(s.n, s.c_out, s.h, s.w)), dy(y.shape()), dx(x.shape()),
      dw(w.shape()), no_dx, no_db, ws(kiln::Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s))});
  x.copy_from_host(xv);
  x_other.copy_from_host(other);
  w.copy_from_host(wv);
  b.copy_from_host(bv);
  dy.copy_from_host(dyv);
  // What the forward leaves: x's copy and the input gradient's packing under BF16 with the planned
  // workspace, x's copy alone without room for that packing; nothing with a workspace planned under
  // TF32 (the TF32 forward runs) or under another mode.
  CHECK(B::conv2d_forward_kept(s, ws) == ConvKept::bf16_copy_and_dgrad_packing);
  CHECK(B::conv2d_forward_kept(s, Tensor(kiln::Shape{mbw::layout(s).total})) == ConvKept::x_bf16_copy);
  CHECK(B::conv2d_forward_kept(s, Tensor(kiln::Shape{kiln::cuda::kernels::mma_conv::packed_weight_floats(s)})) ==
        ConvKept::nothing);
  {
    kiln::cuda::MathModeScope tf32(kiln::cuda::MathMode::tf32);
    CHECK(B::conv2d_forward_kept(s, ws) == ConvKept::nothing);
  }
  CHECK(kiln::Backend<kiln::Cpu>::conv2d_forward_kept(s, kiln::Tensor<float, kiln::Cpu>(kiln::Shape{1})) ==
        ConvKept::nothing);
  auto backward = [&](Tensor& wanted_dx, ConvKept kept) {
    dw.copy_from_host(dw0);
    kiln_test::record_launches(true);
    nhwc_copies = 0;
    kiln::gpu::emu::launch_observer().store(&record_and_count);
    B::conv2d_backward(s, x, w, dy, wanted_dx, dw, no_db, ws, kept);
    kiln_test::record_launches(false);
    CHECK(kiln_test::launched_kernel_names().count("conv2d_mma_bf16_wgrad_kernel<3, 64>") == 1);
    return dw.to_vector();
  };
  auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  B::conv2d_forward(s, x, w, b, y, ws);
  const auto reused = backward(dx, ConvKept::x_bf16_copy);
  CHECK(nhwc_copies == 1);  // dy's only
  CHECK(normalised_error(reused, want) < 2e-6);
  // The backward leaves x's copy intact: told again, the same bits.
  CHECK(same_bits(backward(dx, ConvKept::x_bf16_copy), reused));
  CHECK(nhwc_copies == 1);
  // Without dx (a first layer): dy's copy made by the weight gradient, x's still the forward's.
  CHECK(same_bits(backward(no_dx, ConvKept::x_bf16_copy), reused));
  CHECK(nhwc_copies == 1);
  // Not told: x copied again, the same bits.
  const auto fresh = backward(dx, ConvKept::nothing);
  CHECK(nhwc_copies == 2);
  CHECK(same_bits(fresh, reused));
  // The deliberate bug: a stale copy (the forward ran on another input), reused as x's.
  B::conv2d_forward(s, x_other, w, b, y, ws);
  const double stale = normalised_error(backward(dx, ConvKept::x_bf16_copy), want);
  MESSAGE("normalised error with the copy of another input reused: ", stale);
  CHECK(stale > wgrad_bf16_bound);
  // ... and with the copy overwritten, as a backward that put its partial sums over it would.
  B::conv2d_forward(s, x, w, b, y, ws);
  auto host = ws.to_vector();
  std::fill(host.begin(), host.begin() + kiln::cuda::kernels::mma_bf16::nhwc_floats(s), 0.5f);
  ws.copy_from_host(host);
  const double overwritten = normalised_error(backward(dx, ConvKept::x_bf16_copy), want);
  MESSAGE("normalised error with x's copy overwritten: ", overwritten);
  CHECK(overwritten > wgrad_bf16_bound);
}

TEST_CASE(
    "Backend<Cuda> under MathMode::bf16: the input gradient runs on the packing kept from the forward, bit for bit a "
    "fresh packing's; a stale one is caught") {
  using B = kiln::Backend<kiln::Cuda>;
  using Tensor = kiln::Tensor<float, kiln::Cuda>;
  using kiln::ConvKept;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::bf16);
  for (const ConvShape s : {ConvShape{4, 20, 24, 8, 8, 3}, ConvShape{2, 40, 18, 4, 4, 1}}) {
    INFO("Cin ", s.c_in, " Cout ", s.c_out, " K ", s.k);
    const auto xv = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 71, -2.0f, 2.0f);
    const auto wv = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), 72, -1.0f, 1.0f);
    const auto other = uniform(wv.size(), 73, -1.0f, 1.0f);
    const auto dyv = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), 74, -1.0f, 1.0f);
    Tensor x = Tensor::from_host(kiln::Shape::nchw(s.n, s.c_in, s.h, s.w), xv),
           w = Tensor::from_host(kiln::Shape{s.c_out, s.c_in, s.k, s.k}, wv), b,
           y(kiln::Shape::nchw(s.n, s.c_out, s.h, s.w)), dy = Tensor::from_host(y.shape(), dyv), dx(x.shape()),
           dw(w.shape()), no_db, ws(kiln::Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s))});
    const std::string pack = "conv2d_mma_pack_weights_dgrad_bf16_kernel<" + std::to_string(s.k) + ">",
                      both = "conv2d_mma_pack_weights_both_bf16_kernel<" + std::to_string(s.k) + ">";
    auto forward = [&] {
      kiln_test::record_launches(true);
      B::conv2d_forward(s, x, w, b, y, ws);
      kiln_test::record_launches(false);
      CHECK(kiln_test::launched_kernel_names().count(both) == 1);
      return B::conv2d_forward_kept(s, ws);
    };
    auto input_gradient = [&](ConvKept kept, std::size_t packings) {
      kiln_test::record_launches(true);
      B::conv2d_backward(s, x, w, dy, dx, dw, no_db, ws, kept);
      kiln_test::record_launches(false);
      CHECK(kiln_test::launched_kernel_names().count(pack) == packings);
      return dx.to_vector();
    };
    REQUIRE(forward() == ConvKept::bf16_copy_and_dgrad_packing);
    const auto kept = input_gradient(ConvKept::bf16_copy_and_dgrad_packing, 0);
    forward();
    const auto fresh = input_gradient(ConvKept::x_bf16_copy, 1);  // told only of x's copy: packs its own
    CHECK(std::memcmp(kept.data(), fresh.data(), kept.size() * sizeof(float)) == 0);
    std::vector<float> reference(xv.size());
    kiln::cpu::reference::conv2d_backward(s, xv.data(), wv.data(), dyv.data(), reference.data(), nullptr, nullptr);
    CHECK(normalised_error(kept, reference) < 2.0 / 128);
    // The deliberate bug: the weights changed after the forward, the kept packing used anyway.
    forward();
    w.copy_from_host(other);
    const auto stale = input_gradient(ConvKept::bf16_copy_and_dgrad_packing, 0);
    forward();
    const auto want = input_gradient(ConvKept::bf16_copy_and_dgrad_packing, 0);
    const double error = normalised_error(stale, want);
    MESSAGE("normalised error of an input gradient on a stale packing: ", error);
    CHECK(error > 0.1);
    w.copy_from_host(wv);
  }
}

TEST_CASE("Conv2d<Cuda> under MathMode::bf16: a training step copies x once; an eval forward keeps nothing") {
  using Tensor = kiln::Tensor<float, kiln::Cuda>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::bf16);
  constexpr int In = 20, Out = 24;
  const kiln::Shape in = kiln::Shape::nchw(2, In, 8, 8);
  kiln::manual_seed(7);
  kiln::Conv2d<In, Out, 3, kiln::Cuda> conv;
  kiln::Arena<kiln::Cuda> arena;
  arena.begin();
  const kiln::Shape out = conv.plan(in, arena, "conv");
  arena.finalize();
  const auto xv = uniform(static_cast<std::size_t>(in.numel()), 61, -2.0f, 2.0f);
  const auto dyv = uniform(static_cast<std::size_t>(out.numel()), 62, -1.0f, 1.0f);
  const auto x = Tensor::from_host(in, xv), dy = Tensor::from_host(out, dyv);
  const ConvShape s{in.n(), In, Out, in.h(), in.w(), 3};
  auto step = [&](kiln::Mode mode) {
    conv.weight().grad.copy_from_host(std::vector<float>(conv.weight().grad.numel(), 0.0f));
    nhwc_copies = 0;
    kiln::gpu::emu::launch_observer().store(&record_and_count);
    conv.forward(x, mode);
    conv.backward(dy);
    kiln::gpu::emu::launch_observer().store(nullptr);
    return conv.weight().grad.to_vector();
  };
  kiln_test::record_launches(true);
  const auto train = step(kiln::Mode::train);
  kiln_test::record_launches(false);
  CHECK(nhwc_copies == 2);  // x's in the forward, dy's in the backward
  // Both packings in the forward's one packing launch, none in the backward.
  CHECK(kiln_test::launched_kernel_names().count("conv2d_mma_pack_weights_both_bf16_kernel<3>") == 1);
  CHECK(kiln_test::launched_kernel_names().count("conv2d_mma_pack_weights_dgrad_bf16_kernel<3>") == 0);
  CHECK(normalised_error(train, exact_dw(s, xv, dyv)) < 2e-6);
  const auto eval = step(kiln::Mode::eval);  // (a train plan's workspace, but nothing promised)
  CHECK(nhwc_copies == 3);                   // x copied again for the weight gradient
  CHECK(std::memcmp(train.data(), eval.data(), train.size() * sizeof(float)) == 0);
}
#endif
