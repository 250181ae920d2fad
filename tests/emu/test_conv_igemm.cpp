// The TF32 convolutions of Backend<Cuda> under MathMode::tf32 (the mma.sync forward of
// kernels/conv2d_mma.cuh with its planned workspace, else the implicit-GEMM forward; the
// implicit-GEMM gradients of kernels/conv2d_igemm.cuh) against plain loops in double on TF32
// operands (the mma forward truncates the activations, the rest rounds them): only the fp32
// accumulation may differ (normalised error < 2e-6), while the strict fp32 reference is visibly
// different (so the rounding really happens, and happens to the right operands). Shapes: U-Net
// levels small enough for the emulator, 4x4 images, batch 1, channels that are not tile
// multiples, a first layer with one input channel; the weight gradient split (split-K) and
// unsplit, accumulating onto existing gradients.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
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
using kiln_test::normalised_error;

double tf32(float v) { return static_cast<double>(kiln::gpu::wmma::__float_to_tf32(v)); }
// How the mma.sync forward hands the activations to the tensor core: the low 13 bits dropped.
double tf32_truncated(float v) { return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) & 0xffffe000u); }

struct Expected {
  std::vector<float> y, dx, dw;  // dw includes the initial gradient it accumulates onto
};

// y and dw by plain loops in double, operands rounded to TF32 as the kernels round them (for y,
// the activations truncated instead where x_truncated: the mma.sync forward).
Expected reference(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                   const std::vector<float>& b, const std::vector<float>& dy, const std::vector<float>& dw0,
                   bool x_truncated = false) {
  const std::int64_t K = s.k, P = K / 2, H = s.h, W = s.w;
  Expected e;
  e.y.assign(static_cast<std::size_t>(s.n * s.c_out * H * W), 0.0f);
  std::vector<double> dw(dw0.begin(), dw0.end());
  auto X = [&](std::int64_t n, std::int64_t c, std::int64_t i, std::int64_t j) {
    return (i < 0 || i >= H || j < 0 || j >= W) ? 0.0 : tf32(x[((n * s.c_in + c) * H + i) * W + j]);
  };
  auto X_for_y = [&](std::int64_t n, std::int64_t c, std::int64_t i, std::int64_t j) {
    if (!x_truncated) return X(n, c, i, j);
    return (i < 0 || i >= H || j < 0 || j >= W) ? 0.0 : tf32_truncated(x[((n * s.c_in + c) * H + i) * W + j]);
  };
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j) {
          double acc = b[o];
          const double g = tf32(dy[((n * s.c_out + o) * H + i) * W + j]);
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < K; ++u)
              for (std::int64_t v = 0; v < K; ++v) {
                const std::size_t wi = static_cast<std::size_t>(((o * s.c_in + c) * K + u) * K + v);
                const double xv = X(n, c, i + u - P, j + v - P);
                acc += tf32(w[wi]) * X_for_y(n, c, i + u - P, j + v - P);
                dw[wi] += g * xv;
              }
          e.y[static_cast<std::size_t>(((n * s.c_out + o) * H + i) * W + j)] = static_cast<float>(acc);
        }
  e.dw.assign(dw.begin(), dw.end());
  return e;
}

// dw0 + sum over pixels of dy x, in double on the operands the mma.sync weight gradient sees
// (conv2d_mma_wgrad.cuh: dy and x truncated to TF32).
std::vector<float> reference_dw_truncated(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& dy,
                                          const std::vector<float>& dw0) {
  const std::int64_t K = s.k, P = K / 2, H = s.h, W = s.w;
  std::vector<double> dw(dw0.begin(), dw0.end());
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j) {
          const double g = tf32_truncated(dy[((n * s.c_out + o) * H + i) * W + j]);
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < K; ++u)
              for (std::int64_t v = 0; v < K; ++v) {
                const std::int64_t ii = i + u - P, jj = j + v - P;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                dw[static_cast<std::size_t>(((o * s.c_in + c) * K + u) * K + v)] +=
                    g * tf32_truncated(x[((n * s.c_in + c) * H + ii) * W + jj]);
              }
        }
  return {dw.begin(), dw.end()};
}

// dx[n][c][i][j] = sum_{o,u,v} dy[n][o][i+P-u][j+P-v] w[o][c][u][v], in double on TF32 operands
// (dy truncated where dy_truncated: the mma.sync input gradient).
std::vector<float> reference_dx(const ConvShape& s, const std::vector<float>& w, const std::vector<float>& dy,
                                bool dy_truncated = false) {
  const std::int64_t K = s.k, P = K / 2, H = s.h, W = s.w;
  std::vector<float> dx(static_cast<std::size_t>(s.n * s.c_in * H * W));
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t c = 0; c < s.c_in; ++c)
      for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j) {
          double acc = 0;
          for (std::int64_t o = 0; o < s.c_out; ++o)
            for (std::int64_t u = 0; u < K; ++u)
              for (std::int64_t v = 0; v < K; ++v) {
                const std::int64_t yi = i + P - u, yj = j + P - v;
                if (yi < 0 || yi >= H || yj < 0 || yj >= W) continue;
                const float g = dy[((n * s.c_out + o) * H + yi) * W + yj];
                acc += (dy_truncated ? tf32_truncated(g) : tf32(g)) * tf32(w[((o * s.c_in + c) * K + u) * K + v]);
              }
          dx[static_cast<std::size_t>(((n * s.c_in + c) * H + i) * W + j)] = static_cast<float>(acc);
        }
  return dx;
}

struct Result {
  std::vector<float> y, dx, dw, db;
};

Result run_cuda(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                const std::vector<float>& b, const std::vector<float>& dy, const std::vector<float>& dw0,
                bool with_workspace) {
  using B = kiln::Backend<Cuda>;
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const Shape ws_shape{s.c_out, s.c_in, s.k, s.k};
  auto tx = Tensor<float, Cuda>::from_host(xs, x), tw = Tensor<float, Cuda>::from_host(ws_shape, w);
  auto tb = Tensor<float, Cuda>::from_host(Shape{s.c_out}, b), tdy = Tensor<float, Cuda>::from_host(ys, dy);
  auto tdw = Tensor<float, Cuda>::from_host(ws_shape, dw0);
  Tensor<float, Cuda> ty(ys), tdx(xs), tdb(Shape{s.c_out});
  const std::size_t floats = with_workspace ? B::conv2d_workspace_floats(s) : 0;
  Tensor<float, Cuda> work(Shape{static_cast<std::int64_t>(floats) + 1});
  B::conv2d_forward(s, tx, tw, tb, ty, work);
  B::conv2d_backward(s, tx, tw, tdy, tdx, tdw, tdb, work);
  return {ty.to_vector(), tdx.to_vector(), tdw.to_vector(), tdb.to_vector()};
}

