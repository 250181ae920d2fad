#pragma once
// MaxPool2d<Size>: like torch.nn.MaxPool2d(Size) (kernel = stride = Size, no
// padding). H and W must be divisible by Size (the U-Net halves exactly).
// Ties go to the first maximum in row-major window order (PyTorch's CPU rule);
// the arg-max is saved and backward routes each gradient to it alone.
#include <cstdint>
#include <string>
#include <string_view>

#include "kiln/core/backend.hpp"
#include "kiln/ops/pooling.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln {

template <int Size = 2, class Device = Cpu>
class MaxPool2d {
  static_assert(Size >= 1, "kiln::MaxPool2d: the window size must be positive");

 public:
  using device = Device;
  static constexpr int in_channels = any_channels;
  static constexpr int out_channels = same_channels;
  static constexpr std::size_t parameter_count = 0;
  static constexpr int size = Size;
  static constexpr std::string_view kind = "MaxPool2d";

  void reset_parameters(Rng&) {}

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    const std::string what = detail::where("MaxPool2d<" + std::to_string(Size) + ">", path);
    KILN_CHECK(in.rank() == 4, what, ": expected an NCHW input, got ", in.str());
    KILN_CHECK(in.h() % Size == 0 && in.w() % Size == 0 && in.h() > 0 && in.w() > 0, what,
               " needs H and W divisible by ", Size, ", got ", in.str());
    args_ = {in.n(), in.c(), in.h(), in.w(), Size};
    const Shape out = Shape::nchw(in.n(), in.c(), in.h() / Size, in.w() / Size);
    in_ = in;
    const auto x = arena.current();
    arena.output(y_, out);
    if (arena.training()) {
      arena.request(argmax_, out);
      arena.request(dx_, in);
    } else {
      dx_ = {};                     // (not a stale view into a reused block)
      arena.scratch(argmax_, out);  // written by forward, read only by backward
    }
    arena.release(x);
    return out;
  }

  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode) {
    detail::check_planned(kind, x.shape(), in_);
    Backend<Device>::maxpool2d_forward(args_, x, y_, argmax_);
    forwarded_ = true;
    return y_;
  }

  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) {
    KILN_CHECK(forwarded_, "MaxPool2d: backward() called before forward()");
    KILN_CHECK(!dx_.empty(), "MaxPool2d: backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == y_.shape(), "MaxPool2d: gradient ", dy.shape().str(), " does not match output ",
               y_.shape().str());
    Backend<Device>::maxpool2d_backward(args_, argmax_, dy, dx_);
    return dx_;
  }

  template <class F>
  void visit(F&&, const std::string&) {}

  // Index of each window's maximum inside its input plane (ih * W + iw).
  const Tensor<std::int32_t, Device>& argmax() const { return argmax_; }

 private:
  PoolArgs args_{};
  Shape in_;
  Tensor<float, Device> y_, dx_;
  Tensor<std::int32_t, Device> argmax_;
  bool forwarded_ = false;
};

}  // namespace kiln
