// The strict-fp32 SIMT implicit GEMM (kernels/conv2d_simt.cuh): Backend<Cuda>'s strict forward and
// input gradient for K = 1 and 3 with a planned workspace, on the lane-accurate emulator, against
// reference loops in double (tests/emu/conv_taps.hpp). fp32 multiply-adds in another order than
// the reference: the normalised error stays at fp32 rounding, under the strict table's bound
// (kernel_cases.hpp `tight`, 1e-5; measured values are ~1e-7). Shapes: the first layer (Cin = 1),
// Cin 3 and 17 (channel steps of 8 with a tail), Cout not a multiple of 4 or of the tile, H*W not a
// multiple of 4 (the scalar epilogue) or of the 128-pixel tile, a U-Net level and 1x1 reduce at
// small size, both block tiles, both thread schedules; every output is pre-filled with NaN, so an
// output the kernel skips fails. A deliberate-bug test shows the check fires on wrong taps and on
// one wrong output; the selection test shows which kernels the backend launched.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "conv2d_simt.cuh"
#include "conv2d_simt_wgrad.cuh"
#include "emu/conv_taps.hpp"
#include "emu/kernel_cases.hpp"
#include "emu/launch_log.hpp"
#include "emu/test_emulator_support.hpp"

namespace {

using kiln::ConvShape;
using kiln::Cuda;
using kiln::Shape;
using kiln::Tensor;
using kiln_test::normalised_error;
namespace sc = kiln::cuda::kernels::simt_conv;
namespace sw = kiln::cuda::kernels::simt_wgrad;
using B = kiln::Backend<Cuda>;

[[maybe_unused]] constexpr double strict_bound = kiln_test::tight;  // the kernel table's; unused in OS-thread mode

struct Operands {
  std::vector<float> x, w, b, dy, dw0;  // dw0: the gradient dw accumulates onto
};
[[maybe_unused]] Operands operands(const ConvShape& s, std::uint64_t seed) {
  kiln::Rng rng(seed);
  Operands o;
  o.x = kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), rng, -2.0f, 2.0f);
  o.w = kiln_test::random_vector(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), rng);
  o.b = kiln_test::random_vector(static_cast<std::size_t>(s.c_out), rng);
  o.dy = kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), rng);
  o.dw0 = kiln_test::random_vector(o.w.size(), rng);
  return o;
}

// y = conv(x, w) + b and dx = the input gradient from dy, in double.
[[maybe_unused]] std::vector<float> reference_forward(const ConvShape& s, const Operands& o) {
  std::vector<double> y(o.dy.size());
  const std::int64_t hw = s.h * s.w;
  for (std::size_t i = 0; i < y.size(); ++i)
    y[i] = o.b[static_cast<std::size_t>(static_cast<std::int64_t>(i) / hw % s.c_out)];
  kiln_emu_test::for_each_conv_tap(
      s, [&](std::size_t yi, std::size_t xi, std::size_t wi) { y[yi] += static_cast<double>(o.x[xi]) * o.w[wi]; });
  return {y.begin(), y.end()};
}
[[maybe_unused]] std::vector<float> reference_input_gradient(const ConvShape& s, const Operands& o) {
  std::vector<double> dx(o.x.size(), 0.0);
  kiln_emu_test::for_each_conv_tap(
      s, [&](std::size_t yi, std::size_t xi, std::size_t wi) { dx[xi] += static_cast<double>(o.dy[yi]) * o.w[wi]; });
  return {dx.begin(), dx.end()};
}
[[maybe_unused]] std::vector<float> reference_weight_gradient(const ConvShape& s, const Operands& o) {
  std::vector<double> dw(o.dw0.begin(), o.dw0.end());
  kiln_emu_test::for_each_conv_tap(
      s, [&](std::size_t yi, std::size_t xi, std::size_t wi) { dw[wi] += static_cast<double>(o.dy[yi]) * o.x[xi]; });
  return {dw.begin(), dw.end()};
}

Tensor<float, Cuda> device(const Shape& shape, const std::vector<float>& host) {
  return Tensor<float, Cuda>::from_host(shape, host);
}
Tensor<float, Cuda> planned_workspace(const ConvShape& s) {
  return Tensor<float, Cuda>(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1});
}