[[maybe_unused]] void check_shape(const ConvShape& s, std::uint64_t seed) {  // unused in OS-thread mode
  std::ostringstream name;
  name << "N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w;
  INFO(name.str());
  kiln::Rng rng(seed);
  const auto x = kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), rng, -2.0f, 2.0f);
  const auto w = kiln_test::random_vector(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), rng);
  const auto b = kiln_test::random_vector(static_cast<std::size_t>(s.c_out), rng);
  const auto dy = kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), rng);
  const auto dw0 = kiln_test::random_vector(w.size(), rng);
  Expected want = reference(s, x, w, b, dy, dw0);
  want.dx = reference_dx(s, w, dy);
  const std::vector<float> want_y_mma = reference(s, x, w, b, dy, dw0, true).y;
  const std::vector<float> want_dx_mma = reference_dx(s, w, dy, true);
  // The mma.sync weight gradient takes H*W % 4 == 0 (with or without a workspace: unsplit without).
  const bool mma_wgrad = kiln::cuda::kernels::mma_wgrad::supports(s);
  const std::vector<float> want_dw = mma_wgrad ? reference_dw_truncated(s, x, dy, dw0) : want.dw;

  kiln::cuda::MathModeScope mode(kiln::cuda::MathMode::tf32);
  for (bool with_workspace : {true, false}) {
    INFO("workspace: ", with_workspace ? "planned (mma.sync forward and input gradient, split-K if it pays)"
                                       : "none (implicit-GEMM forward and input gradient, unsplit weight gradient)");
    INFO("weight gradient: ", mma_wgrad ? "mma.sync" : "implicit GEMM");
    const Result got = run_cuda(s, x, w, b, dy, dw0, with_workspace);
    CHECK(normalised_error(got.y, with_workspace ? want_y_mma : want.y) < 2e-6);
    CHECK(normalised_error(got.dx, with_workspace ? want_dx_mma : want.dx) < 2e-6);
    CHECK(normalised_error(got.dw, want_dw) < 2e-6);
  }
  // The strict fp32 kernels on the same data are further away from the TF32 reference.
  kiln::cuda::set_math_mode(kiln::cuda::MathMode::strict_fp32);
  const Result strict = run_cuda(s, x, w, b, dy, dw0, true);
  CHECK(normalised_error(strict.y, want.y) > 1e-5);
  CHECK(normalised_error(strict.dx, want.dx) > 1e-5);
}

}  // namespace

// Not in OS-thread mode (ThreadSanitizer builds): there 128 std::threads per block rendezvous at
// every fragment operation (~30 s for one 5x4 image on the shared CI machine); the tiny tf32 rows
// of the kernel table run the same kernels under ThreadSanitizer.
#if !KILN_EMU_THREADS
TEST_CASE("tf32 implicit-GEMM conv: forward, input and weight gradients equal TF32-rounded loops") {
  check_shape({1, 3, 5, 13, 11, 3}, 1);  // batch 1, channels below one k step, tiles past the image
  check_shape({3, 5, 7, 13, 11, 3}, 2);  // D tiles span several images; split weight gradient
  check_shape({1, 8, 16, 4, 4, 3}, 3);   // a 4x4 image: every tap touches the padding
  check_shape({2, 1, 4, 9, 9, 3}, 4);    // the first U-Net layer: one input channel
  check_shape({2, 17, 66, 8, 8, 1}, 5);  // 1x1 with M = 66 over two tiles, Kg = 17
#if !KILN_EMU_ASAN  // the sanitizer build emulates every lane's mma ~10x slower: the small shapes only
  check_shape({2, 32, 32, 16, 16, 3}, 6);  // a U-Net level (base width 32) at 16x16
  check_shape({1, 64, 32, 8, 8, 1}, 7);    // the U-Net's 1x1 reduce 2C -> C
#endif
}
#endif

TEST_CASE("tf32 math mode: selection and fall-back") {
  using kiln::cuda::MathMode;
  CHECK(kiln::Backend<Cuda>::math_mode() == MathMode::strict_fp32);  // the default
  const ConvShape s3{2, 5, 7, 13, 11, 3}, s5{1, 3, 4, 9, 7, 5};
  // strict fp32: the SIMT implicit GEMM's packed weights (Cin padded to 8, Cout to 4; tests/emu/test_conv_simt.cpp)
  CHECK(kiln::Backend<Cuda>::conv2d_workspace_floats(s3) == 9 * 8 * 8);
  {
    kiln::cuda::MathModeScope scope(MathMode::tf32);
    CHECK(kiln::Backend<Cuda>::math_mode() == MathMode::tf32);
    CHECK(kiln::Backend<Cuda>::conv2d_workspace_floats(s3) > 0);  // split-K partial sums, packed weights
    // The packed weights: Cout x K*K taps x Cin rounded up to 16, in the forward's and the layer's plan,
    // then the split-K partial tiles (3 tiles of 128 x 64 in 2 slices: 9 k steps) and 3 counters.
    CHECK(kiln::cuda::kernels::mma_conv::splits(s3) == 2);
    CHECK(kiln::Backend<Cuda>::conv2d_forward_workspace_floats(s3) == 7 * 9 * 16 + 2 * 3 * 128 * 64 + 3);
    CHECK(kiln::Backend<Cuda>::conv2d_workspace_floats(s3) >= 7 * 9 * 16);
    CHECK(kiln::Backend<Cuda>::conv2d_forward_workspace_floats(s5) == 0);
    CHECK(kiln::Backend<Cuda>::conv2d_workspace_floats(s5) == 0);  // K = 5 keeps the strict kernels
    kiln_test::record_launches(true);
    kiln::Rng rng(9);
    const auto x = Tensor<float, Cuda>::from_host(Shape::nchw(1, 3, 9, 7), kiln_test::random_vector(189, rng));
    const auto w = Tensor<float, Cuda>::from_host(Shape{4, 3, 5, 5}, kiln_test::random_vector(300, rng));
    Tensor<float, Cuda> b, y(Shape::nchw(1, 4, 9, 7)), ws(Shape{1});
    kiln::Backend<Cuda>::conv2d_forward(s5, x, w, b, y, ws);
    kiln_test::record_launches(false);
    CHECK(kiln_test::launched_kernels() == std::set<std::string>{"conv2d_forward_kernel"});
  }
  CHECK(kiln::Backend<Cuda>::math_mode() == MathMode::strict_fp32);  // restored
  CHECK(kiln::cuda::parse_math_mode("tf32") == MathMode::tf32);
  CHECK_THROWS_WITH_AS(kiln::cuda::parse_math_mode("fp16"), doctest::Contains("use fp32"), kiln::Error);
}

