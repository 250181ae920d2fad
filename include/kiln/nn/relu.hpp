#pragma once
// ReLU: y = max(x, 0). Backward reads the saved output (y > 0 exactly where
// x > 0), so the input need not be kept.
#include <string>
#include <string_view>

#include "kiln/core/backend.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln {

template <class Device = Cpu>
class ReLU {
 public:
  using device = Device;
  static constexpr int in_channels = any_channels;
  static constexpr int out_channels = same_channels;
  static constexpr std::size_t parameter_count = 0;
  static constexpr std::string_view kind = "ReLU";

  void reset_parameters(Rng&) {}

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4, detail::where(kind, path), ": expected an NCHW input, got ", in.str());
    const auto x = arena.current();
    arena.output(y_, in);
    if (arena.training())
      arena.request(dx_, in);
    else
      dx_ = {};  // (not a stale view into a reused block)
    arena.release(x);
    return in;
  }
  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode) {
    KILN_CHECK(x.shape() == y_.shape(), "ReLU: forward() got ", x.shape().str(), " but was planned for ",
               y_.shape().str());
    Backend<Device>::relu_forward(x, y_);
    return y_;
  }
  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) {
    KILN_CHECK(!dx_.empty(), "ReLU: backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == y_.shape(), "ReLU: gradient ", dy.shape().str(), " does not match output ",
               y_.shape().str());
    Backend<Device>::relu_backward(y_, dy, dx_);
    return dx_;
  }
  template <class F>
  void visit(F&&, const std::string&) {}

  // For a layer fused with this ReLU (BatchNorm2d, through Sequential): it writes
  // max(its output, 0) here, where this ReLU's forward would have, and reads it
  // back as the mask in its backward.
  Tensor<float, Device>& fused_output() { return y_; }
  const Tensor<float, Device>& fused_output() const { return y_; }

 private:
  Tensor<float, Device> y_, dx_;
};

}  // namespace kiln
