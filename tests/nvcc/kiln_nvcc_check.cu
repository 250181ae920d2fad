// nvcc compile-and-link check (target kiln_nvcc_check, tests/nvcc.cmake): <kiln/cuda.hpp> under
// nvcc, every layer instantiated on kiln::Cuda (so every kernel template is instantiated and
// compiled for each architecture of CMAKE_CUDA_ARCHITECTURES), the optimizers, the colour module's
// kernels (include/kiln/color/kernels/*.cuh, through ColourOps<Cuda> and its layers) and the cuDNN wrapper, and the
// mma.sync convolution of kernels/conv2d_mma.cuh (the backend's TF32 forward; all 8 variants, so that the SASS check
// sees its HMMA / LDSM main loops; the backend instantiates the BF16 NHWC kernels). Run on a machine with a GPU it also
// trains a tiny U-Net for two steps (strict fp32, then TF32 and BF16 tensor cores), prints the losses and compares
// conv2d_mma with the strict kernel; without one it says so and exits 0 (compiling and linking is the check).
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include <kiln/cuda.hpp>
#include <kiln/cuda/cudnn.hpp>
#include <kiln/cuda/step_monitor.hpp>
#include <kiln/color/ab_soft_encode.hpp>
#include <kiln/color/annealed_mean.hpp>
#include <kiln/color/cuda.hpp>
#include <kiln/io/color.hpp>
#include <kiln/models/unet.hpp>
#include <kiln/nn/receptive_field.hpp>

#include "conv2d_mma.cuh"
#include "conv2d_wgmma.cuh"

// Every layer and op on Cuda, explicitly instantiated (all members, so every launcher and kernel).
namespace kiln {
template class Conv2d<3, 5, 3, Cuda>;
template class Conv2d<5, 3, 1, Cuda>;
template class Conv2d<3, 4, 5, Cuda>;     // run-time kernel size path
template class Conv2d<3, 5, 3, Cuda, 2>;  // stride > 1: the general kernels
template class Activation<ActivationKind::leaky_relu, Cuda>;
template class Activation<ActivationKind::silu, Cuda>;
template class Activation<ActivationKind::sigmoid, Cuda>;
template class Activation<ActivationKind::tanh, Cuda>;
template class Dropout<Cuda>;
template void add(const Tensor<float, Cuda>&, const Tensor<float, Cuda>&, Tensor<float, Cuda>&);
template void sub(const Tensor<float, Cuda>&, const Tensor<float, Cuda>&, Tensor<float, Cuda>&);
template void mul(const Tensor<float, Cuda>&, const Tensor<float, Cuda>&, Tensor<float, Cuda>&);
template void affine(const Tensor<float, Cuda>&, float, float, Tensor<float, Cuda>&);
template void clamp(const Tensor<float, Cuda>&, float, float, Tensor<float, Cuda>&);
template class BatchNorm2d<5, Cuda>;
template class ReLU<Cuda>;
// ReLU's and the activations' shared members (plan) live in their base: instantiate it too.
template class detail::Pointwise<ReLU<Cuda>, Cuda>;
template class detail::Pointwise<Activation<ActivationKind::leaky_relu, Cuda>, Cuda>;
template class MaxPool2d<2, Cuda>;
template class Upsample<2, UpsampleMode::nearest, Cuda>;
template class Upsample<2, UpsampleMode::bilinear, Cuda>;
template class Concat<3, 5, Cuda>;
template class Loss<Cuda>;
template class SGD<Cuda>;
template class Adam<Cuda>;
template class AdamW<Cuda>;
template class SoftmaxCrossEntropy<Cuda>;
// The colour module's layers on Cuda (ColourOps<Cuda>: every kernel of include/kiln/color/kernels/).
template class color::AbSoftEncode<23, Cuda>;
template class color::AnnealedMean<23, Cuda>;
}  // namespace kiln