// Which TF32 forward runs: mma.sync (weights packed first) with the planned workspace, block tile
// 128 x 64 while Cout <= 64 and 128 x 128 above; the implicit GEMM when the workspace is too small
// (a layer planned under strict fp32). A training plan's workspace: both packings in one launch
// (the input gradient's kept for the backward); an eval plan's: the forward's packing only.
TEST_CASE("tf32 forward: mma.sync with the planned workspace, implicit GEMM without") {
  using B = kiln::Backend<Cuda>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32);
  enum Plan { none, eval, train };
  auto forward_launches = [](const ConvShape& s, Plan plan) {
    kiln::Rng rng(11);
    const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w);
    const auto x = Tensor<float, Cuda>::from_host(xs, kiln_test::random_vector(xs.numel(), rng));
    const auto w = Tensor<float, Cuda>::from_host(
        Shape{s.c_out, s.c_in, s.k, s.k},
        kiln_test::random_vector(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), rng));
    Tensor<float, Cuda> b, y(Shape::nchw(s.n, s.c_out, s.h, s.w));
    const std::size_t floats = plan == train  ? B::conv2d_workspace_floats(s)
                               : plan == eval ? B::conv2d_forward_workspace_floats(s)
                                              : 0;
    Tensor<float, Cuda> ws(Shape{static_cast<std::int64_t>(floats) + 1});
    kiln_test::record_launches(true);
    B::conv2d_forward(s, x, w, b, y, ws);
    kiln_test::record_launches(false);
    return kiln_test::launched_kernel_names();
  };
  CHECK(forward_launches({1, 5, 7, 4, 5, 3}, eval) ==
        std::set<std::string>{"conv2d_mma_pack_weights_kernel<3>", "conv2d_mma_forward_kernel<3, 64, true>"});
  // 8649 pixels: 68 tiles of 128 x 128 (33 or fewer take 128 x 64: mma_conv::block_n).
  CHECK(forward_launches({1, 16, 80, 93, 93, 1}, eval) ==
        std::set<std::string>{"conv2d_mma_pack_weights_kernel<1>", "conv2d_mma_forward_kernel<1, 128, false>"});
  CHECK(forward_launches({1, 5, 7, 4, 5, 3}, train) ==
        std::set<std::string>{"conv2d_mma_pack_weights_both_kernel<3>", "conv2d_mma_forward_kernel<3, 64, true>"});
  CHECK(forward_launches({1, 16, 80, 3, 3, 1}, eval) ==
        std::set<std::string>{"conv2d_mma_pack_weights_kernel<1>", "conv2d_mma_forward_kernel<1, 64, false>"});
  CHECK(forward_launches({1, 16, 80, 93, 93, 1}, train) ==
        std::set<std::string>{"conv2d_mma_pack_weights_both_kernel<1>", "conv2d_mma_forward_kernel<1, 128, false>"});
  CHECK(forward_launches({1, 5, 7, 4, 5, 3}, none) == std::set<std::string>{"conv2d_igemm_forward_kernel<3>"});
}

// The backend's TF32 forward and input gradient on the tall 256 x 64 tile where the plan takes it
// (mma_conv::tall: 17424 pixels are 137 tiles of 128 x 64 in two waves of 132, or 69 tall ones in
// one), against the CPU backend; the launches name the tall kernel. (Not in OS-thread mode.)
#if !KILN_EMU_THREADS
TEST_CASE("tf32 forward and input gradient: the tall 256 x 64 tile where the plan takes it") {
  using B = kiln::Backend<Cuda>;
  using C = kiln::Backend<kiln::Cpu>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32);
  const ConvShape s{1, 16, 16, 132, 132, 3};
  REQUIRE(kiln::cuda::kernels::mma_conv::tall(s));
  REQUIRE(kiln::cuda::kernels::mma_conv::tall(kiln::cuda::kernels::mma_conv::transposed(s)));
  kiln::Rng rng(41);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w),
              wshape{s.c_out, s.c_in, s.k, s.k};
  const auto xv = kiln_test::random_vector(xs.numel(), rng), wv = kiln_test::random_vector(wshape.numel(), rng),
             dyv = kiln_test::random_vector(ys.numel(), rng);
  Tensor<float, Cuda> b, y(ys), dx(xs), dw, db, ws(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1});
  const auto x = Tensor<float, Cuda>::from_host(xs, xv), w = Tensor<float, Cuda>::from_host(wshape, wv),
             dy = Tensor<float, Cuda>::from_host(ys, dyv);
  kiln_test::record_launches(true);
  B::conv2d_forward(s, x, w, b, y, ws);
  B::conv2d_backward(s, x, w, dy, dx, dw, db, ws);
  kiln_test::record_launches(false);
  CHECK(kiln_test::launched_kernel_names().count("conv2d_mma_forward_tall_kernel<3>") == 1);
  Tensor<float, kiln::Cpu> y_cpu(ys), dx_cpu(xs), dw_cpu, db_cpu, b_cpu,
      work(Shape{static_cast<std::int64_t>(C::conv2d_workspace_floats(s)) + 1});
  const auto x_cpu = Tensor<float, kiln::Cpu>::from_host(xs, xv),
             w_cpu = Tensor<float, kiln::Cpu>::from_host(wshape, wv);
  C::conv2d_forward(s, x_cpu, w_cpu, b_cpu, y_cpu, work);
  C::conv2d_backward(s, x_cpu, w_cpu, Tensor<float, kiln::Cpu>::from_host(ys, dyv), dx_cpu, dw_cpu, db_cpu, work);
  CHECK(normalised_error(y.to_vector(), y_cpu.to_vector()) < 2e-3);
  CHECK(normalised_error(dx.to_vector(), dx_cpu.to_vector()) < 2e-3);
}
#endif

