#pragma once
// Upsample<Scale, Mode>: like torch.nn.Upsample(scale_factor=Scale, mode=...)
// with an integer scale. nearest: y[i][j] = x[i / s][j / s]. bilinear:
// align_corners = false, PyTorch's formula src = (dst + 0.5) / s - 0.5
// clamped at 0, the far edge clamped (see bilinear_tap in cpu/upsample.hpp).
// Backward is the adjoint of the forward map.
#include <string>
#include <string_view>

#include "kiln/core/backend.hpp"
#include "kiln/ops/upsample.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln {

enum class UpsampleMode { nearest, bilinear };

template <int Scale = 2, UpsampleMode M = UpsampleMode::nearest, class Device = Cpu>
class Upsample {
  static_assert(Scale >= 1, "kiln::Upsample: the scale factor must be a positive integer");

 public:
  using device = Device;
  static constexpr int in_channels = any_channels;
  static constexpr int out_channels = same_channels;
  static constexpr std::size_t parameter_count = 0;
  static constexpr int scale = Scale;
  static constexpr UpsampleMode mode = M;
  static constexpr std::string_view kind = "Upsample";

  void reset_parameters(Rng&) {}

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4,
               detail::where(std::string("Upsample<") + std::to_string(Scale) +
                                 (M == UpsampleMode::nearest ? ", nearest>" : ", bilinear>"),
                             path),
               ": expected an NCHW input, got ", in.str());
    args_ = {in.n(), in.c(), in.h(), in.w(), Scale};
    const Shape out = Shape::nchw(in.n(), in.c(), in.h() * Scale, in.w() * Scale);
    in_ = in;
    const auto x = arena.current();
    arena.output(y_, out);
    if (arena.training())
      arena.request(dx_, in);
    else
      dx_ = {};  // (not a stale view into a reused block)
    arena.release(x);
    return out;
  }

  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode) {
    detail::check_planned(kind, x.shape(), in_);
    if constexpr (M == UpsampleMode::nearest)
      Backend<Device>::upsample_nearest_forward(args_, x, y_);
    else
      Backend<Device>::upsample_bilinear_forward(args_, x, y_);
    return y_;
  }

  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) {
    KILN_CHECK(!dx_.empty(), "Upsample: backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == y_.shape(), "Upsample: gradient ", dy.shape().str(), " does not match output ",
               y_.shape().str());
    if constexpr (M == UpsampleMode::nearest)
      Backend<Device>::upsample_nearest_backward(args_, dy, dx_);
    else
      Backend<Device>::upsample_bilinear_backward(args_, dy, dx_);
    return dx_;
  }

  template <class F>
  void visit(F&&, const std::string&) {}

 private:
  UpsampleArgs args_{};
  Shape in_;
  Tensor<float, Device> y_, dx_;
};

}  // namespace kiln
