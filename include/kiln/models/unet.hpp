#pragma once
// UNet<In, Out, Width, Depth>: a U-Net as a type, for any image-to-image task (the colorizer's
// is UNet<1, 2, W, D>).
//
//   ConvBlock(a, c) = Conv3x3(a->c) BN ReLU Conv3x3(c->c) BN ReLU
//   level i (c_i = Width * 2^i):  x -> ConvBlock -> s (the skip)
//                                   -> MaxPool2 -> level i+1 (or the bottleneck)
//                                   -> Upsample x2 -> Conv1x1 (halves channels; run as
//                                      Conv1x1 -> Upsample x2, the same function: see Branch)
//                                   -> concat [upsampled, s] -> ConvBlock(2c_i -> c_i)
//   bottleneck = ConvBlock(c_{Depth-1} -> Width * 2^Depth), head = Conv1x1(Width -> Out)
//
// The computation is composed from Sequential and SkipConcat; only the names
// are the U-Net's own, so that the state_dict matches the PyTorch module
// (down.{i}.*, bottleneck.*, up.{j}.* with j = 0 deepest, head.*).
#include <cstddef>
#include <string>
#include <string_view>

#include "kiln/nn/batchnorm2d.hpp"
#include "kiln/nn/conv2d.hpp"
#include "kiln/nn/maxpool2d.hpp"
#include "kiln/nn/named.hpp"
#include "kiln/nn/relu.hpp"
#include "kiln/nn/sequential.hpp"
#include "kiln/nn/skip_concat.hpp"
#include "kiln/nn/upsample.hpp"

namespace kiln {

template <int In, int C, class Device>
using ConvBlock =
    Sequential<Named<"conv1", Conv2d<In, C, 3, Device>>, Named<"bn1", BatchNorm2d<C, Device>>, ReLU<Device>,
               Named<"conv2", Conv2d<C, C, 3, Device>>, Named<"bn2", BatchNorm2d<C, Device>>, ReLU<Device>>;

namespace detail {

template <int In, int Width, int Depth, int Level, class Device>
class UNetLevel;

// What sits below level `Level`: the next level, or the bottleneck.
template <int Width, int Depth, int Level, class Device>
struct UNetInner {
  using type = UNetLevel<(Width << (Level - 1)), Width, Depth, Level, Device>;
};
template <int Width, int Depth, class Device>
struct UNetInner<Width, Depth, Depth, Device> {
  using type = ConvBlock<(Width << (Depth - 1)), (Width << Depth), Device>;
};

template <int In, int Width, int Depth, int Level, class Device>
class UNetLevel {
  static constexpr int C = Width << Level;
  using Inner = typename UNetInner<Width, Depth, Level + 1, Device>::type;
  static_assert(Inner::out_channels == 2 * C, "kiln::UNet: the level below must produce twice this level's channels");

  // The reference model reads Upsample(x2, nearest) -> Conv1x1. A 1x1 convolution acts on each pixel
  // alone and nearest upsampling copies pixels, so the two commute exactly:
  // conv1x1(upsample(x)) = upsample(conv1x1(x)). Running the convolution first costs a quarter of the
  // pixels in all three of its passes and upsamples C instead of 2C channels. Same parameters, same
  // function (the forward values are bitwise the same; gradients differ only by summation order).
  using Branch =
      Sequential<MaxPool2d<2, Device>, Inner, Conv2d<2 * C, C, 1, Device>, Upsample<2, UpsampleMode::nearest, Device>>;
  using Body = Sequential<ConvBlock<In, C, Device>, SkipConcat<Branch>, ConvBlock<2 * C, C, Device>>;

 public:
  using device = Device;
  static constexpr int in_channels = In;
  static constexpr int out_channels = C;
  static constexpr std::size_t parameter_count = Body::parameter_count;
  using body_type = Body;  // the composition (nn/receptive_field.hpp reads it)

