#pragma once
// Conv2d<In, Out, K, Device = Cpu, Stride = 1>: zero padding K/2, with bias, like
// torch.nn.Conv2d(In, Out, K, stride=Stride, padding=K//2). Weight [Out, In, K, K].
// Stride 1 keeps the image size ("same") and runs the fast paths (GEMM on the CPU, tiled and
// tensor-core kernels on CUDA). Stride > 1 gives floor((H - 1) / Stride) + 1 rows (PyTorch's
// floor((H + 2*(K/2) - K) / Stride) + 1) and runs the general path (cpu/conv2d_strided.hpp,
// kernels/conv2d_strided.cuh): correct, not tuned.
// Initialisation as PyTorch's default (Kaiming-uniform with a = sqrt(5)):
// weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = In*K*K.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "kiln/core/backend.hpp"
#include "kiln/core/backend_ops.hpp"
#include "kiln/core/conv_shape.hpp"
#include "kiln/nn/layer.hpp"
#include "kiln/nn/replicas.hpp"

namespace kiln {

namespace detail {
// Conv2d's initialisation and planning, compiled once per device rather than once per (In, Out, K,
// Stride): the channel counts and kernel size come from the layer's shapes.
template <class Device>
void reset_conv2d(Rng& rng, int fan_in, Parameter<Device>& weight, Parameter<Device>& bias) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  std::vector<float> w(weight.value.numel()), b(bias.value.numel());
  for (auto& v : w) v = rng.uniform(-bound, bound);
  for (auto& v : b) v = rng.uniform(-bound, bound);
  weight.value.copy_from_host(w);
  bias.value.copy_from_host(b);
}

template <class Device>
Shape plan_conv2d(const Shape& in, Arena<Device>& arena, std::string_view path, ConvShape& shape,
                  StridedConvShape& strided, Tensor<float, Device>& y, Tensor<float, Device>& dx,
                  Tensor<float, Device>& workspace) {
  const int In = static_cast<int>(strided.c_in), Out = static_cast<int>(strided.c_out), K = static_cast<int>(strided.k),
            Stride = static_cast<int>(strided.stride);
  KILN_CHECK(in.rank() == 4 && in.c() == In,
             where("Conv2d<" + std::to_string(In) + ", " + std::to_string(Out) + ", " + std::to_string(K) + ">", path),
             ": expected an input of shape [N, ", In, ", H, W], got ", in.str());
  shape = {in.n(), In, Out, in.h(), in.w(), K};
  strided = {in.n(), In, Out, in.h(), in.w(), K, Stride};
  const Shape out = Shape::nchw(in.n(), Out, strided.ho(), strided.wo());
  const auto x = arena.current();
  arena.output(y, out);
  if (Stride > 1) {  // the general path needs no workspace
    if (arena.training())
      arena.request(dx, in);
    else
      dx = {};
  } else if (arena.training()) {
    arena.request(dx, in);
    arena.request(workspace, Shape{static_cast<std::int64_t>(Backend<Device>::conv2d_workspace_floats(shape)) + 1});
  } else {
    dx = {};  // (not a stale view into a reused block)
    arena.scratch(workspace,
                  Shape{static_cast<std::int64_t>(Backend<Device>::conv2d_forward_workspace_floats(shape)) + 1});
  }
  arena.release(x);
  return out;
}
}  // namespace detail

template <int In, int Out, int K, class Device = Cpu, int Stride = 1>
class Conv2d {
  static_assert(In > 0 && Out > 0, "kiln::Conv2d: channel counts must be positive");
  static_assert(K % 2 == 1, "kiln::Conv2d: the kernel size must be odd (padding K/2 keeps the image size)");
  static_assert(Stride >= 1, "kiln::Conv2d: the stride must be at least 1");

 public:
  using device = Device;
  static constexpr int in_channels = In;
  static constexpr int out_channels = Out;
  static constexpr int kernel_size = K;
  static constexpr int stride = Stride;
  static constexpr std::size_t parameter_count = std::size_t(Out) * In * K * K + Out;
  static constexpr std::string_view kind = "Conv2d";

  Conv2d() : weight_(Shape{Out, In, K, K}), bias_(Shape{Out}) { reset_parameters(default_rng()); }

