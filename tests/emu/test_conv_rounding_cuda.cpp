// The CPU's simulation of the tensor-core math modes (kiln/cpu/conv_rounding.hpp, what kiln-train
// --device cpu --precision bf16 runs) against the emulated CUDA kernels it simulates
// (Backend<Cuda> under MathModeScope(MathMode::bf16), and MathMode::tf32 on the mma.sync kernels):
// forward, input gradient, weight gradient and bias gradient on the small U-Net's convolutions at a
// 16-pixel input. Both multiply the same rounded operands and accumulate in fp32 in different
// orders, so they must agree to fp32 accumulation error (normalised < 2e-6) while each is
// 1e-3 (BF16) or 1e-4 (TF32) away from the fp32 convolution: the CPU run is a measurement of the
// GPU's numerics, not of fp32's.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/cpu/conv2d.hpp"
#include "kiln/cpu/conv_rounding.hpp"
#include "kiln/cuda.hpp"
#include "kiln/gpu/mma.hpp"
#include "normalised_error.hpp"
#include "test_emulator_support.hpp"

namespace {

using kiln::ConvShape;
using kiln_emu_test::uniform;
using kiln_test::normalised_error;

struct Passes {
  std::vector<float> y, dx, dw, db;  // dw and db: the gradients alone (accumulated from zero)
};

Passes cpu_passes(kiln::cpu::ConvRounding r, const ConvShape& s, const std::vector<float>& x,
                  const std::vector<float>& w, const std::vector<float>& b, const std::vector<float>& dy) {
  kiln::cpu::ConvRoundingScope scope(r);
  std::vector<float> ws(kiln::cpu::conv2d_workspace_floats(s) + 1);
  Passes p{std::vector<float>(dy.size()), std::vector<float>(x.size()), std::vector<float>(w.size(), 0.0f),
           std::vector<float>(b.size(), 0.0f)};
  kiln::cpu::conv2d_forward(s, x.data(), w.data(), b.data(), p.y.data(), ws.data());
  kiln::cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), p.dx.data(), p.dw.data(), p.db.data(), ws.data());
  return p;
}

// Backend<Cuda> with the workspace a planned layer gets under the mode.
Passes cuda_passes(kiln::cuda::MathMode mode, const ConvShape& s, const std::vector<float>& x,
                   const std::vector<float>& w, const std::vector<float>& b, const std::vector<float>& dy) {
  using B = kiln::Backend<kiln::Cuda>;
  using T = kiln::Tensor<float, kiln::Cuda>;
  kiln::cuda::MathModeScope scope(mode);
  T tx = T::from_host(kiln::Shape::nchw(s.n, s.c_in, s.h, s.w), x);
  T tw = T::from_host(kiln::Shape{s.c_out, s.c_in, s.k, s.k}, w);
  T tb = T::from_host(kiln::Shape{s.c_out}, b);
  T tdy = T::from_host(kiln::Shape::nchw(s.n, s.c_out, s.h, s.w), dy);
  T ty(tdy.shape()), tdx(tx.shape()), tdw = T::from_host(tw.shape(), std::vector<float>(w.size(), 0.0f)),
                                      tdb = T::from_host(tb.shape(), std::vector<float>(b.size(), 0.0f));
  T ws(kiln::Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1});
  B::conv2d_forward(s, tx, tw, tb, ty, ws);
  B::conv2d_backward(s, tx, tw, tdy, tdx, tdw, tdb, ws);
  return {ty.to_vector(), tdx.to_vector(), tdw.to_vector(), tdb.to_vector()};
}

// The CPU simulation and the emulated kernels of one mode on one shape: tight between them,
// far from fp32.
[[maybe_unused]] void check_against_cuda(kiln::cpu::ConvRounding r, kiln::cuda::MathMode mode, const ConvShape& s,
                                         std::uint64_t seed, double fp32_distance) {
  std::ostringstream name;
  name << kiln::cpu::conv_rounding_name(r) << " N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " "
       << s.h << "x" << s.w;
  INFO(name.str());
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto b = uniform(static_cast<std::size_t>(s.c_out), seed + 2, -1.0f, 1.0f);
  const auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), seed + 3, -1.0f, 1.0f);
  const Passes cpu = cpu_passes(r, s, x, w, b, dy);
  const Passes fp32 = cpu_passes(kiln::cpu::ConvRounding::none, s, x, w, b, dy);
  const Passes gpu = cuda_passes(mode, s, x, w, b, dy);
  const std::vector<float>* passes[3][3] = {
      {&cpu.y, &gpu.y, &fp32.y}, {&cpu.dx, &gpu.dx, &fp32.dx}, {&cpu.dw, &gpu.dw, &fp32.dw}};
  const char* names[3] = {"forward", "input gradient", "weight gradient"};
  std::ostringstream measured;
  for (int i = 0; i < 3; ++i) {
    const double same = normalised_error(*passes[i][0], *passes[i][1]);
    const double cuda_vs_fp32 = normalised_error(*passes[i][1], *passes[i][2]);
    const double cpu_vs_fp32 = normalised_error(*passes[i][0], *passes[i][2]);
    INFO(names[i], ": cpu vs cuda ", same, ", cuda vs fp32 ", cuda_vs_fp32, ", cpu vs fp32 ", cpu_vs_fp32);
    CHECK(same < 2e-6);
    CHECK(cuda_vs_fp32 > fp32_distance);
    CHECK(cpu_vs_fp32 > fp32_distance);
    CHECK(same * 100 < cuda_vs_fp32);
    measured << " " << names[i] << " " << same << " (fp32 " << cuda_vs_fp32 << ")";
  }
  CHECK(normalised_error(cpu.db, gpu.db) < 1e-6);  // the bias gradient: fp32 on both
  MESSAGE(name.str(), ": cpu vs cuda, normalised:", measured.str());
}

