#pragma once
// Backend<Cuda>: the host-side launchers of kiln's hand-written CUDA kernels (kernels/*.cuh).
// Same members and signatures as Backend<Cpu> (include/kiln/cpu/backend.hpp), so every layer
// templated on Device runs unchanged on kiln::Cuda. Each launcher computes the grid and block and
// launches through KILN_CUDA_LAUNCH on kiln::cuda::current_stream(): under nvcc a real launch
// (checked with cudaGetLastError), otherwise the CPU emulator. A failure throws kiln::gpu::Error
// naming the kernel. No cuBLAS/cuDNN here (the cuDNN oracle is <kiln/cuda/cudnn.hpp>).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <span>
#include <string>

#include "kiln/core/backend.hpp"
#include "kiln/core/backend_ops.hpp"
#include "kiln/core/conv_shape.hpp"
#include "kiln/core/error.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/cuda/math_mode.hpp"
#include "kiln/cuda/memory.hpp"
#include "kiln/gpu/gpu.hpp"

#include "activation.cuh"
#include "batchnorm.cuh"
#include "color.cuh"
#include "colour_classes.cuh"
#include "conv2d.cuh"
#include "conv2d_igemm.cuh"
#include "conv2d_strided.cuh"
#include "elementwise.cuh"
#include "loss.cuh"
#include "optim.cuh"
#include "pooling.cuh"
#include "upsample.cuh"

// ---- the launch log (tests check that every kernel ran) ------------------------------------------
namespace kiln::cuda {
namespace detail {
struct LaunchLog {
  std::atomic<bool> recording{false};
  std::mutex mutex;
  std::set<std::string> names;
};
inline LaunchLog& launch_log() {
  static LaunchLog log;
  return log;
}
// "kernels::conv2d_forward_kernel<3>" -> "conv2d_forward_kernel"
inline std::string kernel_base_name(const char* spelled) {
  std::string s(spelled);
  s = s.substr(0, s.find('<'));
  const std::size_t colon = s.rfind(':');
  if (colon != std::string::npos) s = s.substr(colon + 1);
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}
inline void record_launch(const char* spelled) {
  LaunchLog& log = launch_log();
  if (!log.recording.load(std::memory_order_relaxed)) return;
  std::lock_guard lock(log.mutex);
  log.names.insert(kernel_base_name(spelled));
}
}  // namespace detail

// Turns the log of launched kernel names on or off (off by default: no cost in training).
inline void record_launches(bool on) { detail::launch_log().recording.store(on); }
// The base names ("relu_forward_kernel") of the kernels launched while recording was on.
inline std::set<std::string> launched_kernels() {
  std::lock_guard lock(detail::launch_log().mutex);
  return detail::launch_log().names;
}
inline void clear_launched_kernels() {
  std::lock_guard lock(detail::launch_log().mutex);
  detail::launch_log().names.clear();
}
}  // namespace kiln::cuda

