// The BF16 mma.sync convolutions (MathMode::bf16: conv2d_mma_forward_kernel<..., true> for the
// forward and the input gradient, conv2d_mma_wgrad_kernel<..., true> for the weight gradient) on
// the lane-accurate emulation of mma.sync m16n8k16 / ldmatrix, against
//   * plain loops in double on the operands the tensor cores see (every operand rounded to BF16 to
//     nearest even): only the fp32 accumulation order may differ, normalised error < 2e-6;
//   * the CPU reference convolution in fp32: BF16 keeps an 8-bit significand, unit roundoff
//     u = 2^-8, so a product of two rounded operands is off by at most 2u relative and the
//     normalised error of a sum of such products by about sqrt(2/3) u for independent rounding
//     errors: the bound is 2u = 2^-7 (7.8e-3). It must also be above 1e-3, which TF32 (u = 2^-11)
//     stays under: the BF16 path really runs;
//   * a deliberate bug (two k positions of the packed weights swapped, as a wrong fragment index
//     would) that the 2^-7 bound must catch;
// and a small U-Net trained on the emulator under MathMode::bf16 next to strict fp32 from the same
// start: its loss falls, and every step's loss is within 5 % of the fp32 run's.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "conv2d_mma.cuh"
#include "conv2d_mma_wgrad.cuh"
#include "emu/launch_log.hpp"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/cuda.hpp"
#include "kiln/gpu/gpu.hpp"
#include "normalised_error.hpp"
#include "kiln/models/unet.hpp"
#include "test_emulator_support.hpp"

namespace {

using kiln::ConvShape;
using kiln_emu_test::DeviceBuffer;
namespace mc = kiln::cuda::kernels::mma_conv;
namespace mw = kiln::cuda::kernels::mma_wgrad;
using kiln_emu_test::uniform;
using kiln_test::normalised_error;

constexpr double bf16_bound = 1.0 / 128;  // 2u, u = 2^-8 (see the header comment)
constexpr double tf32_level = 1e-3;       // TF32 stays below; BF16 must not

double bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// y, dx and dw (from dw0) in double on BF16-rounded operands.
struct Exact {
  std::vector<float> y, dx, dw;
};
Exact bf16_reference(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                     const std::vector<float>& b, const std::vector<float>& dy, const std::vector<float>& dw0) {
  const std::int64_t K = s.k, P = K / 2, H = s.h, W = s.w;
  std::vector<double> y(static_cast<std::size_t>(s.n * s.c_out * H * W)), dx(x.size(), 0.0), dw(dw0.begin(), dw0.end());
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j) {
          const auto yi = static_cast<std::size_t>(((n * s.c_out + o) * H + i) * W + j);
          const double g = bf16(dy[yi]);
          double acc = b[static_cast<std::size_t>(o)];
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < K; ++u)
              for (std::int64_t v = 0; v < K; ++v) {
                const std::int64_t ii = i + u - P, jj = j + v - P;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                const auto xi = static_cast<std::size_t>(((n * s.c_in + c) * H + ii) * W + jj);
                const auto wi = static_cast<std::size_t>(((o * s.c_in + c) * K + u) * K + v);
                acc += bf16(x[xi]) * bf16(w[wi]);
                dx[xi] += g * bf16(w[wi]);
                dw[wi] += g * bf16(x[xi]);
              }
          y[yi] = acc;
        }
  return {std::vector<float>(y.begin(), y.end()), std::vector<float>(dx.begin(), dx.end()),
          std::vector<float>(dw.begin(), dw.end())};
}