  void reset_parameters(Rng& rng) { body_.reset_parameters(rng); }
  void set_input_grad(bool wanted) { body_.set_input_grad(wanted); }

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4 && in.h() % 2 == 0 && in.w() % 2 == 0, detail::where("UNet", path), ": level ", Level,
               " needs an even image size, got ", in.str(), " (the UNet's input height and width must be multiples of ",
               1 << Depth, ")");
    return body_.plan(in, arena, join_name(path, "down." + std::to_string(Level)));
  }
  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode mode) { return body_.forward(x, mode); }
  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) { return body_.backward(dy); }

  template <class F>
  void visit(F&& f, const std::string& prefix) {
    StateVisitor<Device> visitor(f);  // the children's visit() once, whatever F (core/state.hpp)
    const std::string up = "up." + std::to_string(Depth - 1 - Level);
    body_.template get<0>().visit(visitor, join_name(prefix, "down." + std::to_string(Level)));
    auto& branch = body_.template get<1>().branch();
    if constexpr (Level + 1 == Depth)
      branch.template get<1>().visit(visitor, join_name(prefix, "bottleneck"));
    else
      branch.template get<1>().visit(visitor, prefix);
    branch.template get<2>().visit(visitor, join_name(prefix, up + ".reduce"));
    body_.template get<2>().visit(visitor, join_name(prefix, up));
  }

 private:
  Body body_;
};

}  // namespace detail

template <int In = 1, int Out = 2, int Width = 32, int Depth = 4, class Device = Cpu>
class UNet {
  static_assert(In > 0 && Out > 0, "kiln::UNet: input and output channel counts must be positive");
  static_assert(Width > 0, "kiln::UNet: Width must be positive");
  static_assert(Depth >= 1 && Depth <= 8, "kiln::UNet: Depth must be between 1 and 8");

  using Levels = detail::UNetLevel<In, Width, Depth, 0, Device>;
  using Body = Sequential<Levels, Named<"head", Conv2d<Width, Out, 1, Device>>>;

 public:
  using device = Device;
  static constexpr int in_channels = In;
  static constexpr int out_channels = Out;
  static constexpr int width = Width;
  static constexpr int depth = Depth;
  // Input height and width must be multiples of this.
  static constexpr int size_multiple = 1 << Depth;
  static constexpr std::size_t parameter_count = Body::parameter_count;
  static constexpr std::string_view kind = "UNet";
  using body_type = Body;  // the composition (nn/receptive_field.hpp reads it)

  void reset_parameters(Rng& rng) { body_.reset_parameters(rng); }
  void set_input_grad(bool wanted) { body_.set_input_grad(wanted); }

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4 && in.c() == In, detail::where(kind, path), ": expected an input of shape [N, ", In,
               ", H, W], got ", in.str());
    KILN_CHECK(in.h() % size_multiple == 0 && in.w() % size_multiple == 0, detail::where(kind, path),
               ": the image size must be a multiple of ", size_multiple, " (2^Depth) in both directions, got ",
               in.str(), " (pad or crop the input)");
    return body_.plan(in, arena, path);
  }
  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode mode) { return body_.forward(x, mode); }
  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) { return body_.backward(dy); }

  template <class F>
  void visit(F&& f, const std::string& prefix) {
    StateVisitor<Device> visitor(f);  // the children's visit() once, whatever F (core/state.hpp)
    body_.template get<0>().visit(visitor, prefix);
    body_.template get<1>().visit(visitor, join_name(prefix, "head"));
  }

 private:
  Body body_;
};

// The two sizes the programs ship: both compile-time instantiations.
template <class Device = Cpu>
using UNetSmall = UNet<1, 2, 16, 4, Device>;
template <class Device = Cpu>
using UNetBase = UNet<1, 2, 32, 4, Device>;

static_assert(UNet<1, 2, 32, 4>::parameter_count == 7'243'202,
              "kiln::UNet<1, 2, 32, 4> must have the reference model's 7,243,202 parameters");

}  // namespace kiln
