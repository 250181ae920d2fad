#pragma once
// Backend<Cpu>: the CPU implementations behind every layer (OpenMP threads).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kiln/core/backend.hpp"
#include "kiln/core/backend_ops.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/cpu/activation.hpp"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/cpu/conv2d_strided.hpp"
#include "kiln/cpu/elementwise.hpp"
#include "kiln/cpu/batchnorm.hpp"
#include "kiln/cpu/loss.hpp"
#include "kiln/cpu/optim.hpp"
#include "kiln/cpu/pooling.hpp"
#include "kiln/cpu/softmax_xent.hpp"
#include "kiln/cpu/upsample.hpp"

namespace kiln {

template <>
struct Backend<Cpu> {
  // The optional capabilities of core/backend_ops.hpp.
  static constexpr bool fused_batchnorm_relu = true;
  static constexpr bool multi_tensor_adam = true;
  static constexpr bool batched_conv_packing = false;       // nothing to pack per forward
  static constexpr bool synchronised_batchnorm = true;      // batchnorm_*_across (kiln/nn/replicas.hpp)
  static constexpr bool activation_copies = false;          // the convolutions read fp32 directly
  static constexpr bool deferred_wgrad_reductions = false;  // no weight gradient reduced apart

  using T = Tensor<float, Cpu>;