// Which TF32 gradients run: with the planned workspace the input gradient on mma.sync (weights
// packed transposed and rotated, then the forward kernel on the transposed shape) and the weight
// gradient on mma.sync (split-K and its fixed-order reduction where it pays); without a workspace
// the implicit-GEMM input gradient and the unsplit mma.sync weight gradient; H*W not a multiple of
// 4 the implicit-GEMM weight gradient. (Not in OS-thread mode: up to 128 std::threads per block.)
#if !KILN_EMU_THREADS
TEST_CASE("tf32 backward: mma.sync gradients with the planned workspace, implicit GEMM where they cannot run") {
  using B = kiln::Backend<Cuda>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32);
  auto backward_launches = [](const ConvShape& s, bool planned) {
    kiln::Rng rng(13);
    const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
    const auto x = Tensor<float, Cuda>::from_host(xs, kiln_test::random_vector(xs.numel(), rng));
    const auto dy = Tensor<float, Cuda>::from_host(ys, kiln_test::random_vector(ys.numel(), rng));
    const Shape wshape{s.c_out, s.c_in, s.k, s.k};
    const auto w = Tensor<float, Cuda>::from_host(wshape, kiln_test::random_vector(wshape.numel(), rng));
    Tensor<float, Cuda> dx(xs), dw(wshape), db;
    Tensor<float, Cuda> ws(Shape{planned ? static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1 : 1});
    kiln_test::record_launches(true);
    B::conv2d_backward(s, x, w, dy, dx, dw, db, ws);
    kiln_test::record_launches(false);
    return kiln_test::launched_kernel_names();
  };
  // Cout 7 -> dgrad reads 7 channels (a channel tail) into Cin 5 (128x64 tile); one wgrad split.
  CHECK(backward_launches({1, 5, 7, 4, 5, 3}, true) ==
        std::set<std::string>{"conv2d_mma_pack_weights_dgrad_kernel<3>", "conv2d_mma_forward_kernel<3, 64, true>",
                              "conv2d_mma_wgrad_kernel<3, 64, 64, 1, true>"});
  // 256 pixels = 16 k steps: two wgrad splits and the reduction; dgrad into 16 channels.
  CHECK(backward_launches({1, 16, 80, 16, 16, 1}, true) ==
        std::set<std::string>{"conv2d_mma_pack_weights_dgrad_kernel<1>", "conv2d_mma_forward_kernel<1, 64, false>",
                              "conv2d_mma_wgrad_kernel<1, 64, 64, 1, true>", "conv2d_mma_wgrad_reduce_kernel<1>"});
  // 128 channels both ways: the weight gradient's 128x128 tile; the input gradient's 16 pixels on
  // mma.sync's 128x64 tiles (128 x 128 ones would fill 1 SM), or, on a device that runs wgmma (the
  // emulator, an H100), on its short 64 x 128 tile in 5 slices (tf32_forward::plan); the preference
  // for mma.sync keeps the weight gradient there too.
  {
    namespace tp = kiln::cuda::kernels::tf32_forward;
    tp::PreferenceScope mma_sync(tp::Preference::mma_sync);
    CHECK(backward_launches({1, 128, 128, 4, 4, 3}, true) ==
          std::set<std::string>{"conv2d_mma_pack_weights_dgrad_kernel<3>", "conv2d_mma_forward_kernel<3, 64, false>",
                                "conv2d_mma_wgrad_kernel<3, 128, 128, 1, false>"});
  }
  CHECK(backward_launches({1, 128, 128, 4, 4, 3}, true) ==  // ... and the weight gradient on wgmma too
        std::set<std::string>{"conv2d_mma_pack_weights_dgrad_kernel<3>", "conv2d_wgmma_forward_short_kernel<3>",
                              "conv2d_wgmma_wgrad_kernel<3, 128, 1, false>"});
  CHECK(backward_launches({1, 5, 7, 4, 5, 3}, false) ==
        std::set<std::string>{"conv2d_igemm_backward_data_kernel<3>", "conv2d_mma_wgrad_kernel<3, 64, 64, 1, true>"});
  CHECK(backward_launches({1, 5, 7, 5, 7, 3}, true) ==  // H*W = 35
        std::set<std::string>{"conv2d_mma_pack_weights_dgrad_kernel<3>", "conv2d_mma_forward_kernel<3, 64, true>",
                              "conv2d_igemm_backward_weight_kernel<3>"});
}
#endif

// The backend's weight gradient on the stream-K schedule (mma_wgrad::splits plans it for 36 tiles of
// 128 x 128 with 128 k steps each: 132 blocks of 35; mma.sync, by the family preference): against
// fp32 within TF32's error, the same bits on a second call (its counters were left at 0, its pieces
// added in k order); on wgmma (the emulator runs sm_90a code) the plan adds each tile's splits in
// a cluster (mma_wgrad::wgmma_splits), checked alike; under BF16 the grid's split-K of the BF16 kernel.
#if !KILN_EMU_THREADS && !KILN_EMU_ASAN
TEST_CASE("tf32 backward: the weight gradient on the stream-K schedule through Backend<Cuda>") {
  using B = kiln::Backend<Cuda>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32);
  const ConvShape s{2, 192, 192, 32, 32, 3};
  REQUIRE(kiln::cuda::kernels::mma_wgrad::splits(s).stream_k);
  kiln::Rng rng(17);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const Shape wshape{s.c_out, s.c_in, s.k, s.k};
  const std::vector<float> x = kiln_test::random_vector(xs.numel(), rng),
                           dy = kiln_test::random_vector(ys.numel(), rng);
  const std::vector<float> w = kiln_test::random_vector(wshape.numel(), rng);
  std::vector<float> want_dw(w.size(), 0.0f);
  kiln::cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, want_dw.data(), nullptr);
  const auto dx_ = Tensor<float, Cuda>::from_host(xs, x), dy_ = Tensor<float, Cuda>::from_host(ys, dy);
  const auto w_ = Tensor<float, Cuda>::from_host(wshape, w);
  Tensor<float, Cuda> no_dx, db, ws(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1});
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  namespace tp = kiln::cuda::kernels::tf32_forward;
  REQUIRE(mw::wgmma_splits(s, mw::geometry(s)).cluster > 1);
  for (const auto preference : {tp::Preference::mma_sync, tp::Preference::model}) {
    tp::PreferenceScope family(preference);
    const std::string kernel = preference == tp::Preference::mma_sync
                                   ? "conv2d_mma_wgrad_stream_k_kernel<3, 128, 128, 1, false>"
                                   : "conv2d_wgmma_wgrad_kernel<3, 128, 1, false>";
    std::vector<std::vector<float>> runs;
    for (int call = 0; call < 2; ++call) {
      Tensor<float, Cuda> dw(wshape);  // zero-filled
      kiln_test::record_launches(true);
      B::conv2d_backward(s, dx_, w_, dy_, no_dx, dw, db, ws);
      kiln_test::record_launches(false);
      CHECK(kiln_test::launched_kernel_names() == std::set<std::string>{kernel});
      runs.push_back(dw.to_vector());
      CHECK(normalised_error(runs.back(), want_dw) < 2e-3);
    }
    CHECK(std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(float)) == 0);
  }
  // MathMode::bf16 on the same shape: the BF16 kernel runs the grid's split-K (it has no stream-K
  // schedule; a stream-K plan read as split counts would sum 132 "splits" past the last k step).
  kiln::cuda::MathModeScope bf16(kiln::cuda::MathMode::bf16);
  Tensor<float, Cuda> dw(wshape), ws16(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1});
  kiln_test::record_launches(true);
  B::conv2d_backward(s, dx_, w_, dy_, no_dx, dw, db, ws16);
  kiln_test::record_launches(false);
  CHECK(kiln_test::launched_kernel_names().count("conv2d_mma_bf16_wgrad_kernel<3, 128>") == 1);
  CHECK(kiln_test::launched_kernel_names().count("conv2d_mma_wgrad_stream_k_kernel<3, 128, 128, 1, false>") == 0);
  CHECK(normalised_error(dw.to_vector(), want_dw) < 1e-2);
}
#endif