// Forward, input gradient and weight gradient (split and unsplit) of one shape, both schedules.
[[maybe_unused]] void check_shape(const ConvShape& s, std::uint64_t seed) {  // unused in OS-thread mode
  std::ostringstream name;
  name << "N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w
       << ": forward tile 128x" << mc::block_n(s) << ", dgrad 128x" << mc::block_n(mc::transposed(s)) << ", wgrad tile "
       << mw::block_tile(s) << ", " << mw::splits(s).count << " splits";
  INFO(name.str());
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto b = uniform(static_cast<std::size_t>(s.c_out), seed + 2, -1.0f, 1.0f);
  const auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), seed + 3, -1.0f, 1.0f);
  const auto dw0 = uniform(w.size(), seed + 4, -1.0f, 1.0f);
  const Exact want = bf16_reference(s, x, w, b, dy, dw0);
  std::vector<float> strict_y(dy.size()), strict_dx(x.size()), strict_dw = dw0;
  kiln::cpu::reference::conv2d_forward(s, x.data(), w.data(), b.data(), strict_y.data());
  kiln::cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), strict_dx.data(), strict_dw.data(), nullptr);

  REQUIRE(mw::supports(s));
  const auto packed_floats =
      std::max(mc::packed_weight_floats(s, true), mc::packed_weight_floats(mc::transposed(s), true));
  DeviceBuffer<float> d_x(x), d_w(w), d_b(b), d_dy(dy), d_y(dy.size()), d_dx(x.size()), d_dw(w.size()),
      packed(static_cast<std::size_t>(packed_floats)), work(static_cast<std::size_t>(mw::workspace_floats(s)) + 1);
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    d_y.upload(std::vector<float>(dy.size(), std::nanf("")));  // every output must be written
    mc::forward<true>(s, d_x.get(), d_w.get(), d_b.get(), d_y.get(), packed.get());
    const auto y = d_y.download();
    CHECK(normalised_error(y, want.y) < 2e-6);
    const double y_vs_fp32 = normalised_error(y, strict_y);
    CHECK(y_vs_fp32 < bf16_bound);
    CHECK(y_vs_fp32 > tf32_level);

    d_dx.upload(std::vector<float>(x.size(), std::nanf("")));
    mc::backward_data<true>(s, d_w.get(), d_dy.get(), d_dx.get(), packed.get());
    const auto dx = d_dx.download();
    CHECK(normalised_error(dx, want.dx) < 2e-6);
    const double dx_vs_fp32 = normalised_error(dx, strict_dx);
    CHECK(dx_vs_fp32 < bf16_bound);
    CHECK(dx_vs_fp32 > tf32_level);

    for (bool unsplit : {false, true}) {
      INFO("split-K: ", unsplit ? "no (into dw)" : "yes (through the workspace)");
      d_dw.upload(dw0);
      mw::backward_weight<true>(s, d_x.get(), d_dy.get(), d_dw.get(), work.get(), unsplit);
      const auto dw = d_dw.download();
      CHECK(normalised_error(dw, want.dw) < 2e-6);
      // dw0 is part of both: compare the gradients alone.
      std::vector<float> grad(dw.size()), strict_grad(dw.size());
      for (std::size_t i = 0; i < dw.size(); ++i) {
        grad[i] = dw[i] - dw0[i];
        strict_grad[i] = strict_dw[i] - dw0[i];
      }
      const double dw_vs_fp32 = normalised_error(grad, strict_grad);
      CHECK(dw_vs_fp32 < bf16_bound);
      CHECK(dw_vs_fp32 > tf32_level);
    }
  }
}

}  // namespace

// Not in OS-thread mode (ThreadSanitizer builds): 64-128 std::threads meet at every mma.
#if !KILN_EMU_THREADS
TEST_CASE("mma.sync BF16 convolutions (forward, input and weight gradient): U-Net shapes and channel tails") {
  check_shape({2, 32, 32, 8, 8, 3}, 1);  // a U-Net level (width 32): forward 128x64, wgrad 64x64
  check_shape({1, 64, 32, 8, 8, 1}, 2);  // the 1x1 reduce 2C -> C
  check_shape({1, 3, 5, 4, 5, 3}, 3);    // channels below one k step (tails everywhere), H*W = 20
  check_shape({2, 17, 66, 6, 6, 1}, 4);  // Cin 17: a partial second step; Cout 66: the 128x128 forward tile
#if !KILN_EMU_ASAN  // the sanitizer build emulates every lane's mma ~10x slower: the small shapes only
  check_shape({1, 96, 130, 4, 8, 3}, 5);  // 128x128 tiles in all three, tails in Cin and Cout
#endif
}

