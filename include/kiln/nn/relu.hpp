#pragma once
// ReLU: y = max(x, 0). Backward reads the saved output (y > 0 exactly where
// x > 0), so the input need not be kept.
#include <string>
#include <string_view>

#include "kiln/core/backend.hpp"
#include "kiln/nn/pointwise.hpp"

namespace kiln {

template <class Device = Cpu>
class ReLU : public detail::Pointwise<ReLU<Device>, Device> {
  using Base = detail::Pointwise<ReLU<Device>, Device>;
  using Base::dx_;
  using Base::y_;

 public:
  static constexpr std::string_view kind = "ReLU";

  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode) {
    this->check_forward(x);
    Backend<Device>::relu_forward(x, y_);
    return y_;
  }
  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) {
    this->check_backward(dy);
    Backend<Device>::relu_backward(y_, dy, dx_);
    return dx_;
  }

  // For a layer fused with this ReLU (BatchNorm2d, through Sequential): it writes
  // max(its output, 0) here, where this ReLU's forward would have, and reads it
  // back as the mask in its backward.
  Tensor<float, Device>& fused_output() { return y_; }
  const Tensor<float, Device>& fused_output() const { return y_; }
};

}  // namespace kiln