// The small U-Net's convolutions (width 16, depth 4) at a 16-pixel input, the batch of 2: the first
// layer, a level's 3x3s, a decoder's 1x1 reduce and 3x3 after the concat, the head (not used in
// OS-thread mode).
[[maybe_unused]] const ConvShape unet_shapes[] = {
    {2, 1, 16, 16, 16, 3}, {2, 16, 32, 8, 8, 3}, {2, 64, 32, 4, 4, 1}, {2, 32, 16, 16, 16, 3}, {2, 16, 2, 16, 16, 1}};

}  // namespace

// Not in OS-thread mode (ThreadSanitizer builds): 64-128 std::threads meet at every mma.
#if !KILN_EMU_THREADS
TEST_CASE("ConvRounding::bf16 on the CPU matches Backend<Cuda> under MathMode::bf16 (U-Net shapes)") {
  std::uint64_t seed = 71;
  for (const ConvShape& s : unet_shapes)
    check_against_cuda(kiln::cpu::ConvRounding::bf16, kiln::cuda::MathMode::bf16, s, seed += 5, 1e-3);
}

TEST_CASE("ConvRounding::tf32 on the CPU matches Backend<Cuda>'s mma.sync kernels under MathMode::tf32") {
  std::uint64_t seed = 171;
  for (const ConvShape& s : unet_shapes)
    check_against_cuda(kiln::cpu::ConvRounding::tf32, kiln::cuda::MathMode::tf32, s, seed += 5, 1e-4);
}

TEST_CASE(
    "The cpu-vs-cuda check sees the wrong TF32 rounding: x and dy to nearest instead of truncated (deliberate bug)") {
  const ConvShape s{2, 16, 32, 8, 8, 3};
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 91, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * 9), 92, -1.0f, 1.0f);
  const auto b = uniform(static_cast<std::size_t>(s.c_out), 93, -1.0f, 1.0f);
  const auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), 94, -1.0f, 1.0f);
  // Operands already TF32 to nearest: the CPU's truncation leaves them so, as a CPU rounding every
  // operand to nearest would give.
  auto to_nearest = [](std::vector<float> v) {
    for (float& e : v) e = kiln::cpu::round_tf32(e);
    return v;
  };
  const Passes buggy = cpu_passes(kiln::cpu::ConvRounding::tf32, s, to_nearest(x), w, b, to_nearest(dy));
  const Passes gpu = cuda_passes(kiln::cuda::MathMode::tf32, s, x, w, b, dy);
  const double y = normalised_error(buggy.y, gpu.y), dx = normalised_error(buggy.dx, gpu.dx),
               dw = normalised_error(buggy.dw, gpu.dw);
  MESSAGE("x and dy rounded to nearest: cpu vs cuda ", y, " / ", dx, " / ", dw);
  CHECK(y > 2e-5);
  CHECK(dx > 2e-5);
  CHECK(dw > 2e-5);
}

TEST_CASE("The CPU rounding and the emulator's conversions agree bit for bit") {
  // Every 2^12-th float bit pattern (all exponents, signs, NaN and inf), and their neighbours.
  int wrong_bf16 = 0, wrong_tf32 = 0;
  for (std::uint64_t u = 0; u <= 0xffffffffull; u += 4093) {
    const float x = std::bit_cast<float>(static_cast<std::uint32_t>(u));
    const float bf16 = __bfloat162float(__float2bfloat16_rn(x));
    const float tf32 = std::bit_cast<float>(kiln::gpu::mma::float_to_tf32(x));
    wrong_bf16 += std::bit_cast<std::uint32_t>(kiln::cpu::round_bf16(x)) != std::bit_cast<std::uint32_t>(bf16);
    wrong_tf32 += std::bit_cast<std::uint32_t>(kiln::cpu::round_tf32(x)) != std::bit_cast<std::uint32_t>(tf32);
  }
  CHECK(wrong_bf16 == 0);
  CHECK(wrong_tf32 == 0);
}
#endif
