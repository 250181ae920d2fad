#pragma once
// BatchNorm2d<C>: like torch.nn.BatchNorm2d(C) (affine, track_running_stats,
// eps 1e-5, momentum 0.1). state_dict: weight (1), bias (0), running_mean (0),
// running_var (1), num_batches_tracked (int64 counter).
//   Mode::train: normalise with the batch's mean and biased variance over
//     (N, H, W); update the running statistics with the UNBIASED variance;
//     count the batch. N*H*W must be at least 2 (PyTorch refuses 1 too).
//   Mode::eval: normalise with the running statistics.
// backward() follows the mode of the last forward(): the full batch-statistics
// formula after a train forward, the plain affine map after an eval forward.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/core/backend.hpp"
#include "kiln/core/backend_ops.hpp"
#include "kiln/ops/batchnorm.hpp"
#include "kiln/nn/layer.hpp"
#include "kiln/nn/replicas.hpp"
#include "kiln/nn/relu.hpp"

namespace kiln {

template <int C, class Device = Cpu>
class BatchNorm2d {
  static_assert(C > 0, "kiln::BatchNorm2d: the channel count must be positive");

 public:
  using device = Device;
  static constexpr int in_channels = C;
  static constexpr int out_channels = C;
  static constexpr std::size_t parameter_count = 2 * std::size_t(C);
  static constexpr std::string_view kind = "BatchNorm2d";

  explicit BatchNorm2d(float eps = 1e-5f, float momentum = 0.1f)
      : weight_(Shape{C}), bias_(Shape{C}), running_mean_(Shape{C}), running_var_(Shape{C}), eps_(eps),
        momentum_(momentum) {
    reset_parameters(default_rng());
  }