struct Results {
  std::vector<float> y, dx, dw;
};
// The backend's strict forward and gradients (planned workspace); y and dx pre-filled with NaN.
[[maybe_unused]] Results backend_passes(const ConvShape& s, const Operands& o) {
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const auto x = device(xs, o.x), w = device(Shape{s.c_out, s.c_in, s.k, s.k}, o.w), b = device(Shape{s.c_out}, o.b);
  const auto dy = device(ys, o.dy);
  auto y = device(ys, std::vector<float>(o.dy.size(), std::nanf("")));
  auto dx = device(xs, std::vector<float>(o.x.size(), std::nanf("")));
  auto dw = device(Shape{s.c_out, s.c_in, s.k, s.k}, o.dw0);
  Tensor<float, Cuda> ws = planned_workspace(s), db;
  B::conv2d_forward(s, x, w, b, y, ws);
  B::conv2d_backward(s, x, w, dy, dx, dw, db, ws);
  return {y.to_vector(), dx.to_vector(), dw.to_vector()};
}

// The forward kernel with block tile 128 x BN launched directly (the backend picks BN by the
// grid size; small test shapes would only reach 128 x 64), on weights packed by the backend's
// packing kernel.
template <int K, int BN>
std::vector<float> forward_with_tile(const ConvShape& s, const Operands& o) {
  const auto x = device(Shape::nchw(s.n, s.c_in, s.h, s.w), o.x), w = device(Shape{s.c_out, s.c_in, K, K}, o.w),
             b = device(Shape{s.c_out}, o.b);
  auto y = device(Shape::nchw(s.n, s.c_out, s.h, s.w), std::vector<float>(o.dy.size(), std::nanf("")));
  Tensor<float, Cuda> packed(Shape{sc::packed_weight_floats(s)});
  KILN_CUDA_LAUNCH((kiln::cuda::kernels::conv2d_simt_pack_weights_kernel<false>), dim3(16), dim3(256), 0, s, w.data(),
                   packed.data());
  const dim3 grid(static_cast<unsigned>((s.n * s.h * s.w + sc::bm - 1) / sc::bm),
                  static_cast<unsigned>((s.c_out + BN - 1) / BN));
  KILN_CUDA_LAUNCH((kiln::cuda::kernels::conv2d_simt_forward_kernel<K, BN>), grid, dim3(sc::threads),
                   sc::Tile<BN>::shared_bytes, s, x.data(), packed.data(), b.data(), y.data());
  return y.to_vector();
}

[[maybe_unused]] std::string describe(const ConvShape& s) {
  std::ostringstream name;
  name << "N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w
       << " (forward tile 128x" << sc::block_n(s) << ", input gradient 128x" << sc::block_n(sc::transposed(s))
       << ", weight gradient " << sw::splits(s) << " splits)";
  return name.str();
}

}  // namespace

TEST_CASE("strict fp32: the SIMT implicit GEMM's workspace, and the direct kernels where it does not apply") {
  REQUIRE(B::math_mode() == kiln::cuda::MathMode::strict_fp32);
  const ConvShape s{2, 17, 70, 9, 7, 3};
  // k = tap * cin_pad + channel (Cin 17 -> 24), Cout padded to 4 (70 -> 72); the input gradient
  // packs the transposed shape (Cin 70 -> 72, Cout 17 -> 20).
  CHECK(sc::packed_weight_floats(s) == 9 * 24 * 72);
  CHECK(sc::packed_weight_floats(sc::transposed(s)) == 9 * 72 * 20);
  CHECK(B::conv2d_forward_workspace_floats(s) == 9 * 24 * 72);
  CHECK(B::conv2d_workspace_floats(s) == 9 * 24 * 72);  // the larger packing; 126 pixels: an unsplit wgrad
  // The weight gradient's partial sums: 4096 pixels, 2 tiles of Cin*K*K = 144 rows -> 16 splits.
  const ConvShape wide{4, 16, 16, 32, 32, 3};
  CHECK(sw::splits(s) == 1);
  CHECK(sw::splits(wide) == 16);
  CHECK(B::conv2d_workspace_floats(wide) == 16 * 16 * 16 * 9);
  CHECK(B::conv2d_workspace_floats({1, 3, 4, 9, 7, 5}) == 0);  // K = 5: the direct kernels
  CHECK(sc::supports({1, 3, 4, 9, 7, 1}));
  CHECK(!sc::supports({1, 3, 4, 9, 7, 5}));
  CHECK(!sc::supports({1 << 16, 64, 64, 32, 32, 3}));  // 2^32 elements: offsets past 32 bits
  // The block tile: 128 x 128 only where Cout > 64 and the grid still covers 132 SMs.
  CHECK(sc::block_n({16, 32, 32, 64, 64, 3}) == 64);
  CHECK(sc::block_n({16, 128, 128, 64, 64, 3}) == 128);
  CHECK(sc::block_n({16, 256, 256, 8, 8, 3}) == 64);
}