namespace {

using kiln::Cuda;

using Net = kiln::Network<kiln::UNet<1, 2, 4, 2, Cuda>>;

// nvcc's front end on the receptive field of a model with Named layers (kiln-colorize's tiling,
// nn/infer.hpp): a partial specialisation on Named<"name", L> it could not match once broke the
// programs' nvcc build (bench/gpu_bundle.sh) while this check passed.
static_assert(kiln::ReceptiveField<kiln::UNet<1, 2, 4, 2, Cuda>>::radius > 0);

// conv2d_mma (TF32, mma.sync) against the strict fp32 kernel: the normalised error of y; with `wgmma`
// kernels/conv2d_wgmma.cuh's forward as its plan says instead (its 6 variants are compiled here for
// sm_80 and sm_90 as traps, for sm_90a in kiln_wgmma_check).
double mma_conv_error(const kiln::ConvShape& s, kiln::Rng& rng, bool wgmma = false) {
  using T = kiln::Tensor<float, Cuda>;
  std::vector<float> xv(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w)),
      wv(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k)), bv(static_cast<std::size_t>(s.c_out));
  for (auto* v : {&xv, &wv, &bv})
    for (auto& e : *v) e = rng.uniform(-1.0f, 1.0f);
  const T x = T::from_host(kiln::Shape::nchw(s.n, s.c_in, s.h, s.w), xv),
          w = T::from_host(kiln::Shape{s.c_out, s.c_in, s.k, s.k}, wv);
  const T b = T::from_host(kiln::Shape{s.c_out}, bv);
  T y(kiln::Shape::nchw(s.n, s.c_out, s.h, s.w)), y_mma(y.shape()), ws(kiln::Shape{1});
  namespace mc = kiln::cuda::kernels::mma_conv;
  T packed(kiln::Shape{mc::workspace_floats(s)});  // with split-K where the shape takes it (mc::splits)
  kiln::Backend<Cuda>::conv2d_forward(s, x, w, b, y, ws);
  if (wgmma) {
    namespace wc = kiln::cuda::kernels::wgmma_conv;
    const int bn = wc::block_n(s), slices = wc::splits(s, bn);
    T work(kiln::Shape{mc::workspace_floats(s, slices, bn)});
    mc::pack_weights(s, w.data(), work.data(), nullptr, slices, bn);
    wc::launch_packed(s, x.data(), work.data(), b.data(), y_mma.data(), bn, nullptr, slices);
  } else {
    mc::forward(s, x.data(), w.data(), b.data(), y_mma.data(), packed.data(), nullptr, mc::splits(s));
  }
  const auto want = y.to_vector(), got = y_mma.to_vector();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

float train_step(Net& net, kiln::Adam<Cuda>& opt, kiln::MSELoss<Cuda>& loss, const kiln::Tensor<float, Cuda>& x,
                 const kiln::Tensor<float, Cuda>& target) {
  net.zero_grad();
  const float value = loss.forward(net.forward(x, kiln::Mode::train), target);
  net.backward(loss.backward());
  opt.step();
  return value;
}

}  // namespace

