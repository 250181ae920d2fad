// A whole small U-Net trained for three steps (Adam + MSE) on the emulated Cuda device and on the
// CPU from the same initial state and data: the losses, every parameter, gradient, running
// statistic and counter agree. This exercises every layer kernel in its real composition
// (conv 3x3 and 1x1, batchnorm train, relu, maxpool, nearest upsample, concat/split, add, loss, adam).
#include <doctest/doctest.h>

#include <cstdio>
#include <vector>

#include "emu/kernel_cases.hpp"
#include "kiln/models/unet.hpp"

namespace {

template <class Device>
using TinyUNet = kiln::Network<kiln::UNet<1, 2, 4, 2, Device>>;

}  // namespace

TEST_CASE("UNet<1,2,4,2> trains identically on the emulated Cuda device and on the CPU") {
  if (KILN_EMU_THREADS) {  // one std::thread per CUDA thread: far too slow for a whole network
    MESSAGE("skipped in the emulator's OS-thread mode (the kernel table's tiny subset runs there)");
    return;
  }
  using kiln_test::Cpu;
  using kiln_test::Cuda;
  kiln::Rng rng(2024);
  TinyUNet<Cpu> cpu;
  TinyUNet<Cuda> cuda;
  cpu.reset_parameters(rng);
  kiln_test::copy_state(cpu, cuda);
  cpu.zero_grad();
  cuda.zero_grad();

  kiln::Adam<Cpu> opt_cpu(kiln::collect_parameters(cpu), kiln::AdamOptions{.lr = 1e-3f, .eps = 1e-6});
  kiln::Adam<Cuda> opt_cuda(kiln::collect_parameters(cuda), kiln::AdamOptions{.lr = 1e-3f, .eps = 1e-6});
  kiln::MSELoss<Cpu> loss_cpu;
  kiln::MSELoss<Cuda> loss_cuda;

  const kiln::Shape in = kiln::Shape::nchw(2, 1, 8, 8), out = kiln::Shape::nchw(2, 2, 8, 8);
  for (int step = 0; step < 3; ++step) {
    const auto xv = kiln_test::random_vector(in.numel(), rng), tv = kiln_test::random_vector(out.numel(), rng);
    const auto xc = kiln::Tensor<float, Cpu>::from_host(in, xv), tc = kiln::Tensor<float, Cpu>::from_host(out, tv);
    const auto xg = kiln::Tensor<float, Cuda>::from_host(in, xv), tg = kiln::Tensor<float, Cuda>::from_host(out, tv);
    cpu.zero_grad();
    cuda.zero_grad();
    const float lc = loss_cpu.forward(cpu.forward(xc, kiln::Mode::train), tc);
    const float lg = loss_cuda.forward(cuda.forward(xg, kiln::Mode::train), tg);
    CAPTURE(step);
    CHECK(lg == doctest::Approx(lc).epsilon(1e-5));
    cpu.backward(loss_cpu.backward());
    cuda.backward(loss_cuda.backward());
    opt_cpu.step();
    opt_cuda.step();
  }

  // Parameters after three Adam steps. The conv biases in front of a BatchNorm have an exact
  // gradient of 0: what both devices compute is rounding noise (~1e-8) that differs between them,
  // and Adam divides by sqrt(v) + eps, so with the default eps 1e-8 such noise becomes a full
  // +-lr step in a random direction. eps = 1e-6 keeps that small but not negligible: the bound
  // is 1e-3 (a wrong kernel gives errors of order 1), and gradients are compared with an absolute
  // floor of 1e-3 on the norm (the real gradients here are around 1e-2).
  kiln_test::Report report;
  kiln_test::compare_state(report, cpu, cuda, 1e-3, 1e-3);
  REQUIRE(report.comparisons.size() > 40);
  for (const auto& c : report.comparisons) {
    INFO(c.what, ": normalised error ", c.error, " (bound ", c.bound, ")");
    CHECK(c.ok());
  }

  // An eval forward (running statistics) agrees too, within what the bias noise above allows
  // (a bias shift is seen by the running mean only with momentum 0.1, so it reaches the output).
  const auto xv = kiln_test::random_vector(in.numel(), rng);
  kiln_test::Report eval;
  eval.compare("eval output", cuda.forward(kiln::Tensor<float, Cuda>::from_host(in, xv), kiln::Mode::eval),
               cpu.forward(kiln::Tensor<float, Cpu>::from_host(in, xv), kiln::Mode::eval), 1e-2);
  for (const auto& c : eval.comparisons) {
    INFO(c.what, ": normalised error ", c.error);
    CHECK(c.ok());
  }
}
