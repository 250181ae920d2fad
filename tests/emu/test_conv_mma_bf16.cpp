// MathMode::bf16 as a whole: the mode's name, parsing and workspace plan, and a small U-Net trained
// on the emulator under MathMode::bf16 next to strict fp32 from the same start: its loss falls,
// every step's loss is within 5 % of the fp32 run's, and every convolution ran a BF16 NHWC kernel
// (conv2d_mma_bf16.cuh, conv2d_mma_bf16_wgrad.cuh), none a TF32 mma.sync one. The BF16 kernels
// themselves: test_conv_mma_bf16_nhwc.cpp, test_conv_mma_bf16_wgrad.cpp. (The fp32-staged BF16
// variants of conv2d_mma*.cuh this file tested are retired: docs/kernels.md "BF16".)
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "conv2d_mma.cuh"
#include "emu/launch_log.hpp"
#include "kiln/cuda.hpp"
#include "kiln/gpu/gpu.hpp"
#include "kiln/models/unet.hpp"
#include "test_emulator_support.hpp"

namespace {

using kiln::ConvShape;
namespace mc = kiln::cuda::kernels::mma_conv;
using kiln_emu_test::uniform;

}  // namespace

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
  CHECK(kiln_test::launched_kernels().count("conv2d_mma_forward_kernel") == 0);
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
