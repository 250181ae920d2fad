#pragma once
// Element-wise activations with PyTorch's semantics and defaults:
//   LeakyReLU<D>(negative_slope = 0.01)  torch.nn.LeakyReLU: x > 0 ? x : negative_slope * x
//                                        (gradient negative_slope at x == 0, like PyTorch)
//   SiLU<D>                              torch.nn.SiLU:  x * sigmoid(x)
//   Sigmoid<D>                           torch.nn.Sigmoid: 1 / (1 + exp(-x))
//   Tanh<D>                              torch.nn.Tanh
// All keep the channel count (any_channels / same_channels, like ReLU) and have no parameters.
// Backward reads the saved output (Sigmoid, Tanh) or the input (LeakyReLU, SiLU: in training the
// input must stay alive until backward, as for Conv2d; in a network it does).
// CPU: kiln/cpu/activation.hpp; CUDA: kernels/activation.cuh.
#include <string>
#include <string_view>

#include "kiln/core/backend.hpp"
#include "kiln/ops/activation.hpp"  // ActivationKind, ActivationArgs
#include "kiln/nn/pointwise.hpp"

namespace kiln {

template <ActivationKind Kind, class Device = Cpu>
class Activation : public detail::Pointwise<Activation<Kind, Device>, Device> {
  using Base = detail::Pointwise<Activation<Kind, Device>, Device>;
  using Base::dx_;
  using Base::y_;

 public:
  static constexpr ActivationKind activation = Kind;
  static constexpr std::string_view kind = Kind == ActivationKind::leaky_relu ? "LeakyReLU"
                                           : Kind == ActivationKind::silu     ? "SiLU"
                                           : Kind == ActivationKind::sigmoid  ? "Sigmoid"
                                                                              : "Tanh";

  Activation() = default;
  // LeakyReLU only: torch.nn.LeakyReLU(negative_slope).
  explicit Activation(float negative_slope) requires(Kind == ActivationKind::leaky_relu)
      : negative_slope_(negative_slope) {}

  float negative_slope() const requires(Kind == ActivationKind::leaky_relu) { return negative_slope_; }
  void set_negative_slope(float s) requires(Kind == ActivationKind::leaky_relu) { negative_slope_ = s; }

  // Returns the layer's output buffer (a view into the arena, overwritten by the next forward).
  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode) {
    this->check_forward(x);
    x_ = &x;
    Backend<Device>::activation_forward(args(), x, y_);
    return y_;
  }

  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) {
    KILN_CHECK(x_ != nullptr, kind, ": backward() called before forward()");
    this->check_backward(dy);
    Backend<Device>::activation_backward(args(), *x_, y_, dy, dx_);
    return dx_;
  }

 private:
  ActivationArgs args() const { return ActivationArgs{Kind, static_cast<std::int64_t>(y_.numel()), negative_slope_}; }

  float negative_slope_ = 0.01f;
  const Tensor<float, Device>* x_ = nullptr;
};

template <class Device = Cpu>
using LeakyReLU = Activation<ActivationKind::leaky_relu, Device>;
template <class Device = Cpu>
using SiLU = Activation<ActivationKind::silu, Device>;
template <class Device = Cpu>
using Sigmoid = Activation<ActivationKind::sigmoid, Device>;
template <class Device = Cpu>
using Tanh = Activation<ActivationKind::tanh, Device>;

}  // namespace kiln