// The weight gradient's split-K sums the splits in a fixed order: the same bits on every run,
// whatever order the emulator runs the threads and blocks in.
#if !KILN_EMU_THREADS
TEST_CASE("tf32 weight gradient on mma.sync: bit-identical from run to run (split-K, fixed-order reduction)") {
  using B = kiln::Backend<Cuda>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32);
  const ConvShape s{2, 32, 32, 16, 16, 3};
  REQUIRE(kiln::cuda::kernels::mma_wgrad::splits(s).count > 1);
  kiln::Rng rng(17);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const Shape wshape{s.c_out, s.c_in, s.k, s.k};
  const auto x = Tensor<float, Cuda>::from_host(xs, kiln_test::random_vector(xs.numel(), rng));
  const auto dy = Tensor<float, Cuda>::from_host(ys, kiln_test::random_vector(ys.numel(), rng));
  const auto w = Tensor<float, Cuda>::from_host(wshape, kiln_test::random_vector(wshape.numel(), rng));
  Tensor<float, Cuda> ws(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s))});
  std::vector<std::vector<std::uint32_t>> runs;
  for (auto schedule :
       {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse, kiln::gpu::emu::Schedule::random}) {
    const auto saved = kiln::gpu::emu::schedule();
    kiln::gpu::emu::set_schedule(schedule);
    Tensor<float, Cuda> dx, db, dw = Tensor<float, Cuda>::from_host(wshape, std::vector<float>(wshape.numel(), 0.0f));
    B::conv2d_backward(s, x, w, dy, dx, dw, db, ws);
    kiln::gpu::emu::set_schedule(saved);
    std::vector<std::uint32_t> bits;
    for (float v : dw.to_vector()) bits.push_back(std::bit_cast<std::uint32_t>(v));
    runs.push_back(bits);
  }
  CHECK(runs[0] == runs[1]);
  CHECK(runs[0] == runs[2]);
  CHECK(std::count(runs[0].begin(), runs[0].end(), 0u) == 0);  // every weight got its gradient
}
#endif

// The forward and the input gradient split their k steps where the tiles fill few SMs and the
// planned workspace holds the partial tiles (mma_conv::splits); a workspace with room for the packed
// weights only runs them unsplit. Both equal the TF32 loops; the split ones have the same bits under
// every schedule (each tile's slices are added in slice order by its last block).
#if !KILN_EMU_THREADS
TEST_CASE("tf32 forward and input gradient on mma.sync: split-K with the planned workspace, deterministic") {
  using B = kiln::Backend<Cuda>;
  namespace mc = kiln::cuda::kernels::mma_conv;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32);
  const ConvShape s{2, 64, 128, 8, 8, 3};  // one 128-pixel tile: forward 4 slices, input gradient 6
  REQUIRE(mc::splits(s) == 4);
  REQUIRE(mc::splits(mc::transposed(s)) == 6);
  const auto planned = static_cast<std::int64_t>(B::conv2d_workspace_floats(s));
  CHECK(planned >= mc::workspace_floats(s, 4));
  CHECK(planned >= mc::workspace_floats(mc::transposed(s), 6));
  kiln::Rng rng(19);
  const auto x = kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), rng, -2.0f, 2.0f);
  const auto w = kiln_test::random_vector(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), rng);
  const auto b = kiln_test::random_vector(static_cast<std::size_t>(s.c_out), rng);
  const auto dy = kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), rng);
  const std::vector<float> dw0(w.size(), 0.0f);
  const std::vector<float> want_y = reference(s, x, w, b, dy, dw0, true).y, want_dx = reference_dx(s, w, dy, true);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const Shape wshape{s.c_out, s.c_in, s.k, s.k};
  const auto tx = Tensor<float, Cuda>::from_host(xs, x), tw = Tensor<float, Cuda>::from_host(wshape, w);
  const auto tb = Tensor<float, Cuda>::from_host(Shape{s.c_out}, b), tdy = Tensor<float, Cuda>::from_host(ys, dy);
  auto bits = [](const std::vector<float>& v) {
    std::vector<std::uint32_t> out;
    for (float f : v) out.push_back(std::bit_cast<std::uint32_t>(f));
    return out;
  };
  auto run = [&](std::int64_t floats) {
    Tensor<float, Cuda> ws(Shape{floats}), y(ys), dx(xs), dw, db;
    B::conv2d_forward(s, tx, tw, tb, y, ws);
    B::conv2d_backward(s, tx, tw, tdy, dx, dw, db, ws);
    return std::pair{y.to_vector(), dx.to_vector()};
  };
  std::vector<std::uint32_t> first_y, first_dx;
  for (auto schedule :
       {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse, kiln::gpu::emu::Schedule::random}) {
    const auto saved = kiln::gpu::emu::schedule();
    kiln::gpu::emu::set_schedule(schedule);
    const auto [y, dx] = run(planned);
    kiln::gpu::emu::set_schedule(saved);
    if (first_y.empty()) {
      first_y = bits(y);
      first_dx = bits(dx);
      CHECK(normalised_error(y, want_y) < 2e-6);
      CHECK(normalised_error(dx, want_dx) < 2e-6);
    } else {
      CHECK(bits(y) == first_y);
      CHECK(bits(dx) == first_dx);
    }
  }
  // Room for the packed weights only (a workspace planned without the partial tiles): unsplit.
  const auto [y1, dx1] = run(std::max(mc::packed_weight_floats(s), mc::packed_dgrad_weight_floats(s)));
  CHECK(normalised_error(y1, want_y) < 2e-6);
  CHECK(normalised_error(dx1, want_dx) < 2e-6);
}
#endif