  // ---- Conv2d -------------------------------------------------------------
  static std::size_t conv2d_workspace_floats(const ConvShape& s) { return cpu::conv2d_workspace_floats(s); }
  static std::size_t conv2d_forward_workspace_floats(const ConvShape& s) {
    return cpu::conv2d_forward_workspace_floats(s);
  }
  static void conv2d_forward(const ConvShape& s, const T& x, const T& w, const T& b, T& y, T& workspace) {
    cpu::conv2d_forward(s, x.data(), w.data(), b.empty() ? nullptr : b.data(), y.data(), workspace.data());
  }
  // The CPU's backward recomputes what it needs: its forward leaves nothing for it.
  static ConvKept conv2d_forward_kept(const ConvShape&, const T&) { return ConvKept::nothing; }
  // dx may be empty (not wanted); dw and db accumulate. The ConvKept is always nothing here.
  static void conv2d_backward(const ConvShape& s, const T& x, const T& w, const T& dy, T& dx, T& dw, T& db,
                              T& workspace, ConvKept = ConvKept::nothing) {
    cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), dx.empty() ? nullptr : dx.data(), dw.data(),
                         db.empty() ? nullptr : db.data(), workspace.data());
  }

  // ---- Conv2d with stride > 1 (general path; no workspace) ------------------
  static void conv2d_strided_forward(const StridedConvShape& s, const T& x, const T& w, const T& b, T& y) {
    cpu::conv2d_strided_forward(s, x.data(), w.data(), b.empty() ? nullptr : b.data(), y.data());
  }
  // dx may be empty (not wanted) and is overwritten; dw and db (may be empty) accumulate.
  static void conv2d_strided_backward(const StridedConvShape& s, const T& x, const T& w, const T& dy, T& dx, T& dw,
                                      T& db) {
    cpu::conv2d_strided_backward(s, x.data(), w.data(), dy.data(), dx.empty() ? nullptr : dx.data(),
                                 dw.empty() ? nullptr : dw.data(), db.empty() ? nullptr : db.data());
  }

  // ---- Activations (LeakyReLU, SiLU, Sigmoid, Tanh), Dropout ------------------
  static void activation_forward(const ActivationArgs& a, const T& x, T& y) {
    cpu::activation_forward(a, x.data(), y.data());
  }
  // dx overwritten; reads x (LeakyReLU, SiLU) or y (Sigmoid, Tanh).
  static void activation_backward(const ActivationArgs& a, const T& x, const T& y, const T& dy, T& dx) {
    cpu::activation_backward(a, x.data(), y.data(), dy.data(), dx.data());
  }
  static void dropout_forward(const DropoutArgs& a, const T& x, T& y) { cpu::dropout_forward(a, x.data(), y.data()); }
  static void dropout_backward(const DropoutArgs& a, const T& dy, T& dx) {
    cpu::dropout_backward(a, dy.data(), dx.data());
  }

  // ---- Element-wise helpers (kiln::sub, mul, scale, clamp; out may alias an input) ----
  static void elementwise_binary(ElementwiseOp op, const T& a, const T& b, T& out) {
    cpu::elementwise_binary(op, a.data(), b.data(), out.data(), static_cast<std::int64_t>(a.numel()));
  }
  static void affine(const T& a, float alpha, float beta, T& out) {
    cpu::affine(a.data(), alpha, beta, out.data(), static_cast<std::int64_t>(a.numel()));
  }
  static void clamp(const T& a, float lo, float hi, T& out) {
    cpu::clamp(a.data(), lo, hi, out.data(), static_cast<std::int64_t>(a.numel()));
  }

  // ---- ReLU, add, channel concat ---------------------------------------------
  static void relu_forward(const T& x, T& y) {
    cpu::relu_forward(x.data(), y.data(), static_cast<std::int64_t>(x.numel()));
  }
  static void relu_backward(const T& y, const T& dy, T& dx) {
    cpu::relu_backward(y.data(), dy.data(), dx.data(), static_cast<std::int64_t>(y.numel()));
  }
  static void add(const T& a, const T& b, T& out) {
    cpu::add(a.data(), b.data(), out.data(), static_cast<std::int64_t>(a.numel()));
  }
  static void concat_channels(const T& a, const T& b, T& y) {
    cpu::concat_channels(a.data(), a.shape().c(), b.data(), b.shape().c(), y.data(), a.shape().n(),
                         a.shape().h() * a.shape().w());
  }
  static void split_channels(const T& dy, T& da, T& db) {
    cpu::split_channels(dy.data(), da.data(), da.shape().c(), db.data(), db.shape().c(), dy.shape().n(),
                        dy.shape().h() * dy.shape().w());
  }

  // ---- BatchNorm2d ----------------------------------------------------------
  // weight, bias, running_*, save_* are [C]. See cpu/batchnorm.hpp for the math:
  // training uses and saves batch statistics and updates running_* in place;
  // eval uses running_* (unchanged) and saves them as save_mean/save_invstd.
  static void batchnorm_forward(const BatchNormArgs& a, const T& x, const T& weight, const T& bias, T& running_mean,
                                T& running_var, T& save_mean, T& save_invstd, T& y) {
    cpu::batchnorm_forward(a, x.data(), weight.data(), bias.data(), running_mean.data(), running_var.data(),
                           save_mean.data(), save_invstd.data(), y.data());
  }
  // dx overwritten (may be empty: not wanted); dweight, dbias accumulate.
  static void batchnorm_backward(const BatchNormArgs& a, const T& x, const T& weight, const T& save_mean,
                                 const T& save_invstd, const T& dy, T& dx, T& dweight, T& dbias) {
    cpu::batchnorm_backward(a, x.data(), weight.data(), save_mean.data(), save_invstd.data(), dy.data(),
                            dx.empty() ? nullptr : dx.data(), dweight.data(), dbias.data());
  }

  // BatchNorm2d + ReLU in one pass (see cpu::batchnorm_relu_*): y = max(bn(x), 0);
  // backward masks dy with y and returns the batch norm's gradients.
  static void batchnorm_relu_forward(const BatchNormArgs& a, const T& x, const T& weight, const T& bias,
                                     T& running_mean, T& running_var, T& save_mean, T& save_invstd, T& y) {
    cpu::batchnorm_relu_forward(a, x.data(), weight.data(), bias.data(), running_mean.data(), running_var.data(),
                                save_mean.data(), save_invstd.data(), y.data());
  }
  static void batchnorm_relu_backward(const BatchNormArgs& a, const T& x, const T& weight, const T& save_mean,
                                      const T& save_invstd, const T& y, const T& dy, T& dx, T& dweight, T& dbias) {
    cpu::batchnorm_relu_backward(a, x.data(), weight.data(), save_mean.data(), save_invstd.data(), y.data(), dy.data(),
                                 dx.empty() ? nullptr : dx.data(), dweight.data(), dbias.data());
  }

  // Synchronised BatchNorm (training): as above, with every per-channel sum added across the
  // replicas by sum_across (kiln/nn/replicas.hpp). relu: the fused BatchNorm + ReLU, whose
  // output y then masks dy in backward (y is ignored without relu).
  static void batchnorm_forward_across(const BatchNormArgs& a, bool relu, const T& x, const T& weight, const T& bias,
                                       T& running_mean, T& running_var, T& save_mean, T& save_invstd, T& y,
                                       const std::function<void(std::span<double>)>& sum_across) {
    thread_local std::vector<double> sums;
    cpu::batchnorm_forward_across(a, relu, x.data(), weight.data(), bias.data(), running_mean.data(),
                                  running_var.data(), save_mean.data(), save_invstd.data(), y.data(), sums, sum_across);
  }
  static void batchnorm_backward_across(const BatchNormArgs& a, bool relu, const T& x, const T& weight,
                                        const T& save_mean, const T& save_invstd, const T& y, const T& dy, T& dx,
                                        T& dweight, T& dbias,
                                        const std::function<void(std::span<double>)>& sum_across) {
    thread_local std::vector<double> sums;
    cpu::batchnorm_backward_across(a, relu, x.data(), weight.data(), save_mean.data(), save_invstd.data(), y.data(),
                                   dy.data(), dx.empty() ? nullptr : dx.data(), dweight.data(), dbias.data(), sums,
                                   sum_across);
  }

  // ---- MaxPool2d ------------------------------------------------------------
  // argmax: the index of each window's maximum inside its input plane (ih * W + iw).
  static void maxpool2d_forward(const PoolArgs& a, const T& x, T& y, Tensor<std::int32_t, Cpu>& argmax) {
    cpu::maxpool2d_forward(a, x.data(), y.data(), argmax.data());
  }
  static void maxpool2d_backward(const PoolArgs& a, const Tensor<std::int32_t, Cpu>& argmax, const T& dy, T& dx) {
    cpu::maxpool2d_backward(a, argmax.data(), dy.data(), dx.data());
  }

  // ---- Upsample (integer scale; bilinear with align_corners = false) ---------
  static void upsample_nearest_forward(const UpsampleArgs& a, const T& x, T& y) {
    cpu::upsample_nearest_forward(a, x.data(), y.data());
  }
  static void upsample_nearest_backward(const UpsampleArgs& a, const T& dy, T& dx) {
    cpu::upsample_nearest_backward(a, dy.data(), dx.data());
  }
  static void upsample_bilinear_forward(const UpsampleArgs& a, const T& x, T& y) {
    cpu::upsample_bilinear_forward(a, x.data(), y.data());
  }
  static void upsample_bilinear_backward(const UpsampleArgs& a, const T& dy, T& dx) {
    cpu::upsample_bilinear_backward(a, dy.data(), dx.data());
  }

  // ---- Losses (mean reduction) -----------------------------------------------
  // out: a 1-element tensor receiving the mean loss (the layer copies it to the host).
  static void loss_forward(const LossArgs& a, const T& prediction, const T& target, T& out) {
    cpu::loss_forward(a, prediction.data(), target.data(), out.data());
  }
  // dprediction overwritten with dL/dprediction.
  static void loss_backward(const LossArgs& a, const T& prediction, const T& target, T& dprediction) {
    cpu::loss_backward(a, prediction.data(), target.data(), dprediction.data());
  }

  // ---- Softmax cross-entropy (kiln/cpu/softmax_xent.hpp) -------------------------
  // weights may be empty (every pixel 1); pixel_loss is the CUDA reduction's scratch (unused here).
  static void softmax_xent_forward(const SoftmaxXentArgs& a, const T& logits, const T& targets, const T& weights, T&,
                                   T& out) {
    cpu::softmax_xent_forward(a, logits.data(), targets.data(), weights.empty() ? nullptr : weights.data(), out.data());
  }
  static void softmax_xent_backward(const SoftmaxXentArgs& a, const T& logits, const T& targets, const T& weights,
                                    T& dlogits) {
    cpu::softmax_xent_backward(a, logits.data(), targets.data(), weights.empty() ? nullptr : weights.data(),
                               dlogits.data());
  }

  // ---- Optimizer updates -------------------------------------------------------
  static void adam_step(const AdamStepArgs& a, T& param, const T& grad, T& exp_avg, T& exp_avg_sq) {
    cpu::adam_step(a, param.data(), grad.data(), exp_avg.data(), exp_avg_sq.data());
  }
  // Adam / AdamW on every tensor of `tensors` in one parallel region, the same bits as adam_step per
  // tensor; a.numel is ignored (each tensor has its own). Adam<Cpu> calls it, as Adam<Cuda> does.
  struct AdamTensors {
    T* param;
    const T* grad;
    T* exp_avg;
    T* exp_avg_sq;
  };
  static void adam_step_multi(const AdamStepArgs& a, std::span<const AdamTensors> tensors) {
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const AdamTensors& t = tensors[i];
      KILN_CHECK(t.grad->numel() == t.param->numel() && t.exp_avg->numel() == t.param->numel() &&
                     t.exp_avg_sq->numel() == t.param->numel(),
                 "Backend<Cpu>::adam_step_multi: tensor ", i, " has ", t.param->numel(), " parameters but ",
                 t.grad->numel(), " gradients, ", t.exp_avg->numel(), " and ", t.exp_avg_sq->numel(), " moments");
    }
    cpu::adam_step_multi(a, tensors.size(), [&](std::size_t k) {
      const AdamTensors& t = tensors[k];
      return cpu::AdamSpan{t.param->data(), t.grad->data(), t.exp_avg->data(), t.exp_avg_sq->data(),
                           static_cast<std::int64_t>(t.param->numel())};
    });
  }
  // momentum_buffer may be empty when a.momentum == 0.
  static void sgd_step(const SgdStepArgs& a, T& param, const T& grad, T& momentum_buffer) {
    cpu::sgd_step(a, param.data(), grad.data(), momentum_buffer.empty() ? nullptr : momentum_buffer.data());
  }
};

static_assert(backend_table_complete<Cpu>());

}  // namespace kiln