TEST_CASE("mma.sync BF16 forward: the 2^-7 bound catches two swapped k positions (deliberate bug)") {
  const ConvShape s{1, 32, 32, 8, 8, 3};
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 31, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), 32, -1.0f, 1.0f);
  std::vector<float> strict(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w));
  kiln::cpu::reference::conv2d_forward(s, x.data(), w.data(), nullptr, strict.data());
  DeviceBuffer<float> d_x(x), d_w(w), d_y(strict.size()),
      packed(static_cast<std::size_t>(mc::packed_weight_floats(s, true)));
  KILN_LAUNCH((kiln::cuda::kernels::conv2d_mma_pack_weights_kernel<3, true>), dim3(8), dim3(256), 0, nullptr, s,
              d_w.get(), packed.get());
  auto run = [&] {
    mc::launch_packed<true>(s, d_x.get(), packed.get(), nullptr, d_y.get(), nullptr);
    return normalised_error(d_y.download(), strict);
  };
  CHECK(run() < bf16_bound);
  // The bug: in every 16-weight group, the halves of the first 32-bit word swapped (k 0 and 1,
  // i.e. channels 0 and 4: what pack_bf16x2(lo.z, lo.x) instead of (lo.x, lo.z) would do).
  auto p = packed.download();
  for (std::size_t i = 0; i < p.size(); i += 8) {
    const auto bits = std::bit_cast<std::uint32_t>(p[i]);
    p[i] = std::bit_cast<float>(bits >> 16 | bits << 16);
  }
  packed.upload(p);
  const double buggy = run();
  MESSAGE("normalised error with k 0 and 1 swapped: ", buggy);
  CHECK(buggy > bf16_bound);
}
#endif

TEST_CASE("conv2d_mma BF16 packing: half the floats, BF16 to nearest even, channels in m16n8k16's k order") {
  CHECK(mc::bf16_channel(0) == 0);
  CHECK(mc::bf16_channel(1) == 4);
  CHECK(mc::bf16_channel(2) == 1);
  CHECK(mc::bf16_channel(7) == 7);
  CHECK(mc::bf16_channel(8) == 8);
  CHECK(mc::bf16_channel(9) == 12);
  CHECK(mc::bf16_channel(15) == 15);
  std::vector<int> seen(16, 0);
  for (int k = 0; k < 16; ++k) ++seen[static_cast<std::size_t>(mc::bf16_channel(k))];
  CHECK(std::count(seen.begin(), seen.end(), 1) == 16);  // a permutation
  const ConvShape s{1, 5, 2, 4, 4, 3};
  CHECK(mc::packed_weight_floats(s, true) == 2 * 9 * 16 / 2);
  auto w = uniform(static_cast<std::size_t>(2 * 5 * 9), 41, -1.0f, 1.0f);
  w[(1 * 5 + 4) * 9 + 2] = std::bit_cast<float>(0x3f818000u);  // o 1, c 4, tap 2: a tie, to even (0x3f82)
  DeviceBuffer<float> d_w(w), packed(static_cast<std::size_t>(mc::packed_weight_floats(s, true)));
  KILN_LAUNCH((kiln::cuda::kernels::conv2d_mma_pack_weights_kernel<3, true>), dim3(2), dim3(128), 0, nullptr, s,
              d_w.get(), packed.get());
  const auto p = packed.download();
  std::vector<std::uint16_t> h(p.size() * 2);
  std::memcpy(h.data(), p.data(), h.size() * 2);
  int wrong = 0;
  for (int o = 0; o < 2; ++o)
    for (int t = 0; t < 9; ++t)
      for (int k = 0; k < 16; ++k) {
        const int c = mc::bf16_channel(k);
        const std::uint16_t want =
            c < 5 ? __float2bfloat16_rn(w[static_cast<std::size_t>((o * 5 + c) * 9 + t)]).bits : 0;
        wrong += h[static_cast<std::size_t>((o * 9 + t) * 16 + k)] != want ? 1 : 0;
      }
  CHECK(wrong == 0);
  CHECK(h[(1 * 9 + 2) * 16 + 1] == 0x3f82);  // channel 4 sits at k 1 (bf16_channel(1) = 4)
}