// A training forward under TF32 packs the input gradient's weights with its own in one launch and
// keeps them in the workspace (tf32_forward::dgrad_offset; ConvKept::tf32_dgrad_packing); told so, the
// backward's input gradient launches no packing and has the bits of one that packs again. Where
// the promise cannot hold (another mode, a workspace without room for both) nothing is kept or
// used. Deliberate bugs: the packing of other weights (a stale one) or an overwritten one, told
// kept, give a wrong dx, so the bit comparison above would catch a backward that read them.
#if !KILN_EMU_THREADS
TEST_CASE("tf32 training forward: both packings in one launch, the input gradient on the kept one, bit for bit") {
  using B = kiln::Backend<Cuda>;
  using kiln::ConvKept;
  namespace mc = kiln::cuda::kernels::mma_conv;
  namespace tp = kiln::cuda::kernels::tf32_forward;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32);
  const ConvShape s{2, 20, 24, 8, 8, 3};  // one 128-pixel tile: both passes split-K over 3 slices
  REQUIRE(mc::splits(s) == 3);
  REQUIRE(mc::splits(mc::transposed(s)) == 3);
  const auto planned = static_cast<std::int64_t>(B::conv2d_workspace_floats(s));
  CHECK(planned >= tp::kept_workspace_floats(s));
  kiln::Rng rng(23);
  const auto x = kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), rng, -2.0f, 2.0f);
  const auto w = kiln_test::random_vector(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), rng);
  const auto w_other = kiln_test::random_vector(w.size(), rng);
  const auto b = kiln_test::random_vector(static_cast<std::size_t>(s.c_out), rng);
  const auto dy = kiln_test::random_vector(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), rng);
  const std::vector<float> want_dx = reference_dx(s, w, dy, true);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const Shape wshape{s.c_out, s.c_in, s.k, s.k};
  const auto tx = Tensor<float, Cuda>::from_host(xs, x), tw = Tensor<float, Cuda>::from_host(wshape, w),
             tw_other = Tensor<float, Cuda>::from_host(wshape, w_other);
  const auto tb = Tensor<float, Cuda>::from_host(Shape{s.c_out}, b), tdy = Tensor<float, Cuda>::from_host(ys, dy);
  Tensor<float, Cuda> ws(Shape{planned}),
      eval_ws(Shape{static_cast<std::int64_t>(B::conv2d_forward_workspace_floats(s))}),
      small_ws(Shape{tp::kept_workspace_floats(s) - 1}), y(ys), dx(xs), no_dw, no_db;
  // What the forward keeps: the packing with room for both, under TF32 only.
  CHECK(B::conv2d_forward_kept(s, ws) == ConvKept::tf32_dgrad_packing);
  CHECK(B::conv2d_forward_kept(s, eval_ws) == ConvKept::nothing);
  CHECK(B::conv2d_forward_kept(s, small_ws) == ConvKept::nothing);
  {
    kiln::cuda::MathModeScope strict(kiln::cuda::MathMode::strict_fp32);
    CHECK(B::conv2d_forward_kept(s, ws) == ConvKept::nothing);
  }
  {
    kiln::cuda::MathModeScope bf16(kiln::cuda::MathMode::bf16);
    CHECK(B::conv2d_forward_kept(s, ws) != ConvKept::tf32_dgrad_packing);
  }
  auto bits = [](const std::vector<float>& v) {
    std::vector<std::uint32_t> out;
    for (float f : v) out.push_back(std::bit_cast<std::uint32_t>(f));
    return out;
  };
  auto forward = [&](const Tensor<float, Cuda>& weights, Tensor<float, Cuda>& work) {
    kiln_test::record_launches(true);
    B::conv2d_forward(s, tx, weights, tb, y, work);
    kiln_test::record_launches(false);
    return std::pair{bits(y.to_vector()), kiln_test::launched_kernel_names()};
  };
  auto backward = [&](Tensor<float, Cuda>& work, ConvKept kept) {
    kiln_test::record_launches(true);
    B::conv2d_backward(s, tx, tw, tdy, dx, no_dw, no_db, work, kept);
    kiln_test::record_launches(false);
    return std::pair{dx.to_vector(), kiln_test::launched_kernel_names()};
  };
  // The forward: one packing launch either way, the same y.
  const auto [y_eval, eval_names] = forward(tw, eval_ws);
  CHECK(eval_names ==
        std::set<std::string>{"conv2d_mma_pack_weights_kernel<3>", "conv2d_mma_forward_kernel<3, 64, false>"});
  const auto [y_train, train_names] = forward(tw, ws);
  CHECK(train_names ==
        std::set<std::string>{"conv2d_mma_pack_weights_both_kernel<3>", "conv2d_mma_forward_kernel<3, 64, false>"});
  CHECK(y_train == y_eval);
  // Told: no packing launched, the bits of the input gradient that packs again.
  const auto [kept_dx, kept_names] = backward(ws, ConvKept::tf32_dgrad_packing);
  CHECK(kept_names == std::set<std::string>{"conv2d_mma_forward_kernel<3, 64, false>"});
  CHECK(normalised_error(kept_dx, want_dx) < 2e-6);
  const auto [fresh_dx, fresh_names] = backward(ws, ConvKept::nothing);
  CHECK(fresh_names.count("conv2d_mma_pack_weights_dgrad_kernel<3>") == 1);
  CHECK(bits(fresh_dx) == bits(kept_dx));
  // Told, but the workspace has no room for both (a changed plan): packed again, the same bits.
  forward(tw, small_ws);
  const auto [small_dx, small_names] = backward(small_ws, ConvKept::tf32_dgrad_packing);
  CHECK(small_names.count("conv2d_mma_pack_weights_dgrad_kernel<3>") == 1);
  CHECK(bits(small_dx) == bits(kept_dx));
  // Told, but the mode changed since the forward (strict fp32 has its own kernels): not used.
  forward(tw, ws);
  {
    kiln::cuda::MathModeScope strict(kiln::cuda::MathMode::strict_fp32);
    const auto [strict_dx, strict_names] = backward(ws, ConvKept::tf32_dgrad_packing);
    CHECK(strict_names.count("conv2d_mma_forward_kernel<3, 64, false>") == 0);
    CHECK(normalised_error(strict_dx, want_dx) < 2e-3);
  }
  // The deliberate bugs: the kept packing of other weights (a forward that ran on weights changed
  // before the backward), and the kept packing overwritten (as the weight gradient's partial sums
  // would, were it run first).
  forward(tw_other, ws);
  const double stale = normalised_error(backward(ws, ConvKept::tf32_dgrad_packing).first, want_dx);
  MESSAGE("normalised error with another weights' packing kept: ", stale);
  CHECK(stale > 0.1);
  forward(tw, ws);
  auto host = ws.to_vector();
  std::fill(host.begin() + tp::dgrad_offset(s), host.begin() + tp::dgrad_offset(s) + mc::packed_dgrad_weight_floats(s),
            0.5f);
  ws.copy_from_host(host);
  const double overwritten = normalised_error(backward(ws, ConvKept::tf32_dgrad_packing).first, want_dx);
  MESSAGE("normalised error with the kept packing overwritten: ", overwritten);
  CHECK(overwritten > 0.1);
}