// KILN_LAUNCH on the current stream, logged. The kernel must be spelled without commas.
#define KILN_CUDA_LAUNCH(kernel, grid, block, shared_bytes, ...)                                    \
  do {                                                                                             \
    ::kiln::cuda::detail::record_launch(#kernel);                                                  \
    KILN_LAUNCH(kernel, grid, block, shared_bytes, ::kiln::cuda::current_stream(), __VA_ARGS__); \
  } while (0)

namespace kiln {

template <>
inline constexpr bool backend_included<Cuda> = true;

template <>
struct Backend<Cuda> {
  // The optional capabilities of core/backend_ops.hpp.
  static constexpr bool fused_batchnorm_relu = false;
  static constexpr bool multi_tensor_adam = true;
  static constexpr bool colour_conversion = true;
  static constexpr bool synchronised_batchnorm = false;  // batchnorm_*_across (kiln/nn/replicas.hpp)

  using T = Tensor<float, Cuda>;
  using I = Tensor<std::int32_t, Cuda>;

 private:
  static float* ptr(T& t) { return t.empty() ? nullptr : t.data(); }
  static const float* ptr(const T& t) { return t.empty() ? nullptr : t.data(); }
  static kiln::cuda::kernels::GridStride elementwise(std::int64_t n) { return kiln::cuda::kernels::grid_stride(n); }
  static constexpr unsigned reduce_threads = 256;  // blocks of the per-channel reductions

 public:
  // ---- Math mode (kiln/cuda/math_mode.hpp): which convolution kernels run ----------
  static void set_math_mode(kiln::cuda::MathMode mode) { kiln::cuda::set_math_mode(mode); }
  static kiln::cuda::MathMode math_mode() { return kiln::cuda::math_mode(); }

  // ---- Conv2d -------------------------------------------------------------
  // Strict fp32 needs no scratch memory; the TF32 weight gradient uses split-K partial sums.
  static std::size_t conv2d_workspace_floats(const ConvShape& s) {
    return uses_tensor_cores(s) ? static_cast<std::size_t>(kiln::cuda::kernels::igemm::weight_grad_workspace_floats(s)) : 0;
  }

  // The forward kernels use no scratch at all.
  static std::size_t conv2d_forward_workspace_floats(const ConvShape&) { return 0; }

  static void conv2d_forward(const ConvShape& s, const T& x, const T& w, const T& b, T& y, T&) {
    namespace k = kiln::cuda::kernels;
    if (s.n == 0 || s.h == 0 || s.w == 0) return;
    if (uses_tensor_cores(s)) {
      const dim3 grid = igemm_grid(s, k::igemm::Pass::forward);
      if (s.k == 1)
        KILN_CUDA_LAUNCH(k::conv2d_igemm_forward_kernel<1>, grid, dim3(k::igemm::threads), k::igemm::shared_bytes, s,
                         x.data(), w.data(), ptr(b), y.data());
      else
        KILN_CUDA_LAUNCH(k::conv2d_igemm_forward_kernel<3>, grid, dim3(k::igemm::threads), k::igemm::shared_bytes, s,
                         x.data(), w.data(), ptr(b), y.data());
      return;
    }
    const std::size_t shared = conv_shared_bytes(s);
    const dim3 grid(conv_tiles(s), static_cast<unsigned>((s.c_out + k::conv_channels_per_block - 1) / k::conv_channels_per_block),
                    static_cast<unsigned>(s.n));
    const dim3 block(k::conv_tile, k::conv_tile);
    if (s.k == 1)
      KILN_CUDA_LAUNCH(k::conv2d_forward_kernel<1>, grid, block, shared, s, x.data(), w.data(), ptr(b), y.data());
    else if (s.k == 3)
      KILN_CUDA_LAUNCH(k::conv2d_forward_kernel<3>, grid, block, shared, s, x.data(), w.data(), ptr(b), y.data());
    else
      KILN_CUDA_LAUNCH(k::conv2d_forward_kernel<0>, grid, block, shared, s, x.data(), w.data(), ptr(b), y.data());
  }

  // dx may be empty (not wanted) and is overwritten; dw and db (may be empty) accumulate.
  static void conv2d_backward(const ConvShape& s, const T& x, const T& w, const T& dy, T& dx, T& dw, T& db, T& ws) {
    namespace k = kiln::cuda::kernels;
    if (s.n == 0 || s.h == 0 || s.w == 0) return;
    if (uses_tensor_cores(s)) {
      conv2d_backward_tf32(s, x, w, dy, dx, dw, ws);
      if (!db.empty())
        KILN_CUDA_LAUNCH(k::conv2d_backward_bias_kernel<float>, dim3(static_cast<unsigned>(s.c_out)), dim3(reduce_threads), 0,
                         s, dy.data(), db.data());
      return;
    }
    if (!dx.empty()) {
      const std::size_t shared = conv_shared_bytes(s);
      const dim3 grid(conv_tiles(s), static_cast<unsigned>((s.c_in + k::conv_channels_per_block - 1) / k::conv_channels_per_block),
                      static_cast<unsigned>(s.n));
      const dim3 block(k::conv_tile, k::conv_tile);
      if (s.k == 1)
        KILN_CUDA_LAUNCH(k::conv2d_backward_data_kernel<1>, grid, block, shared, s, w.data(), dy.data(), dx.data());
      else if (s.k == 3)
        KILN_CUDA_LAUNCH(k::conv2d_backward_data_kernel<3>, grid, block, shared, s, w.data(), dy.data(), dx.data());
      else
        KILN_CUDA_LAUNCH(k::conv2d_backward_data_kernel<0>, grid, block, shared, s, w.data(), dy.data(), dx.data());
    }
    if (!dw.empty()) {
      const dim3 grid(static_cast<unsigned>(s.c_in), static_cast<unsigned>(s.c_out));
      if (s.k == 1)
        KILN_CUDA_LAUNCH(k::conv2d_backward_weight_kernel<1>, grid, dim3(reduce_threads), 0, s, x.data(), dy.data(), dw.data());
      else if (s.k == 3)
        KILN_CUDA_LAUNCH(k::conv2d_backward_weight_kernel<3>, grid, dim3(reduce_threads), 0, s, x.data(), dy.data(), dw.data());
      else
        KILN_CUDA_LAUNCH(k::conv2d_backward_weight_kernel<0>, grid, dim3(reduce_threads), 0, s, x.data(), dy.data(), dw.data());
    }
    if (!db.empty())
      KILN_CUDA_LAUNCH(k::conv2d_backward_bias_kernel<float>, dim3(static_cast<unsigned>(s.c_out)), dim3(reduce_threads), 0, s,
                       dy.data(), db.data());
  }

  // ---- Conv2d with stride > 1 (kernels/conv2d_strided.cuh; no workspace) ------
  static void conv2d_strided_forward(const StridedConvShape& s, const T& x, const T& w, const T& b, T& y) {
    const auto total = s.n * s.c_out * s.ho() * s.wo();
    if (total == 0) return;
    const auto g = elementwise(total);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::conv2d_strided_forward_kernel<float>, g.blocks, g.threads, 0, s, x.data(),
                     w.data(), ptr(b), y.data());
  }
  // dx may be empty (not wanted) and is overwritten; dw and db (may be empty) accumulate.
  static void conv2d_strided_backward(const StridedConvShape& s, const T& x, const T& w, const T& dy, T& dx, T& dw,
                                      T& db) {
    namespace k = kiln::cuda::kernels;
    if (s.n == 0 || s.h == 0 || s.w == 0) return;
    if (!dx.empty()) {
      const auto g = elementwise(s.n * s.c_in * s.h * s.w);
      KILN_CUDA_LAUNCH(k::conv2d_strided_backward_data_kernel<float>, g.blocks, g.threads, 0, s, w.data(), dy.data(),
                       dx.data());
    }
    if (!dw.empty())
      KILN_CUDA_LAUNCH(k::conv2d_strided_backward_weight_kernel<float>,
                       dim3(static_cast<unsigned>(s.c_in), static_cast<unsigned>(s.c_out)), dim3(reduce_threads), 0, s,
                       x.data(), dy.data(), dw.data());
    if (!db.empty()) {
      const ConvShape out{s.n, s.c_in, s.c_out, s.ho(), s.wo(), s.k};  // the bias kernel reads only n, c_out, h, w
      KILN_CUDA_LAUNCH(k::conv2d_backward_bias_kernel<float>, dim3(static_cast<unsigned>(s.c_out)), dim3(reduce_threads), 0,
                       out, dy.data(), db.data());
    }
  }

  // ---- Activations (LeakyReLU, SiLU, Sigmoid, Tanh), Dropout ------------------
  static void activation_forward(const ActivationArgs& a, const T& x, T& y) {
    if (a.numel == 0) return;
    const auto g = elementwise(a.numel);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::activation_forward_kernel<float>, g.blocks, g.threads, 0, a, x.data(), y.data());
  }
  // dx overwritten; reads x (LeakyReLU, SiLU) or y (Sigmoid, Tanh).
  static void activation_backward(const ActivationArgs& a, const T& x, const T& y, const T& dy, T& dx) {
    if (a.numel == 0) return;
    const auto g = elementwise(a.numel);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::activation_backward_kernel<float>, g.blocks, g.threads, 0, a, ptr(x), ptr(y),
                     dy.data(), dx.data());
  }
  static void dropout_forward(const DropoutArgs& a, const T& x, T& y) {
    if (a.numel == 0) return;
    const auto g = elementwise(a.numel);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::dropout_kernel<float>, g.blocks, g.threads, 0, a, x.data(), y.data());
  }
  static void dropout_backward(const DropoutArgs& a, const T& dy, T& dx) { dropout_forward(a, dy, dx); }

  // ---- Element-wise helpers (kiln::sub, mul, scale, clamp; out may alias an input) ----
  static void elementwise_binary(ElementwiseOp op, const T& a, const T& b, T& out) {
    if (a.numel() == 0) return;
    const auto n = static_cast<std::int64_t>(a.numel());
    const auto g = elementwise(n);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::elementwise_binary_kernel<float>, g.blocks, g.threads, 0, op, a.data(), b.data(),
                     out.data(), n);
  }
  static void affine(const T& a, float alpha, float beta, T& out) {
    if (a.numel() == 0) return;
    const auto n = static_cast<std::int64_t>(a.numel());
    const auto g = elementwise(n);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::affine_kernel<float>, g.blocks, g.threads, 0, a.data(), alpha, beta, out.data(), n);
  }
  static void clamp(const T& a, float lo, float hi, T& out) {
    if (a.numel() == 0) return;
    const auto n = static_cast<std::int64_t>(a.numel());
    const auto g = elementwise(n);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::clamp_kernel<float>, g.blocks, g.threads, 0, a.data(), lo, hi, out.data(), n);
  }

  // ---- ReLU, add, channel concat ---------------------------------------------
  static void relu_forward(const T& x, T& y) {
    const auto n = static_cast<std::int64_t>(x.numel());
    if (n == 0) return;
    const auto g = elementwise(n);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::relu_forward_kernel<float>, g.blocks, g.threads, 0, x.data(), y.data(), n);
  }
  static void relu_backward(const T& y, const T& dy, T& dx) {
    const auto n = static_cast<std::int64_t>(y.numel());
    if (n == 0) return;
    const auto g = elementwise(n);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::relu_backward_kernel<float>, g.blocks, g.threads, 0, y.data(), dy.data(), dx.data(), n);
  }
  static void add(const T& a, const T& b, T& out) {
    const auto n = static_cast<std::int64_t>(a.numel());
    if (n == 0) return;
    const auto g = elementwise(n);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::add_kernel<float>, g.blocks, g.threads, 0, a.data(), b.data(), out.data(), n);
  }
  static void concat_channels(const T& a, const T& b, T& y) {
    if (y.numel() == 0) return;
    const auto g = elementwise(static_cast<std::int64_t>(y.numel()));
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::concat_channels_kernel<float>, g.blocks, g.threads, 0, a.data(), a.shape().c(),
                     b.data(), b.shape().c(), y.data(), a.shape().n(), a.shape().h() * a.shape().w());
  }
  static void split_channels(const T& dy, T& da, T& db) {
    if (dy.numel() == 0) return;
    const auto g = elementwise(static_cast<std::int64_t>(dy.numel()));
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::split_channels_kernel<float>, g.blocks, g.threads, 0, dy.data(), da.data(),
                     da.shape().c(), db.data(), db.shape().c(), dy.shape().n(), dy.shape().h() * dy.shape().w());
  }

  // ---- BatchNorm2d ----------------------------------------------------------
  // As Backend<Cpu>: training uses and saves batch statistics and updates running_* in place; eval
  // uses running_* and saves them as save_mean/save_invstd.
  static void batchnorm_forward(const BatchNormArgs& a, const T& x, const T& weight, const T& bias, T& running_mean,
                                T& running_var, T& save_mean, T& save_invstd, T& y) {
    namespace k = kiln::cuda::kernels;
    if (a.c == 0) return;
    KILN_CUDA_LAUNCH(k::batchnorm_stats_kernel<float>, dim3(static_cast<unsigned>(a.c)), dim3(reduce_threads), 0, a, x.data(),
                     running_mean.data(), running_var.data(), save_mean.data(), save_invstd.data());
    const std::int64_t total = a.n * a.c * a.hw;
    if (total == 0) return;
    const auto g = elementwise(total);
    KILN_CUDA_LAUNCH(k::batchnorm_apply_kernel<float>, g.blocks, g.threads, 0, a, x.data(), weight.data(), bias.data(),
                     save_mean.data(), save_invstd.data(), y.data());
  }
  // dx overwritten (may be empty: not wanted); dweight, dbias accumulate.
  static void batchnorm_backward(const BatchNormArgs& a, const T& x, const T& weight, const T& save_mean,
                                 const T& save_invstd, const T& dy, T& dx, T& dweight, T& dbias) {
    if (a.c == 0) return;
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::batchnorm_backward_kernel<float>, dim3(static_cast<unsigned>(a.c)),
                     dim3(reduce_threads), 0, a, x.data(), weight.data(), save_mean.data(), save_invstd.data(), dy.data(),
                     ptr(dx), ptr(dweight), ptr(dbias));
  }

  // ---- MaxPool2d ------------------------------------------------------------
  // argmax: the index of each window's maximum inside its input plane (ih * W + iw).
  static void maxpool2d_forward(const PoolArgs& a, const T& x, T& y, I& argmax) {
    const std::int64_t outputs = a.n * a.c * a.out_h() * a.out_w();
    if (outputs == 0) return;
    const auto g = elementwise(outputs);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::maxpool2d_forward_kernel<float>, g.blocks, g.threads, 0, a, x.data(), y.data(),
                     argmax.data());
  }
  static void maxpool2d_backward(const PoolArgs& a, const I& argmax, const T& dy, T& dx) {
    const std::int64_t inputs = a.n * a.c * a.h * a.w;
    if (inputs == 0) return;
    const auto g = elementwise(inputs);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::maxpool2d_backward_kernel<float>, g.blocks, g.threads, 0, a, argmax.data(), dy.data(),
                     dx.data());
  }

  // ---- Upsample (integer scale; bilinear with align_corners = false) ---------
  static void upsample_nearest_forward(const UpsampleArgs& a, const T& x, T& y) {
    if (y.numel() == 0) return;
    const auto g = elementwise(static_cast<std::int64_t>(y.numel()));
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::upsample_nearest_forward_kernel<float>, g.blocks, g.threads, 0, a, x.data(), y.data());
  }
  static void upsample_nearest_backward(const UpsampleArgs& a, const T& dy, T& dx) {
    if (dx.numel() == 0) return;
    const auto g = elementwise(static_cast<std::int64_t>(dx.numel()));
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::upsample_nearest_backward_kernel<float>, g.blocks, g.threads, 0, a, dy.data(), dx.data());
  }
  static void upsample_bilinear_forward(const UpsampleArgs& a, const T& x, T& y) {
    if (y.numel() == 0) return;
    const auto g = elementwise(static_cast<std::int64_t>(y.numel()));
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::upsample_bilinear_forward_kernel<float>, g.blocks, g.threads, 0, a, x.data(), y.data());
  }
  static void upsample_bilinear_backward(const UpsampleArgs& a, const T& dy, T& dx) {
    if (dx.numel() == 0) return;
    const auto g = elementwise(static_cast<std::int64_t>(dx.numel()));
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::upsample_bilinear_backward_kernel<float>, g.blocks, g.threads, 0, a, dy.data(),
                     dx.data());
  }

  // ---- Losses (mean reduction) -----------------------------------------------
  // out: a 1-element tensor receiving the mean loss. One block reduces everything (deterministic).
  static void loss_forward(const LossArgs& a, const T& prediction, const T& target, T& out) {
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::loss_forward_kernel<float>, dim3(1), dim3(512), 0, a, ptr(prediction), ptr(target),
                     out.data());
  }
  // dprediction overwritten with dL/dprediction.
  static void loss_backward(const LossArgs& a, const T& prediction, const T& target, T& dprediction) {
    if (a.numel == 0) return;
    const auto g = elementwise(a.numel);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::loss_backward_kernel<float>, g.blocks, g.threads, 0, a, prediction.data(),
                     target.data(), dprediction.data());
  }

  // ---- Colour classification (kernels/colour_classes.cuh) ----------------------
  // Per-pixel losses into pixel_loss, then one block takes their mean (deterministic).
  static void softmax_xent_forward(const SoftmaxXentArgs& a, const T& logits, const T& targets, const T& weights,
                                   T& pixel_loss, T& out) {
    namespace k = kiln::cuda::kernels;
    if (a.pixels() > 0) {
      const auto g = elementwise(a.pixels());
      KILN_CUDA_LAUNCH(k::softmax_xent_pixel_kernel<float>, g.blocks, g.threads, 0, a, logits.data(), targets.data(),
                       ptr(weights), pixel_loss.data());
    }
    KILN_CUDA_LAUNCH(k::softmax_xent_mean_kernel<float>, dim3(1), dim3(512), 0, a.pixels(), ptr(pixel_loss), out.data());
  }
  static void softmax_xent_backward(const SoftmaxXentArgs& a, const T& logits, const T& targets, const T& weights,
                                    T& dlogits) {
    if (a.pixels() == 0) return;
    const auto g = elementwise(a.pixels());
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::softmax_xent_backward_kernel<float>, g.blocks, g.threads, 0, a, logits.data(),
                     targets.data(), ptr(weights), dlogits.data());
  }
  static void ab_soft_encode_forward(const AbEncodeArgs& a, const T& ab, const T& centres, const T& bin_weights,
                                     T& targets, T& pixel_weights) {
    if (a.n * a.hw == 0) return;
    const auto g = elementwise(a.n * a.hw);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::ab_soft_encode_forward_kernel<float>, g.blocks, g.threads, 0, a, ab.data(),
                     centres.data(), ptr(bin_weights), targets.data(), ptr(pixel_weights));
  }
  static void ab_soft_encode_backward(const AbEncodeArgs& a, const T& centres, const T& targets, const T& dtargets,
                                      T& dab) {
    if (a.n * a.hw == 0) return;
    const auto g = elementwise(a.n * a.hw);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::ab_soft_encode_backward_kernel<float>, g.blocks, g.threads, 0, a, centres.data(),
                     targets.data(), dtargets.data(), dab.data());
  }
  static void annealed_mean_forward(const AnnealedMeanArgs& a, const T& logits, const T& centres, T& ab) {
    if (a.n * a.hw == 0) return;
    const auto g = elementwise(a.n * a.hw);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::annealed_mean_forward_kernel<float>, g.blocks, g.threads, 0, a, logits.data(),
                     centres.data(), ab.data());
  }
  static void annealed_mean_backward(const AnnealedMeanArgs& a, const T& logits, const T& centres, const T& ab,
                                     const T& dab, T& dlogits) {
    if (a.n * a.hw == 0) return;
    const auto g = elementwise(a.n * a.hw);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::annealed_mean_backward_kernel<float>, g.blocks, g.threads, 0, a, logits.data(),
                     centres.data(), ab.data(), dab.data(), dlogits.data());
  }

  // ---- Optimizer updates (one call per parameter tensor) ----------------------
  static void adam_step(const AdamStepArgs& a, T& param, const T& grad, T& exp_avg, T& exp_avg_sq) {
    if (a.numel == 0) return;
    const auto g = elementwise(a.numel);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::adam_step_kernel<float>, g.blocks, g.threads, 0, a, param.data(), grad.data(),
                     exp_avg.data(), exp_avg_sq.data());
  }
  // Adam / AdamW on every tensor of `tensors` in as few launches as possible (one per
  // kernels::adam_multi_max_tensors tensors); a.numel is ignored (each tensor has its own).
  // The same arithmetic as adam_step per tensor. Not in Backend<Cpu>; Adam<Cuda> does not call it yet.
  struct AdamTensors {
    T* param;
    const T* grad;
    T* exp_avg;
    T* exp_avg_sq;
  };
  static void adam_step_multi(const AdamStepArgs& a, std::span<const AdamTensors> tensors) {
    namespace k = kiln::cuda::kernels;
    std::size_t next = 0;
    while (next < tensors.size()) {
      k::AdamTensorList<float> list{};
      std::int64_t total = 0;
      list.count = 0;
      for (; next < tensors.size() && list.count < k::adam_multi_max_tensors; ++next) {
        const AdamTensors& t = tensors[next];
        const auto n = static_cast<std::int64_t>(t.param->numel());
        KILN_CHECK(t.grad->numel() == t.param->numel() && t.exp_avg->numel() == t.param->numel() &&
                       t.exp_avg_sq->numel() == t.param->numel(),
                   "Backend<Cuda>::adam_step_multi: tensor ", next, " has ", t.param->numel(), " parameters but ",
                   t.grad->numel(), " gradients, ", t.exp_avg->numel(), " and ", t.exp_avg_sq->numel(), " moments");
        if (n == 0) continue;
        list.p[list.count] = t.param->data();
        list.g[list.count] = t.grad->data();
        list.m[list.count] = t.exp_avg->data();
        list.v[list.count] = t.exp_avg_sq->data();
        list.start[list.count] = total;
        total += n;
        ++list.count;
      }
      list.start[list.count] = total;
      if (total == 0) continue;
      const auto g = elementwise(total);
      KILN_CUDA_LAUNCH(k::adam_multi_tensor_kernel<float>, g.blocks, g.threads, 0, a, list);
    }
  }
  // momentum_buffer may be empty when a.momentum == 0.
  static void sgd_step(const SgdStepArgs& a, T& param, const T& grad, T& momentum_buffer) {
    if (a.numel == 0) return;
    KILN_CHECK(a.momentum == 0.0f || !momentum_buffer.empty(), "Backend<Cuda>::sgd_step: momentum ", a.momentum,
               " needs a momentum buffer");
    const auto g = elementwise(a.numel);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::sgd_step_kernel<float>, g.blocks, g.threads, 0, a, param.data(), grad.data(),
                     ptr(momentum_buffer));
  }

  // ---- Colour (not in Backend<Cpu>: the CPU path is kiln::io::rgb_to_lab_planar) ---------------
  // [N, 3, H, W] sRGB in 0..1 -> L*a*b* (L 0..100), per pixel; `lab` may be `rgb` itself.
  static void srgb_to_lab(const T& rgb, T& lab) {
    check_colour(rgb, lab, "srgb_to_lab");
    const std::int64_t hw = rgb.shape().h() * rgb.shape().w();
    if (rgb.numel() == 0) return;
    const auto g = elementwise(rgb.shape().n() * hw);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::srgb_to_lab_kernel<float>, g.blocks, g.threads, 0, rgb.data(), lab.data(),
                     rgb.shape().n(), hw);
  }
  // [N, 3, H, W] L*a*b* -> sRGB in 0..1 (out-of-gamut colours clamped in linear light).
  static void lab_to_srgb(const T& lab, T& rgb) {
    check_colour(lab, rgb, "lab_to_srgb");
    const std::int64_t hw = lab.shape().h() * lab.shape().w();
    if (lab.numel() == 0) return;
    const auto g = elementwise(lab.shape().n() * hw);
    KILN_CUDA_LAUNCH(kiln::cuda::kernels::lab_to_srgb_kernel<float>, g.blocks, g.threads, 0, lab.data(), rgb.data(),
                     lab.shape().n(), hw);
  }

 private:
  // TF32 math selects the implicit-GEMM kernels, which exist for K = 1 and 3.
  static bool uses_tensor_cores(const ConvShape& s) {
    return kiln::cuda::math_mode() == kiln::cuda::MathMode::tf32 && (s.k == 1 || s.k == 3);
  }
  static dim3 igemm_grid(const ConvShape& s, kiln::cuda::kernels::igemm::Pass pass, unsigned splits = 1) {
    namespace ig = kiln::cuda::kernels::igemm;
    const ig::Gemm g = ig::gemm_of(s, pass);
    return dim3(static_cast<unsigned>(ig::ceil_div(g.n, ig::bn)), static_cast<unsigned>(ig::ceil_div(g.m, ig::bm)), splits);
  }
  // dx overwritten (if wanted), dw accumulated (if wanted): TF32 tensor cores.
  static void conv2d_backward_tf32(const ConvShape& s, const T& x, const T& w, const T& dy, T& dx, T& dw, T& ws) {
    namespace k = kiln::cuda::kernels;
    namespace ig = kiln::cuda::kernels::igemm;
    if (!dx.empty()) {
      const dim3 grid = igemm_grid(s, ig::Pass::backward_data);
      if (s.k == 1)
        KILN_CUDA_LAUNCH(k::conv2d_igemm_backward_data_kernel<1>, grid, dim3(ig::threads), ig::shared_bytes, s, w.data(),
                         dy.data(), dx.data());
      else
        KILN_CUDA_LAUNCH(k::conv2d_igemm_backward_data_kernel<3>, grid, dim3(ig::threads), ig::shared_bytes, s, w.data(),
                         dy.data(), dx.data());
    }
    if (dw.empty()) return;
    ig::Splits sp = ig::weight_grad_splits(s);
    const std::int64_t weights = s.c_out * s.c_in * s.k * s.k;
    // A workspace planned under strict fp32 (or none) is too small: run unsplit, straight into dw.
    if (sp.count > 1 && static_cast<std::int64_t>(ws.numel()) < sp.count * weights) sp = ig::Splits{1, 1 << 30};
    float* out = sp.count > 1 ? ws.data() : dw.data();
    const dim3 grid = igemm_grid(s, ig::Pass::backward_weight, static_cast<unsigned>(sp.count));
    if (s.k == 1)
      KILN_CUDA_LAUNCH(k::conv2d_igemm_backward_weight_kernel<1>, grid, dim3(ig::threads), ig::shared_bytes, s, x.data(),
                       dy.data(), out, sp.k_tiles_per_split);
    else
      KILN_CUDA_LAUNCH(k::conv2d_igemm_backward_weight_kernel<3>, grid, dim3(ig::threads), ig::shared_bytes, s, x.data(),
                       dy.data(), out, sp.k_tiles_per_split);
    if (sp.count > 1) {
      const auto g = elementwise(weights);
      KILN_CUDA_LAUNCH(k::conv2d_igemm_reduce_splits_kernel<float>, g.blocks, g.threads, 0, ws.data(), sp.count, weights,
                       dw.data());
    }
  }
  static unsigned conv_tiles(const ConvShape& s) {
    const std::int64_t t = kiln::cuda::kernels::conv_tile;
    return static_cast<unsigned>(((s.h + t - 1) / t) * ((s.w + t - 1) / t));
  }
  static std::size_t conv_shared_bytes(const ConvShape& s) {
    const std::size_t bytes =
        sizeof(float) * static_cast<std::size_t>(kiln::cuda::kernels::conv_tile_shared_floats(static_cast<int>(s.k)));
    KILN_CHECK(bytes <= kiln::gpu::default_max_dynamic_shared_bytes, "Backend<Cuda>: Conv2d with kernel size ", s.k,
               " needs ", bytes, " bytes of shared memory per block; the tiled kernels support up to 48 KiB (K <= 31)");
    return bytes;
  }
  static void check_colour(const T& in, const T& out, const char* what) {
    KILN_CHECK(in.shape().rank() == 4 && in.shape().c() == 3 && in.shape() == out.shape(), "Backend<Cuda>::", what,
               ": expected two [N, 3, H, W] tensors, got ", in.shape().str(), " and ", out.shape().str());
  }
};

static_assert(backend_table_complete<Cuda>());

}  // namespace kiln
