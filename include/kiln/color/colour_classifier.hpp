#pragma once
// ColourClassifier<Net>: a network whose K output channels are colour-class logits (e.g.
// UNet<1, K, W, D>, trained with SoftmaxCrossEntropy on AbSoftEncode targets) followed by
// AnnealedMean<K>: L in, ab out, so whole-image inference (kiln/nn/infer.hpp) runs on it tile by
// tile and never holds K full-size planes. Its state is exactly Net's, under the same names, so a
// checkpoint of the bare Net loads into it. Set the bins (network units) with decoder().set_bins().
#include <string>
#include <string_view>

#include "kiln/color/annealed_mean.hpp"
#include "kiln/nn/receptive_field.hpp"
#include "kiln/nn/sequential.hpp"

namespace kiln::color {

template <class Net>
class ColourClassifier {
 public:
  using device = typename Net::device;
  using T = Tensor<float, device>;
  static constexpr int classes = Net::out_channels;
  using Decoder = AnnealedMean<classes, device>;
  static constexpr int in_channels = Net::in_channels;
  static constexpr int out_channels = 2;
  static constexpr std::size_t parameter_count = Net::parameter_count;
  using body_type = Sequential<Net, Decoder>;  // (the receptive field reads it)
  static constexpr int size_multiple = Net::size_multiple;

  Net& logits() { return net_; }
  Decoder& decoder() { return decode_; }
  void set_input_grad(bool wanted) {
    if constexpr (requires { net_.set_input_grad(wanted); }) net_.set_input_grad(wanted);
  }
  void reset_parameters(Rng& rng) { net_.reset_parameters(rng); }
  Shape plan(const Shape& in, Arena<device>& arena, std::string_view path) {
    return decode_.plan(net_.plan(in, arena, path), arena, join_name(path, "decode"));
  }
  const T& forward(const T& x, Mode mode) { return decode_.forward(net_.forward(x, mode), mode); }
  const T& backward(const T& dy) { return net_.backward(decode_.backward(dy)); }
  template <class F>
  void visit(F&& f, const std::string& prefix) {
    StateVisitor<device> visitor(f);  // the network's visit() once, whatever F (core/state.hpp)
    net_.visit(visitor, prefix);
  }

 private:
  Net net_;
  Decoder decode_;
};

}  // namespace kiln::color

namespace kiln::detail {
template <int K, class D>
struct ReachOf<color::AnnealedMean<K, D>> {  // per pixel: the reach is unchanged
  static constexpr Reach after(Reach r) { return r; }
};
}  // namespace kiln::detail

// The programs (examples/) still spell this kiln::; drop once they say kiln::color::.
namespace kiln {
using color::ColourClassifier;
}  // namespace kiln