  void reset_parameters(Rng& rng) {
    packing_.value.forget();
    detail::reset_conv2d(rng, In * K * K, weight_, bias_);
  }

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    kept_ = ConvKept::nothing;  // a new plan binds a new workspace
    packing_plan_ = 0;
    packing_.value = {};
    input_copied_ = gradient_copied_ = false;
    const Shape out = detail::plan_conv2d(in, arena, path, shape_, strided_, y_, dx_, workspace_);
    if constexpr (Stride == 1 && HasBatchedConvPacking<Device>) {
      // A network may pack this layer's weights with the others', an optimizer as it writes them.
      if (arena.training()) {
        packing_.value = {shape_, &weight_.value, &workspace_, {}};
        arena.add_conv_packing(&packing_.value);
        packing_plan_ = arena.plan_id();
      }
    }
    return out;
  }

  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode mode) {
    check_planned(x);
    x_ = &x;
    const bool x_copied = std::exchange(input_copied_, false);
    // The optimizer's packing serves this forward at most: the forward (and the backward) may write
    // over the workspace.
    bool packed = false;
    if constexpr (HasBatchedConvPacking<Device>)
      packed = mode == Mode::train && (PackedForward::covers(packing_plan_) ||  // the network packed the weights
                                       Backend<Device>::conv2d_packed_current(packing_.value));  // the optimizer did
    packing_.value.forget();
    if constexpr (Stride > 1) {
      Backend<Device>::conv2d_strided_forward(strided_, x, weight_.value, bias_.value, y_);
    } else if (mode == Mode::train) {
      if constexpr (HasActivationCopies<Device> && HasBatchedConvPacking<Device>) {
        if (packed)
          Backend<Device>::conv2d_forward_packed(shape_, x, weight_.value, bias_.value, y_, workspace_, x_copied);
        else
          Backend<Device>::conv2d_forward(shape_, x, weight_.value, bias_.value, y_, workspace_, x_copied);
      } else if constexpr (HasBatchedConvPacking<Device>) {
        if (packed)
          Backend<Device>::conv2d_forward_packed(shape_, x, weight_.value, bias_.value, y_, workspace_);
        else
          Backend<Device>::conv2d_forward(shape_, x, weight_.value, bias_.value, y_, workspace_);
      } else {
        Backend<Device>::conv2d_forward(shape_, x, weight_.value, bias_.value, y_, workspace_);
      }
      // A train plan's workspace is this layer's alone until the backward (an eval plan's is scratch).
      kept_ = Backend<Device>::conv2d_forward_kept(shape_, workspace_);
    } else {
      // Even on a train plan, an eval forward sees only what an eval plan's workspace holds (no
      // room to pack what a backward would use) and keeps nothing.
      const std::int64_t floats = std::min<std::int64_t>(
          workspace_.numel(), static_cast<std::int64_t>(Backend<Device>::conv2d_forward_workspace_floats(shape_)) + 1);
      Tensor<float, Device> ws = Tensor<float, Device>::view(workspace_.data(), Shape{floats});
      Backend<Device>::conv2d_forward(shape_, x, weight_.value, bias_.value, y_, ws);
      kept_ = ConvKept::nothing;
    }
    return y_;
  }

  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) {
    KILN_CHECK(x_ != nullptr, "Conv2d: backward() called before forward()");
    KILN_CHECK(!dx_.empty(), "Conv2d: backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == y_.shape(), "Conv2d: gradient of shape ", dy.shape().str(), " does not match output ",
               y_.shape().str());
    Tensor<float, Device> dx = input_grad_ ? dx_ : Tensor<float, Device>{};
    const bool dy_copied = std::exchange(gradient_copied_, false);
    packing_.value.forget();
    if constexpr (Stride > 1)
      Backend<Device>::conv2d_strided_backward(strided_, *x_, weight_.value, dy, dx, weight_.grad, bias_.grad);
    else if constexpr (HasActivationCopies<Device>)
      Backend<Device>::conv2d_backward(shape_, *x_, weight_.value, dy, dx, weight_.grad, bias_.grad, workspace_, kept_,
                                       dy_copied);
    else
      Backend<Device>::conv2d_backward(shape_, *x_, weight_.value, dy, dx, weight_.grad, bias_.grad, workspace_, kept_);
    kept_ = ConvKept::nothing;             // serves one backward: its weight gradient may write over it
    detail::gradient_ready(weight_.grad);  // kiln/nn/replicas.hpp
    detail::gradient_ready(bias_.grad);
    return dx_;
  }

  template <class F>
  void visit(F&& f, const std::string& prefix) {
    using Ref = StateRef<Device>;
    packing_.value.forget();  // f may write the weights
    f(Ref{Ref::Kind::parameter, join_name(prefix, "weight"), &weight_.value, &weight_.grad, nullptr, &packing_.value});
    f(Ref{Ref::Kind::parameter, join_name(prefix, "bias"), &bias_.value, &bias_.grad, nullptr});
  }

  // The first layer of a network has no use for dL/dx; skipping it saves a
  // whole transposed convolution. The result of backward() is then zeros.
  void set_input_grad(bool wanted) { input_grad_ = wanted; }

  // The activation copies (core/backend_ops.hpp, HasActivationCopies): where this layer's next
  // training forward reads x's copy, and where its next backward reads dy's, in its workspace
  // (null: it reads none, or the backend has none). Sequential has the fused BatchNorm + ReLU
  // before (after) this layer write the copy there, then calls input_copy_written()
  // (gradient_copy_written()): the next forward (backward) then skips its own copy, once.
  float* input_copy_slot(Mode mode) {
    if constexpr (Stride == 1 && HasActivationCopies<Device>)
      if (mode == Mode::train && !dx_.empty()) return Backend<Device>::conv2d_input_copy(shape_, workspace_);
    return nullptr;
  }
  void input_copy_written() { input_copied_ = true; }
  float* gradient_copy_slot() {
    if constexpr (Stride == 1 && HasActivationCopies<Device>)
      if (!dx_.empty()) return Backend<Device>::conv2d_gradient_copy(shape_, workspace_, input_grad_);
    return nullptr;
  }
  void gradient_copy_written() { gradient_copied_ = true; }

  Parameter<Device>& weight() {
    packing_.value.forget();  // the caller may write the weights
    return weight_;
  }
  Parameter<Device>& bias() { return bias_; }

 private:
  void check_planned(const Tensor<float, Device>& x) const {
    detail::check_planned(kind, x.shape(), Shape::nchw(shape_.n, In, shape_.h, shape_.w));
  }

  Parameter<Device> weight_, bias_;
  ConvShape shape_{0, In, Out, 0, 0, K};
  StridedConvShape strided_{0, In, Out, 0, 0, K, Stride};
  Tensor<float, Device> y_, dx_, workspace_;
  const Tensor<float, Device>* x_ = nullptr;
  ConvKept kept_ = ConvKept::nothing;  // what the last forward left in workspace_ for the backward
  std::uint64_t packing_plan_ = 0;     // the training plan that registered this layer's packings (Arena::plan_id)
  OwnedConvPacking<Device> packing_;   // registered with a training plan (stride 1, where the device packs)
  bool input_grad_ = true;
  bool input_copied_ = false, gradient_copied_ = false;  // a copy slot written for the next pass
};

}  // namespace kiln
