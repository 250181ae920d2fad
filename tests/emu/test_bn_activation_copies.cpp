// The BF16 copies of activations written by the BatchNorm + ReLU kernels (kernels/batchnorm_nhwc.cuh;
// core/backend_ops.hpp, HasActivationCopies), on the emulator:
//   * the kernels against the plain ones and the copy kernel, bit by bit: y (dx), the saved and
//     running statistics (the parameter gradients), and the copy conv2d_nhwc_bf16_kernel makes of y
//     (dx), channel tails, several pixel blocks, training and eval;
//   * a ConvBlock (Sequential<Conv, BN, ReLU, Conv, BN, ReLU>) under MathMode::bf16 against the same
//     layers in separate Sequentials (no copy handed over): the same bits everywhere, and 1 copy
//     kernel per step instead of 4;
//   * a deliberate bug: a convolution told its copy was written when it was not gives another y.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "conv2d_mma_bf16.cuh"
#include "emu/launch_log.hpp"
#include "kiln/cuda.hpp"
#include "kiln/kiln.hpp"
#include "normalised_error.hpp"
#include "test_emulator_support.hpp"

namespace {

using kiln::Cuda;
using kiln::Mode;
using kiln::Shape;
using CudaT = kiln::Tensor<float, Cuda>;
using B = kiln::Backend<Cuda>;

std::vector<std::uint32_t> bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> out(v.size());
  std::transform(v.begin(), v.end(), out.begin(), [](float f) { return std::bit_cast<std::uint32_t>(f); });
  return out;
}

std::vector<float> random_values(std::size_t n, std::uint64_t seed, float lo = -2.0f, float hi = 2.0f) {
  return kiln_emu_test::uniform(n, seed, lo, hi);
}

// The NHWC copy of an NCHW tensor by conv2d_nhwc_bf16_kernel, as raw 16-bit words.
std::vector<std::uint16_t> copy_kernel(std::int64_t n, std::int64_t c, std::int64_t hw, const CudaT& t) {
  const std::int64_t floats = kiln::cuda::kernels::mma_bf16::nhwc_floats({n, c, c, 1, hw, 1});
  CudaT out(Shape{floats});
  kiln::cuda::kernels::mma_bf16::to_nhwc(n, c, hw, t.data(), reinterpret_cast<__nv_bfloat16*>(out.data()));
  const auto f = out.to_vector();
  std::vector<std::uint16_t> h(f.size() * 2);
  std::memcpy(h.data(), f.data(), h.size() * 2);
  return h;
}
std::vector<std::uint16_t> words(const CudaT& t) {
  const auto f = t.to_vector();
  std::vector<std::uint16_t> h(f.size() * 2);
  std::memcpy(h.data(), f.data(), h.size() * 2);
  return h;
}