  // Like PyTorch's reset_parameters(): weight 1, bias 0, running statistics reset.
  void reset_parameters(Rng&) {
    fill(weight_.value, 1.0f);
    fill(bias_.value, 0.0f);
    reset_running_stats();
  }
  void reset_running_stats() {
    fill(running_mean_, 0.0f);
    fill(running_var_, 1.0f);
    num_batches_tracked_ = 0;
  }

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4 && in.c() == C, detail::where("BatchNorm2d<" + std::to_string(C) + ">", path),
               ": expected an input of shape [N, ", C, ", H, W], got ", in.str());
    path_ = std::string(path);
    args_.n = in.n();
    args_.c = C;
    args_.hw = in.h() * in.w();
    const auto x = arena.current();
    arena.output(y_, in);
    if (arena.training())
      arena.request(dx_, in);
    else
      dx_ = {};  // (not a stale view into a reused block)
    // Written by the eval forward pass too (with the running statistics); C floats each.
    arena.request(save_mean_, Shape{C});
    arena.request(save_invstd_, Shape{C});
    arena.release(x);
    return in;
  }

  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode mode) {
    begin_forward(x, mode);
    if (synced_)
      forward_across(x, false, y_);
    else
      Backend<Device>::batchnorm_forward(args_, x, weight_.value, bias_.value, running_mean_, running_var_, save_mean_,
                                         save_invstd_, y_);
    if (args_.training) ++num_batches_tracked_;
    return y_;
  }

  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) {
    check_backward(dy);
    Tensor<float, Device> dx = input_grad_ ? dx_ : Tensor<float, Device>{};
    if (synced_)
      backward_across(false, y_, dy, dx);
    else
      Backend<Device>::batchnorm_backward(args_, *x_, weight_.value, save_mean_, save_invstd_, dy, dx, weight_.grad,
                                          bias_.grad);
    gradients_ready();
    return dx_;
  }

  // BatchNorm2d followed by ReLU in one pass each way (Sequential calls these for the
  // pair when the backend has the fused operations). forward_relu writes
  // max(batchnorm(x), 0) into relu's output and returns it; backward_relu takes dL/d(relu
  // output), masks it with that output and returns this layer's dL/dx, accumulating the
  // parameter gradients: the same values as relu.backward() then backward().
  // (The constraint is checked only where Sequential looks for the pair, so naming a
  // BatchNorm2d<C, Cuda> type does not need the CUDA backend included.)

  const Tensor<float, Device>& forward_relu(const Tensor<float, Device>& x, Mode mode,
                                            ReLU<Device>& relu) requires HasFusedBatchNormReLU<Device> {
    begin_forward(x, mode);
    Tensor<float, Device>& y = fused_output(relu);
    if (synced_)
      forward_across(x, true, y);
    else
      Backend<Device>::batchnorm_relu_forward(args_, x, weight_.value, bias_.value, running_mean_, running_var_,
                                              save_mean_, save_invstd_, y);
    if (args_.training) ++num_batches_tracked_;
    return y;
  }

  const Tensor<float, Device>& backward_relu(const Tensor<float, Device>& dy,
                                             const ReLU<Device>& relu) requires HasFusedBatchNormReLU<Device> {
    check_backward(dy);
    Tensor<float, Device> dx = input_grad_ ? dx_ : Tensor<float, Device>{};
    if (synced_)
      backward_across(true, relu.fused_output(), dy, dx);
    else
      Backend<Device>::batchnorm_relu_backward(args_, *x_, weight_.value, save_mean_, save_invstd_, relu.fused_output(),
                                               dy, dx, weight_.grad, bias_.grad);
    gradients_ready();
    return dx_;
  }

  // The same, also writing the output (the input gradient) into `copy`: a convolution's slot for
  // its activation copy (core/backend_ops.hpp, HasActivationCopies; Sequential passes the next
  // Conv2d's input_copy_slot, the previous one's gradient_copy_slot; null: none). copy_written()
  // then says whether it did: not in a forward synchronised across replicas, nor a backward
  // without dx.
  const Tensor<float, Device>& forward_relu(const Tensor<float, Device>& x, Mode mode, ReLU<Device>& relu,
                                            float* copy) requires HasActivationCopies<Device> {
    begin_forward(x, mode);
    Tensor<float, Device>& y = fused_output(relu);
    copy_written_ = copy != nullptr && !synced_;
    if (synced_)
      forward_across(x, true, y);
    else
      Backend<Device>::batchnorm_relu_forward(args_, x, weight_.value, bias_.value, running_mean_, running_var_,
                                              save_mean_, save_invstd_, y, copy);
    if (args_.training) ++num_batches_tracked_;
    return y;
  }
  const Tensor<float, Device>& backward_relu(const Tensor<float, Device>& dy, const ReLU<Device>& relu,
                                             float* copy) requires HasActivationCopies<Device> {
    check_backward(dy);
    Tensor<float, Device> dx = input_grad_ ? dx_ : Tensor<float, Device>{};
    copy_written_ = copy != nullptr && !synced_ && !dx.empty();
    if (synced_)
      backward_across(true, relu.fused_output(), dy, dx);
    else
      Backend<Device>::batchnorm_relu_backward(args_, *x_, weight_.value, save_mean_, save_invstd_, relu.fused_output(),
                                               dy, dx, weight_.grad, bias_.grad, copy_written_ ? copy : nullptr);
    gradients_ready();
    return dx_;
  }
  bool copy_written() const { return copy_written_; }

  template <class F>
  void visit(F&& f, const std::string& prefix) {
    using Ref = StateRef<Device>;
    f(Ref{Ref::Kind::parameter, join_name(prefix, "weight"), &weight_.value, &weight_.grad, nullptr});
    f(Ref{Ref::Kind::parameter, join_name(prefix, "bias"), &bias_.value, &bias_.grad, nullptr});
    f(Ref{Ref::Kind::buffer, join_name(prefix, "running_mean"), &running_mean_, nullptr, nullptr});
    f(Ref{Ref::Kind::buffer, join_name(prefix, "running_var"), &running_var_, nullptr, nullptr});
    f(Ref{Ref::Kind::counter, join_name(prefix, "num_batches_tracked"), nullptr, nullptr, &num_batches_tracked_});
  }

  // As Conv2d: a first layer's dL/dx is not needed (backward() then returns zeros).
  void set_input_grad(bool wanted) { input_grad_ = wanted; }

  Parameter<Device>& weight() { return weight_; }
  Parameter<Device>& bias() { return bias_; }
  Tensor<float, Device>& running_mean() { return running_mean_; }
  Tensor<float, Device>& running_var() { return running_var_; }
  std::int64_t num_batches_tracked() const { return num_batches_tracked_; }
  float eps() const { return eps_; }
  float momentum() const { return momentum_; }

 private:
  Tensor<float, Device>& fused_output(ReLU<Device>& relu) {
    Tensor<float, Device>& y = relu.fused_output();
    KILN_CHECK(y.shape() == y_.shape(), "BatchNorm2d: the fused ReLU was planned for ", y.shape().str(),
               ", this layer for ", y_.shape().str());
    return y;
  }
  void begin_forward(const Tensor<float, Device>& x, Mode mode) {
    detail::check_planned(kind, x.shape(), y_.shape());
    args_.training = mode == Mode::train;
    args_.eps = eps_;
    args_.momentum = momentum_;
    if (args_.training)
      KILN_CHECK(args_.count() > 1, detail::where("BatchNorm2d<" + std::to_string(C) + ">", path_),
                 ": training needs more than one value per channel, got an input of shape ", x.shape().str());
    x_ = &x;
    // Synchronised across replicas (kiln/nn/replicas.hpp) in training; backward follows the
    // forward it belongs to.
    synced_ = args_.training && static_cast<bool>(replica_sum());
  }
  void forward_across(const Tensor<float, Device>& x, bool relu, Tensor<float, Device>& y) {
    if constexpr (HasSynchronisedBatchNorm<Device>) {
      Backend<Device>::batchnorm_forward_across(args_, relu, x, weight_.value, bias_.value, running_mean_, running_var_,
                                                save_mean_, save_invstd_, y, replica_sum());
    } else {
      (void)x, (void)relu, (void)y;
      throw Error(detail::where("BatchNorm2d<" + std::to_string(C) + ">", path_) +
                  ": synchronised BatchNorm (kiln::replica_sum() is set) is not implemented on this device's backend "
                  "(Backend<Cpu> has it): use per-replica BatchNorm here");
    }
  }
  void backward_across(bool relu, const Tensor<float, Device>& y, const Tensor<float, Device>& dy,
                       Tensor<float, Device>& dx) {
    if constexpr (HasSynchronisedBatchNorm<Device>) {
      Backend<Device>::batchnorm_backward_across(args_, relu, *x_, weight_.value, save_mean_, save_invstd_, y, dy, dx,
                                                 weight_.grad, bias_.grad, replica_sum());
    } else {
      (void)relu, (void)y, (void)dy, (void)dx;
    }
  }
  void gradients_ready() {
    detail::gradient_ready(weight_.grad);
    detail::gradient_ready(bias_.grad);
  }
  void check_backward(const Tensor<float, Device>& dy) const {
    KILN_CHECK(x_ != nullptr, "BatchNorm2d: backward() called before forward()");
    KILN_CHECK(!dx_.empty(), "BatchNorm2d: backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == y_.shape(), "BatchNorm2d: gradient of shape ", dy.shape().str(), " does not match output ",
               y_.shape().str());
  }

  static void fill(Tensor<float, Device>& t, float v) {
    std::vector<float> host(t.numel(), v);
    t.copy_from_host(host);
  }

  Parameter<Device> weight_, bias_;
  Tensor<float, Device> running_mean_, running_var_;
  std::int64_t num_batches_tracked_ = 0;
  float eps_, momentum_;
  BatchNormArgs args_{};
  std::string path_;
  Tensor<float, Device> y_, dx_, save_mean_, save_invstd_;
  const Tensor<float, Device>* x_ = nullptr;
  bool input_grad_ = true;
  bool synced_ = false;
  bool copy_written_ = false;  // the last forward_relu / backward_relu with a copy slot wrote it
};

}  // namespace kiln