#if !KILN_EMU_THREADS  // 256 CUDA threads per block: too many OS threads in OS-thread mode
TEST_CASE("strict fp32: the SIMT implicit GEMM matches the reference loops") {
  const ConvShape shapes[] = {
      {1, 1, 32, 16, 16, 3},   // the first layer: Cin = 1 (one channel step of 8, 7 padded), 2 pixel tiles
      {2, 3, 5, 7, 9, 3},      // Cin 3, Cout 5 (padded to 8), H*W = 63: the scalar epilogue, M = 126 < 128
      {1, 17, 70, 10, 10, 3},  // Cin 17 (a tail step), Cout 70: two 64-wide tiles, the second partial
      {2, 32, 32, 8, 8, 3},    // a U-Net level (base width 32) at 8x8
      {1, 64, 32, 8, 8, 1},    // the U-Net's 1x1 reduce 2C -> C
      {3, 17, 9, 5, 5, 1},     // 1x1, Cin 17, H*W = 25 (images split inside 4-pixel groups)
      {2, 3, 5, 16, 16, 3},    // 512 pixels: the weight gradient in 2 splits and the reduction
      {1, 20, 3, 9, 9, 3},     // Cin*K*K = 180: two 128-row weight-gradient tiles, 81 pixels (a partial step)
  };
  std::uint64_t seed = 1;
  for (const ConvShape& s : shapes) {
    INFO(describe(s));
    const Operands o = operands(s, seed++);
    const auto want_y = reference_forward(s, o), want_dx = reference_input_gradient(s, o),
               want_dw = reference_weight_gradient(s, o);
    for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
      kiln_emu_test::ScopedSchedule order(schedule);
      kiln_test::record_launches(true);
      const Results got = backend_passes(s, o);
      kiln_test::record_launches(false);
      const auto launched = kiln_test::launched_kernels();
      CHECK(launched.count("conv2d_simt_forward_kernel") == 1);  // the SIMT path ran
      CHECK(launched.count("conv2d_simt_wgrad_kernel") == 1);
      CHECK(launched.count("conv2d_simt_wgrad_reduce_kernel") == (sw::splits(s) > 1 ? 1 : 0));
      CHECK(normalised_error(got.y, want_y) < strict_bound);
      CHECK(normalised_error(got.dx, want_dx) < strict_bound);
      CHECK(normalised_error(got.dw, want_dw) < strict_bound);
    }
  }
}

TEST_CASE("strict fp32: both SIMT block tiles, K = 1 and 3") {
  const ConvShape s3{1, 9, 130, 12, 12, 3}, s1{2, 20, 131, 9, 9, 1};  // Cout past one 128 tile; M = 144, 162
  const Operands o3 = operands(s3, 21), o1 = operands(s1, 22);
  const auto want3 = reference_forward(s3, o3), want1 = reference_forward(s1, o1);
  CHECK(normalised_error(forward_with_tile<3, 128>(s3, o3), want3) < strict_bound);
  CHECK(normalised_error(forward_with_tile<3, 64>(s3, o3), want3) < strict_bound);
  CHECK(normalised_error(forward_with_tile<1, 128>(s1, o1), want1) < strict_bound);
  CHECK(normalised_error(forward_with_tile<1, 64>(s1, o1), want1) < strict_bound);
}

// The check is not blind: the same comparison fails for a convolution with its taps mirrored (the
// input gradient's packing used for the forward, a plausible kernel bug) and for a result with one
// output changed in its 4th significant digit.
TEST_CASE("strict fp32: the SIMT check fires on a deliberate bug") {
  const ConvShape s{1, 8, 8, 8, 8, 3};
  const Operands o = operands(s, 31);
  const auto want = reference_forward(s, o);
  const auto x = device(Shape::nchw(1, 8, 8, 8), o.x), w = device(Shape{8, 8, 3, 3}, o.w), b = device(Shape{8}, o.b);
  auto y = device(Shape::nchw(1, 8, 8, 8), std::vector<float>(want.size(), 0.0f));
  Tensor<float, Cuda> packed(Shape{sc::packed_weight_floats(s)});
  // Cin = Cout: the transposed shape is s itself, so the Dgrad packing (w transposed in (c, o) and
  // rotated 180 degrees) fits the forward kernel's layout, with the wrong taps.
  KILN_CUDA_LAUNCH((kiln::cuda::kernels::conv2d_simt_pack_weights_kernel<true>), dim3(4), dim3(256), 0, s, w.data(),
                   packed.data());
  KILN_CUDA_LAUNCH((kiln::cuda::kernels::conv2d_simt_forward_kernel<3, 64>), dim3(1), dim3(sc::threads),
                   sc::Tile<64>::shared_bytes, s, x.data(), packed.data(), b.data(), y.data());
  CHECK(normalised_error(y.to_vector(), want) > 100 * strict_bound);

  const Results good = backend_passes(s, o);
  REQUIRE(normalised_error(good.y, want) < strict_bound);
  auto one_wrong = good.y;
  one_wrong[123] *= 1.001f;
  CHECK(normalised_error(one_wrong, want) > strict_bound);
}
#endif