// The layer: a training forward keeps the packing for its one backward; a second backward without a
// forward, an eval forward (even on a train plan) and a new plan pack again. dx the same bits each time.
TEST_CASE("Conv2d<Cuda> under MathMode::tf32: the backward packs nothing after a training forward") {
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32);
  constexpr int In = 20, Out = 24;
  const Shape in = Shape::nchw(2, In, 8, 8);
  kiln::manual_seed(9);
  kiln::Conv2d<In, Out, 3, Cuda> conv;
  kiln::Arena<Cuda> arena;
  arena.begin();
  const Shape out = conv.plan(in, arena, "conv");
  arena.finalize();
  kiln::Rng rng(29);
  const auto x = Tensor<float, Cuda>::from_host(in, kiln_test::random_vector(in.numel(), rng, -2.0f, 2.0f));
  const auto dy = Tensor<float, Cuda>::from_host(out, kiln_test::random_vector(out.numel(), rng));
  auto pass = [&](bool forward, kiln::Mode mode) {
    kiln_test::record_launches(true);
    if (forward) conv.forward(x, mode);
    const auto dx = conv.backward(dy).to_vector();
    kiln_test::record_launches(false);
    const auto names = kiln_test::launched_kernel_names();
    return std::tuple{dx, names.count("conv2d_mma_pack_weights_both_kernel<3>"),
                      names.count("conv2d_mma_pack_weights_dgrad_kernel<3>")};
  };
  const auto [dx, both, dgrad] = pass(true, kiln::Mode::train);
  CHECK(both == 1);
  CHECK(dgrad == 0);
  auto same = [&first = dx](const std::vector<float>& v) {  // (clang 14 captures no structured binding)
    return v.size() == first.size() && std::memcmp(v.data(), first.data(), v.size() * sizeof(float)) == 0;
  };
  const auto [again, again_both, again_dgrad] = pass(false, kiln::Mode::train);  // the weight gradient wrote over it
  CHECK(again_dgrad == 1);
  CHECK(same(again));
  const auto [eval, eval_both, eval_dgrad] = pass(true, kiln::Mode::eval);
  CHECK(eval_both == 0);
  CHECK(eval_dgrad == 1);
  CHECK(same(eval));
  const auto [train, train_both, train_dgrad] = pass(true, kiln::Mode::train);
  CHECK(train_dgrad == 0);
  CHECK(same(train));
}
#endif

// A network's training forward under TF32 or BF16 packs every convolution's weights (both layouts)
// in one launch at its start, and each Conv2d of that forward runs its GEMM alone
// (Backend<Cuda>::conv2d_pack_forwards, conv2d_forward_packed): the output and every gradient of a
// step have the bits of the same network run layer by layer, each convolution packing its own, and
// the backward packs nothing. Deliberate bug: a forward on packed weights that were not packed again
// after the weights changed is far off, so the bit comparison would catch a layer that skipped its
// packing wrongly.
#if !KILN_EMU_THREADS
namespace {
using SmallNet = kiln::Network<kiln::UNet<1, 2, 4, 2, Cuda>>;
std::vector<std::uint32_t> bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> out(v.size());
  std::transform(v.begin(), v.end(), out.begin(), [](float f) { return std::bit_cast<std::uint32_t>(f); });
  return out;
}