void check_bn_copies(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, bool training,
                     std::uint64_t seed) {
  INFO("N=" << n << " C=" << c << " " << h << "x" << w << (training ? " training" : " eval"));
  kiln::BatchNormArgs a;
  a.n = n;
  a.c = c;
  a.hw = h * w;
  a.training = training;
  const Shape shape = Shape::nchw(n, c, h, w), channel{c};
  const auto xv = random_values(static_cast<std::size_t>(shape.numel()), seed);
  const CudaT x = CudaT::from_host(shape, xv);
  const CudaT weight = CudaT::from_host(channel, random_values(static_cast<std::size_t>(c), seed + 1, 0.5f, 1.5f));
  const CudaT bias = CudaT::from_host(channel, random_values(static_cast<std::size_t>(c), seed + 2, -0.5f, 0.5f));
  const auto mean0 = random_values(static_cast<std::size_t>(c), seed + 3, -0.2f, 0.2f);
  const auto var0 = random_values(static_cast<std::size_t>(c), seed + 4, 0.5f, 1.5f);
  const std::int64_t copy_floats = kiln::cuda::kernels::mma_bf16::nhwc_floats({n, c, c, h, w, 1});

  struct Run {
    CudaT y, running_mean, running_var, save_mean, save_invstd, dx, dweight, dbias, copy, dx_copy;
  };
  auto run = [&](bool copies) {
    Run r{CudaT(shape),
          CudaT::from_host(channel, mean0),
          CudaT::from_host(channel, var0),
          CudaT(channel),
          CudaT(channel),
          CudaT(shape),
          CudaT::from_host(channel, std::vector<float>(c, 0.25f)),
          CudaT::from_host(channel, std::vector<float>(c, -0.5f)),
          CudaT::from_host(Shape{copy_floats}, std::vector<float>(copy_floats, std::nanf(""))),
          CudaT::from_host(Shape{copy_floats}, std::vector<float>(copy_floats, std::nanf("")))};
    if (copies)
      B::batchnorm_relu_forward(a, x, weight, bias, r.running_mean, r.running_var, r.save_mean, r.save_invstd, r.y,
                                r.copy.data());
    else
      B::batchnorm_relu_forward(a, x, weight, bias, r.running_mean, r.running_var, r.save_mean, r.save_invstd, r.y);
    const CudaT dy = CudaT::from_host(shape, random_values(static_cast<std::size_t>(shape.numel()), seed + 5));
    if (copies)
      B::batchnorm_relu_backward(a, x, weight, r.save_mean, r.save_invstd, r.y, dy, r.dx, r.dweight, r.dbias,
                                 r.dx_copy.data());
    else
      B::batchnorm_relu_backward(a, x, weight, r.save_mean, r.save_invstd, r.y, dy, r.dx, r.dweight, r.dbias);
    return r;
  };
  kiln_test::record_launches(true);
  Run plain = run(false);
  Run fused = run(true);
  kiln_test::record_launches(false);
  const auto names = kiln_test::launched_kernel_names();
  CHECK(names.count("batchnorm_apply_nhwc_kernel<16>") == 1);
  CHECK(names.count("batchnorm_backward_dx_nhwc_kernel<16>") == 1);
  struct Pair {
    const char* name;
    const CudaT *plain, *fused;
  };
  for (const Pair& t : {Pair{"y", &plain.y, &fused.y}, Pair{"running_mean", &plain.running_mean, &fused.running_mean},
                        Pair{"running_var", &plain.running_var, &fused.running_var},
                        Pair{"save_mean", &plain.save_mean, &fused.save_mean},
                        Pair{"save_invstd", &plain.save_invstd, &fused.save_invstd}, Pair{"dx", &plain.dx, &fused.dx},
                        Pair{"dweight", &plain.dweight, &fused.dweight}, Pair{"dbias", &plain.dbias, &fused.dbias}}) {
    INFO(t.name);
    CHECK(bits(t.plain->to_vector()) == bits(t.fused->to_vector()));
  }
  CHECK(words(fused.copy) == copy_kernel(n, c, a.hw, plain.y));
  CHECK(words(fused.dx_copy) == copy_kernel(n, c, a.hw, plain.dx));
}

// Copies the parameters and buffers of one network into another with the same visit order.
template <class From, class To>
[[maybe_unused]] void copy_state(From& from, To& to) {
  std::vector<kiln::StateRef<Cuda>> refs;
  from.visit([&](kiln::StateRef<Cuda> r) { refs.push_back(r); });
  std::size_t i = 0;
  to.visit([&](kiln::StateRef<Cuda> r) {
    const auto& s = refs.at(i++);
    if (r.value) r.value->copy_from_host(s.value->to_vector());
  });
  REQUIRE(i == refs.size());
}

template <class Net>
[[maybe_unused]] std::vector<std::vector<float>> gradients(Net& net) {
  std::vector<std::vector<float>> out;
  net.visit([&](kiln::StateRef<Cuda> r) {
    if (r.grad) out.push_back(r.grad->to_vector());
  });
  return out;
}

[[maybe_unused]] int copies_launched() { return kiln_test::launch_count("conv2d_nhwc_bf16_kernel<float>"); }

}  // namespace