int main() {
  std::printf("kiln_nvcc_check: compiled by nvcc (emulated = %d), cuDNN wrapper %s\n", kiln::gpu::emulated ? 1 : 0,
              kiln::cudnn::available ? "built" : "not built");
  if (!kiln::gpu::device_available()) {
    std::printf("kiln_nvcc_check: no CUDA device; compile + link OK\n");
    return 0;
  }
  try {
    std::printf("device: %s\n", kiln::gpu::device_name().c_str());
    Net net;
    kiln::Adam<Cuda> opt(kiln::collect_parameters(net));
    kiln::MSELoss<Cuda> loss;
    kiln::Rng rng(1);
    const auto in = kiln::Shape::nchw(2, 1, 16, 16), out = kiln::Shape::nchw(2, 2, 16, 16);
    std::vector<float> xv(in.numel()), tv(out.numel());
    for (auto& v : xv) v = rng.uniform(-1.0f, 1.0f);
    for (auto& v : tv) v = rng.uniform(-1.0f, 1.0f);
    const auto x = kiln::Tensor<float, Cuda>::from_host(in, xv);
    const auto t = kiln::Tensor<float, Cuda>::from_host(out, tv);
    for (int step = 0; step < 2; ++step) std::printf("step %d loss %.6f\n", step, train_step(net, opt, loss, x, t));
    {  // the same on the TF32 tensor-core convolutions (kernels/conv2d_igemm.cuh)
      kiln::cuda::MathModeScope tf32(kiln::cuda::MathMode::tf32);
      Net net_tf32;
      kiln::Adam<Cuda> opt_tf32(kiln::collect_parameters(net_tf32));
      for (int step = 0; step < 2; ++step)
        std::printf("tf32 step %d loss %.6f\n", step, train_step(net_tf32, opt_tf32, loss, x, t));
    }
    {  // and on the BF16 ones (MathMode::bf16: conv2d_mma*.cuh's m16n8k16 variants)
      kiln::cuda::MathModeScope bf16(kiln::cuda::MathMode::bf16);
      Net net_bf16;
      kiln::Adam<Cuda> opt_bf16(kiln::collect_parameters(net_bf16));
      for (int step = 0; step < 2; ++step)
        std::printf("bf16 step %d loss %.6f\n", step, train_step(net_bf16, opt_bf16, loss, x, t));
    }

    {  // the multi-tensor Adam over every parameter of the network, one launch
      std::vector<kiln::Tensor<float, Cuda>> moments;
      std::vector<kiln::Backend<Cuda>::AdamTensors> list;
      const auto params = kiln::collect_parameters(net);
      moments.reserve(2 * params.size());
      for (const auto& p : params) {
        moments.emplace_back(p.value->shape());
        moments.emplace_back(p.value->shape());
      }
      for (std::size_t i = 0; i < params.size(); ++i)
        list.push_back({params[i].value, params[i].grad, &moments[2 * i], &moments[2 * i + 1]});
      kiln::AdamStepArgs a;
      kiln::Backend<Cuda>::adam_step_multi(a, list);
      std::printf("adam_step_multi over %zu parameter tensors ran\n", list.size());
    }
    {  // the training step captured once as a CUDA graph and replayed (kiln/gpu/graph.hpp), with the
       // device-side NaN check and the optimizer's scalars staged from pinned memory
      kiln::gpu::Stream stream;
      kiln::cuda::StreamScope on(stream);
      Net gnet;
      auto slots = kiln::collect_parameters(gnet);
      kiln::Adam<Cuda> gopt(slots);
      std::vector<const kiln::Tensor<float, Cuda>*> grads;
      for (const auto& s : slots) grads.push_back(s.grad);
      kiln::cuda::StepMonitor monitor(grads);
      kiln::cuda::set_update_guard(monitor.update_flag());
      const auto queue = [&] {
        gnet.zero_grad();
        const auto& value = loss.forward_on_device(gnet.forward(x, kiln::Mode::train), t);
        gnet.backward(loss.backward());
        monitor.record(value);
        gopt.step();
      };
      queue();  // eager: plans memory
      stream.synchronize();
      kiln::gpu::Graph graph;
      graph.capture(stream, queue);
      for (int step = 0; step < 3; ++step) {
        if (step > 0) {
          kiln::cuda::HostPass pass;
          gopt.set_lr(1e-3f / float(step + 1));
          gopt.step();
        }
        graph.launch(stream);
        monitor.replayed();
      }
      const auto r = monitor.read();
      kiln::cuda::set_update_guard(nullptr);
      std::printf("graph of %zu nodes replayed: %zu losses read, last %.6f, %s\n", graph.size(), r.losses.size(),
                  r.losses.empty() ? 0.0 : double(r.losses.back()), r.bad_step < 0 ? "all finite" : "NON-FINITE");
      if (r.losses.size() != 4 || r.bad_step >= 0) throw std::runtime_error("the graph-replayed step failed");
    }
    for (const kiln::ConvShape& s : {kiln::ConvShape{2, 32, 64, 32, 32, 3}, kiln::ConvShape{1, 3, 130, 13, 11, 3},
                                     kiln::ConvShape{2, 64, 32, 16, 16, 1}, kiln::ConvShape{4, 256, 256, 8, 8, 3}}) {
      const double err = mma_conv_error(s, rng);
      std::printf("conv2d_mma forward %lld->%lld K=%lld: normalised error vs strict fp32 %.2e\n",
                  static_cast<long long>(s.c_in), static_cast<long long>(s.c_out), static_cast<long long>(s.k), err);
      if (!(err < 2e-3)) throw std::runtime_error("conv2d_mma disagrees with the strict kernel");
      if (s.c_in >= 16 && kiln::gpu::wgmma::runs_here()) {
        const double werr = mma_conv_error(s, rng, true);
        std::printf("conv2d_wgmma forward %lld->%lld K=%lld: normalised error vs strict fp32 %.2e\n",
                    static_cast<long long>(s.c_in), static_cast<long long>(s.c_out), static_cast<long long>(s.k), werr);
        if (!(werr < 2e-3)) throw std::runtime_error("conv2d_wgmma disagrees with the strict kernel");
      }
    }
    kiln::Tensor<float, Cuda> rgb(kiln::Shape::nchw(1, 3, 4, 4)), lab(rgb.shape());
    kiln::color::ColourOps<Cuda>::srgb_to_lab(rgb, lab);
    kiln::color::ColourOps<Cuda>::lab_to_srgb(lab, rgb);
#if KILN_GPU_REAL && defined(KILN_WITH_CUDNN)
    kiln::cudnn::Handle handle;
    const kiln::ConvShape s{1, 3, 5, 13, 11, 3};
    kiln::cudnn::Conv2d conv(handle, s);
    kiln::Tensor<float, Cuda> cx(kiln::Shape::nchw(1, 3, 13, 11)), cw(kiln::Shape{5, 3, 3, 3}),
        cy(kiln::Shape::nchw(1, 5, 13, 11));
    conv.forward(cx.data(), cw.data(), nullptr, cy.data());
    std::printf("cuDNN conv forward ran (%s)\n", kiln::cudnn::math_mode_name(conv.math_mode()));
#endif
    kiln::gpu::synchronize();
  } catch (const std::exception& e) {
    std::printf("kiln_nvcc_check: %s\n", e.what());
    return 1;
  }
  return 0;
}