void check_network_packing(kiln::cuda::MathMode mode, const std::string& batch_kernel,
                           const std::set<std::string>& per_layer_kernels) {
  using B = kiln::Backend<Cuda>;
  kiln::cuda::MathModeScope scope(mode);
  kiln::Rng rng(31);
  SmallNet batched, per_layer;
  batched.reset_parameters(rng);
  kiln_test::copy_state(batched, per_layer);
  auto packings = [](const std::set<std::string>& names) {
    std::set<std::string> out;
    for (const auto& n : names)
      if (n.rfind("conv2d_mma_pack", 0) == 0) out.insert(n);
    return out;
  };
  const Shape in = Shape::nchw(2, 1, 8, 8), out = Shape::nchw(2, 2, 8, 8);
  const auto x = Tensor<float, Cuda>::from_host(in, kiln_test::random_vector(in.numel(), rng));
  const auto dy = Tensor<float, Cuda>::from_host(out, kiln_test::random_vector(out.numel(), rng));

  kiln_test::record_launches(true);
  const auto y_batched = batched.forward(x, kiln::Mode::train).to_vector();
  kiln_test::record_launches(false);
  CHECK(packings(kiln_test::launched_kernel_names()) == std::set<std::string>{batch_kernel});
  per_layer.plan(in, kiln::Mode::train);
  kiln_test::record_launches(true);
  const auto y_own = per_layer.layers().forward(x, kiln::Mode::train).to_vector();
  kiln_test::record_launches(false);
  CHECK(packings(kiln_test::launched_kernel_names()) == per_layer_kernels);
  CHECK(bits(y_batched) == bits(y_own));

  kiln_test::record_launches(true);
  batched.backward(dy);  // the input gradients on the packings the batch kept
  per_layer.layers().backward(dy);
  kiln_test::record_launches(false);
  CHECK(packings(kiln_test::launched_kernel_names()).empty());
  const auto grads = kiln_test::gradients_of(batched), own = kiln_test::gradients_of(per_layer);
  REQUIRE(grads.size() == own.size());
  for (std::size_t g = 0; g < grads.size(); ++g) {
    INFO(own[g].first);
    CHECK(bits(own[g].second) == bits(grads[g].second));
  }

  // The deliberate bug, on one convolution: new weights, the old packing.
  const kiln::ConvShape s{2, 20, 24, 6, 6, 3};
  const Shape wshape{s.c_out, s.c_in, s.k, s.k};
  auto w = Tensor<float, Cuda>::from_host(wshape, kiln_test::random_vector(wshape.numel(), rng));
  const auto xs = Tensor<float, Cuda>::from_host(Shape::nchw(s.n, s.c_in, s.h, s.w),
                                                 kiln_test::random_vector(s.n * s.c_in * s.h * s.w, rng));
  Tensor<float, Cuda> bias, ws(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1}),
      y(Shape::nchw(s.n, s.c_out, s.h, s.w)), want(y.shape());
  kiln::ConvPacking<Cuda> packing{s, &w, &ws};
  const std::vector<kiln::ConvPacking<Cuda>*> one{&packing};
  B::conv2d_pack_forwards(one);
  w.copy_from_host(kiln_test::random_vector(wshape.numel(), rng));
  B::conv2d_forward_packed(s, xs, w, bias, y, ws);
  Tensor<float, Cuda> ws2(ws.shape());
  B::conv2d_forward(s, xs, w, bias, want, ws2);
  const double stale = normalised_error(y.to_vector(), want.to_vector());
  MESSAGE("normalised error of a forward on a stale packing: ", stale);
  CHECK(stale > 0.1);
  B::conv2d_pack_forwards(one);  // packed again: the same bits
  B::conv2d_forward_packed(s, xs, w, bias, y, ws);
  CHECK(bits(y.to_vector()) == bits(want.to_vector()));
}
}  // namespace

TEST_CASE("tf32 Network: one packing launch per forward, the bits of per-layer packing") {
  check_network_packing(kiln::cuda::MathMode::tf32, "conv2d_mma_pack_batch_kernel<24>",
                        {"conv2d_mma_pack_weights_both_kernel<1>", "conv2d_mma_pack_weights_both_kernel<3>"});
}

TEST_CASE("bf16 Network: one packing launch per forward, the bits of per-layer packing") {
  check_network_packing(kiln::cuda::MathMode::bf16, "conv2d_mma_pack_batch_bf16_kernel<24>",
                        {"conv2d_mma_pack_weights_both_bf16_kernel<1>", "conv2d_mma_pack_weights_both_bf16_kernel<3>"});
}

// A network's backward adds its weight gradients' split-K partial sums in one launch at its end
// (Backend<Cuda>::conv2d_flush_wgrad_reductions), unless a data-parallel trainer's gradient-ready
// hook reads each gradient as its layer finishes: every gradient has the bits of the per-layer
// reductions. Deliberate bug: a backward whose listed reductions are dropped, not flushed, leaves
// the split gradients without their sums.
namespace {
void check_network_reductions(kiln::cuda::MathMode mode) {
  using B = kiln::Backend<Cuda>;
  kiln::cuda::MathModeScope scope(mode);
  kiln::Rng rng(37);
  SmallNet batched, per_layer;
  batched.reset_parameters(rng);
  kiln_test::copy_state(batched, per_layer);
  auto gradients = [&](SmallNet& net) {
    std::vector<std::vector<std::uint32_t>> out;
    net.visit([&](kiln::StateRef<Cuda> r) {
      if (r.grad) out.push_back(bits(r.grad->to_vector()));
    });
    return out;
  };
  auto reductions = [](const std::set<std::string>& names) {
    std::set<std::string> out;
    for (const auto& n : names)
      if (n.find("wgrad_reduce") != std::string::npos) out.insert(n);
    return out;
  };
  // 16 x 16: 256 pixels (16 k steps) at the first level, so its weight gradients split in two.
  const Shape in = Shape::nchw(1, 1, 16, 16), out = Shape::nchw(1, 2, 16, 16);
  const auto x = Tensor<float, Cuda>::from_host(in, kiln_test::random_vector(in.numel(), rng));
  const auto dy = Tensor<float, Cuda>::from_host(out, kiln_test::random_vector(out.numel(), rng));
  batched.zero_grad(), per_layer.zero_grad();

  batched.forward(x, kiln::Mode::train);
  kiln_test::record_launches(true);
  batched.backward(dy);
  kiln_test::record_launches(false);
  CHECK(reductions(kiln_test::launched_kernel_names()) ==
        std::set<std::string>{"conv2d_mma_wgrad_reduce_batch_kernel<24>"});

  kiln::gradient_ready_hook<Cuda>() = [](Tensor<float, Cuda>&) {};  // as a data-parallel trainer
  per_layer.forward(x, kiln::Mode::train);
  kiln_test::record_launches(true);
  per_layer.backward(dy);
  kiln_test::record_launches(false);
  kiln::gradient_ready_hook<Cuda>() = nullptr;
  const auto per_layer_reductions = reductions(kiln_test::launched_kernel_names());
  CHECK(!per_layer_reductions.empty());
  CHECK(per_layer_reductions.count("conv2d_mma_wgrad_reduce_batch_kernel<24>") == 0);
  const auto want = gradients(per_layer);
  CHECK(gradients(batched) == want);

  // The deliberate bug.
  batched.zero_grad();
  batched.forward(x, kiln::Mode::train);
  B::conv2d_defer_wgrad_reductions();
  batched.layers().backward(dy);
  B::conv2d_drop_wgrad_reductions();
  const auto dropped = gradients(batched);
  std::size_t differ = 0;
  for (std::size_t g = 0; g < want.size(); ++g) differ += dropped.at(g) != want[g] ? 1 : 0;
  MESSAGE(differ, " of ", want.size(), " gradients differ with the reductions dropped");
  CHECK(differ > 0);
}
}  // namespace

TEST_CASE("tf32 Network: the weight gradients' reductions in one launch at the end of the backward, same bits") {
  check_network_reductions(kiln::cuda::MathMode::tf32);
}

TEST_CASE("bf16 Network: the weight gradients' reductions in one launch at the end of the backward, same bits") {
  check_network_reductions(kiln::cuda::MathMode::bf16);
}
#endif