TEST_CASE("BatchNorm + ReLU writing the BF16 copy: the plain kernels' bits, the copy kernel's bits") {
  check_bn_copies(2, 20, 7, 9, true, 11);    // two channel groups, the second 4 of 16; odd planes
  check_bn_copies(3, 16, 12, 12, true, 12);  // 432 pixels: two pixel blocks
  check_bn_copies(2, 33, 4, 4, false, 13);   // eval (running statistics), three groups
}

#if !KILN_EMU_THREADS  // fiber mode: the ConvBlock's mma kernels meet at every warp collective
namespace {
template <class Device>
using Block = kiln::ConvBlock<3, 20, Device>;  // conv1 3 -> 20, bn1, relu, conv2 20 -> 20, bn2, relu
template <class Device>
using Apart = kiln::Sequential<kiln::Sequential<kiln::Conv2d<3, 20, 3, Device>>,
                               kiln::Sequential<kiln::BatchNorm2d<20, Device>, kiln::ReLU<Device>>,
                               kiln::Sequential<kiln::Conv2d<20, 20, 3, Device>>,
                               kiln::Sequential<kiln::BatchNorm2d<20, Device>, kiln::ReLU<Device>>>;
}  // namespace

TEST_CASE("ConvBlock under BF16: the BatchNorm kernels write 3 of its 4 BF16 copies, with the same bits") {
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::bf16);
  kiln::Rng rng(5);
  kiln::Network<Block<Cuda>> block;
  kiln::Network<Apart<Cuda>> apart;
  block.reset_parameters(rng);
  copy_state(block, apart);
  const Shape in = Shape::nchw(2, 3, 8, 8), out = Shape::nchw(2, 20, 8, 8);
  block.plan(in);
  apart.plan(in);
  for (int step = 0; step < 2; ++step) {
    INFO("step " << step);
    const auto x = CudaT::from_host(in, random_values(static_cast<std::size_t>(in.numel()), 21 + step));
    const auto dy = CudaT::from_host(out, random_values(static_cast<std::size_t>(out.numel()), 31 + step));
    kiln_test::record_launches(true);
    const auto y_block = block.forward(x, Mode::train).to_vector();
    kiln_test::record_launches(false);
    CHECK(kiln_test::launch_count("batchnorm_apply_nhwc_kernel<16>") == 1);  // bn1 writes conv2's x
    CHECK(copies_launched() == 1);                                           // conv1's x only
    kiln_test::record_launches(true);
    block.backward(dy);
    kiln_test::record_launches(false);
    CHECK(kiln_test::launch_count("batchnorm_backward_dx_nhwc_kernel<16>") == 2);  // both convolutions' dy
    CHECK(copies_launched() == 0);

    kiln_test::record_launches(true);
    const auto y_apart = apart.forward(x, Mode::train).to_vector();
    apart.backward(dy);
    kiln_test::record_launches(false);
    CHECK(copies_launched() == 4);
    CHECK(bits(y_block) == bits(y_apart));
    const auto g_block = gradients(block), g_apart = gradients(apart);
    REQUIRE(g_block.size() == g_apart.size());
    for (std::size_t i = 0; i < g_block.size(); ++i) {
      INFO("gradient " << i);
      CHECK(bits(g_block[i]) == bits(g_apart[i]));
    }
  }

  // The deliberate bug: conv2 of the separate layers told that its copy is in its slot, which
  // holds a copy of the last step's input there instead.
  const auto x = CudaT::from_host(in, random_values(static_cast<std::size_t>(in.numel()), 41));
  const auto y_block = block.forward(x, Mode::train).to_vector();
  auto& conv2 = apart.layers().template get<2>().template get<0>();
  REQUIRE(conv2.input_copy_slot(Mode::train) != nullptr);
  conv2.input_copy_written();
  const auto y_stale = apart.forward(x, Mode::train).to_vector();
  const double err = kiln_test::normalised_error(y_stale, y_block);
  MESSAGE("normalised error of a forward on a stale copy: ", err);
  CHECK(err > 0.1);
}
#endif