TEST_CASE("MathMode: bf16 parses, is named, and selects tensor cores") {
  using kiln::cuda::MathMode;
  CHECK(kiln::cuda::parse_math_mode("bf16") == MathMode::bf16);
  CHECK(std::string(kiln::cuda::math_mode_name(MathMode::bf16)) == "bf16");
  CHECK(kiln::cuda::tensor_core_mode(MathMode::bf16));
  CHECK_FALSE(kiln::cuda::tensor_core_mode(MathMode::strict_fp32));
  CHECK_THROWS_WITH_AS(kiln::cuda::parse_math_mode("fp16"), doctest::Contains("bf16"), kiln::Error);
  kiln::cuda::MathModeScope scope(MathMode::bf16);
  const ConvShape s{2, 32, 64, 8, 8, 3};
  // Half the packed weights of TF32, and the NHWC BF16 copy of the input (conv2d_mma_bf16.cuh).
  CHECK(kiln::Backend<kiln::Cuda>::conv2d_forward_workspace_floats(s) ==
        static_cast<std::size_t>(mc::packed_weight_floats(s) / 2 + s.n * s.c_in * s.h * s.w / 2));
}

#if !KILN_EMU_THREADS && !KILN_EMU_ASAN
namespace {

// A small U-Net (width 2, depth 2: 3x3 and 1x1 convolutions with channel tails, BatchNorm, the
// skip concatenations) trained with Adam on one fixed batch, from the same start in every mode.
std::vector<float> train_unet(kiln::cuda::MathMode mode, int steps) {
  using Cuda = kiln::Cuda;
  kiln::cuda::MathModeScope scope(mode);  // before the network plans its workspaces
  kiln::Rng rng(5);
  kiln::Network<kiln::UNet<1, 2, 2, 2, Cuda>> net;
  net.reset_parameters(rng);
  kiln::Adam<Cuda> opt(kiln::collect_parameters(net), kiln::AdamOptions{.lr = 1e-2f});
  kiln::MSELoss<Cuda> loss;
  const kiln::Shape in = kiln::Shape::nchw(2, 1, 8, 8), out = kiln::Shape::nchw(2, 2, 8, 8);
  const auto xv = uniform(static_cast<std::size_t>(in.numel()), 51, -1.0f, 1.0f);
  std::vector<float> tv(static_cast<std::size_t>(out.numel()));
  for (std::size_t i = 0; i < tv.size(); ++i) {  // a target the network can learn: +-x/2 per channel
    const std::size_t img = i / 128, c = i / 64 % 2, p = i % 64;
    tv[i] = (c == 0 ? 0.5f : -0.5f) * xv[img * 64 + p];
  }
  kiln::Tensor<float, Cuda> x(in), t(out);
  x.copy_from_host(xv);
  t.copy_from_host(tv);
  std::vector<float> losses;
  for (int step = 0; step < steps; ++step) {
    net.zero_grad();
    losses.push_back(loss.forward(net.forward(x, kiln::Mode::train), t));
    net.backward(loss.backward());
    opt.step();
  }
  return losses;
}

}  // namespace

TEST_CASE("A small U-Net trains under MathMode::bf16: the loss falls and stays within 5 % of strict fp32") {
  constexpr int steps = 5;
  const auto fp32 = train_unet(kiln::cuda::MathMode::strict_fp32, steps);
  kiln_test::record_launches(true);
  const auto bf16 = train_unet(kiln::cuda::MathMode::bf16, steps);
  kiln_test::record_launches(false);
  // The forward convolutions and input gradients from the NHWC BF16 copies (conv2d_mma_bf16.cuh),
  // the weight gradients too (conv2d_mma_bf16_wgrad.cuh): the fp32-staged weight gradient no more.
  CHECK(kiln_test::launched_kernels().count("conv2d_mma_bf16_forward_kernel") == 1);
  CHECK(kiln_test::launched_kernels().count("conv2d_nhwc_bf16_kernel") == 1);
  CHECK(kiln_test::launched_kernels().count("conv2d_mma_bf16_wgrad_kernel") == 1);
  CHECK(kiln_test::launched_kernels().count("conv2d_mma_wgrad_kernel") == 0);
  REQUIRE(bf16.size() == std::size_t(steps));
  for (int s = 0; s < steps; ++s) {
    MESSAGE("step ", s + 1, ": fp32 ", fp32[s], ", bf16 ", bf16[s]);
    CHECK(std::isfinite(bf16[s]));
    CHECK(std::abs(bf16[s] - fp32[s]) <= 0.05 * fp32[s]);
  }
  CHECK(bf16[steps - 1] < 0.8f * bf16[0]);
  CHECK(bf16 != fp32);  // the BF16 kernels really ran
}
#endif