// Which kernels the strict passes launch: with the planned workspace the SIMT GEMMs (weights packed
// first; the input gradient's transposed and rotated; the weight gradient split where it pays);
// without a workspace the direct forward and input gradient and the unsplit SIMT weight gradient;
// for K = 5 the direct kernels of conv2d.cuh. (Not in OS-thread mode: it checks names, and there
// its 256-thread blocks took 38 s of the ThreadSanitizer stage; the kernel table's small cases run
// every one of these kernels under ThreadSanitizer.)
#if !KILN_EMU_THREADS
TEST_CASE("strict fp32: kernel selection") {
  auto launches = [](const ConvShape& s, bool planned, bool backward) {
    kiln::Rng rng(41);
    const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
    const Shape wshape{s.c_out, s.c_in, s.k, s.k};
    const auto x = device(xs, kiln_test::random_vector(static_cast<std::size_t>(xs.numel()), rng));
    const auto w = device(wshape, kiln_test::random_vector(static_cast<std::size_t>(wshape.numel()), rng));
    const auto dy = device(ys, kiln_test::random_vector(static_cast<std::size_t>(ys.numel()), rng));
    Tensor<float, Cuda> b, y(ys), dx(xs), dw(wshape), db;
    Tensor<float, Cuda> ws = planned ? planned_workspace(s) : Tensor<float, Cuda>(Shape{1});
    kiln_test::record_launches(true);
    if (backward)
      B::conv2d_backward(s, x, w, dy, dx, dw, db, ws);
    else
      B::conv2d_forward(s, x, w, b, y, ws);
    kiln_test::record_launches(false);
    return kiln_test::launched_kernel_names();
  };
  using Names = std::set<std::string>;
  const ConvShape s3{1, 2, 3, 4, 5, 3}, s1{1, 3, 2, 4, 4, 1}, s5{1, 2, 3, 4, 5, 5};
  CHECK(launches(s3, true, false) ==
        Names{"conv2d_simt_pack_weights_kernel<false>", "conv2d_simt_forward_kernel<3, 64>"});
  CHECK(launches(s1, true, false) ==
        Names{"conv2d_simt_pack_weights_kernel<false>", "conv2d_simt_forward_kernel<1, 64>"});
  CHECK(launches(s3, true, true) == Names{"conv2d_simt_pack_weights_kernel<true>", "conv2d_simt_forward_kernel<3, 64>",
                                          "conv2d_simt_wgrad_kernel<3, 64>"});
  // 1024 pixels, one tile: split in 4 with the planned workspace, unsplit without.
  const ConvShape split{1, 2, 3, 32, 32, 1};
  REQUIRE(sw::splits(split) == 4);
  CHECK(launches(split, true, true) == Names{"conv2d_simt_pack_weights_kernel<true>",
                                             "conv2d_simt_forward_kernel<1, 64>", "conv2d_simt_wgrad_kernel<1, 64>",
                                             "conv2d_simt_wgrad_reduce_kernel<float>"});
  CHECK(launches(s3, false, false) == Names{"conv2d_forward_kernel<3>"});
  CHECK(launches(s3, false, true) == Names{"conv2d_backward_data_kernel<3>", "conv2d_simt_wgrad_kernel<3, 64>"});
  CHECK(launches(split, false, true) == Names{"conv2d_backward_data_kernel<1>", "conv2d_simt_wgrad_kernel<1, 64>"});
  CHECK(launches(s5, true, true) == Names{"conv2d_backward_data_kernel<0>", "conv2d_backward_weight_kernel<0>"});
  CHECK(launches(s5, true, false) == Names{"conv2d_forward_kernel<0>"});
  {  // under TF32 the tensor-core kernels, not these
    kiln::cuda::MathModeScope tf32(kiln::cuda::MathMode::tf32);
    CHECK(launches(s3, true, false).count("conv2d_simt_forward_kernel<3, 64>") == 0);
  }
}
#endif
