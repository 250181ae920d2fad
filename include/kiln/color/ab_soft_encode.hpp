#pragma once
// AbSoftEncode<K>: ab [N,2,H,W] -> soft class targets [N,K,H,W] for colour classification (Zhang
// et al. 2016, kiln/color/cpu/colour_classes.hpp): each pixel's ab spread over its `neighbours` nearest
// bin centres with a Gaussian of width sigma (5 Lab units in the paper), and its class rebalancing
// weight (that of the nearest bin) in pixel_weights() [N,1,H,W]. The bins (kiln::color::AbBins)
// are set at run time; K >= their count (channels past it stay 0). A layer with no parameters:
// backward maps dL/dtargets to dL/dab (for a fixed set of nearest bins; a finite-difference check
// across a change of neighbours sees a kink).
#include <string>
#include <string_view>
#include <vector>

#include "kiln/color/colour_ops.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln::color {

template <int K, class Device = Cpu>
class AbSoftEncode {
  static_assert(K > 0, "kiln::AbSoftEncode: the class count K must be positive");

 public:
  using device = Device;
  using T = Tensor<float, Device>;
  static constexpr int in_channels = 2;
  static constexpr int out_channels = K;
  static constexpr std::size_t parameter_count = 0;
  static constexpr std::string_view kind = "AbSoftEncode";

  AbSoftEncode() = default;
  // centres: interleaved (a, b) per bin in ab's units; weights: one per bin, or empty (all 1).
  AbSoftEncode(const std::vector<float>& centres, const std::vector<float>& weights, float sigma, int neighbours = 5) {
    set_bins(centres, weights, sigma, neighbours);
  }
  void set_bins(const std::vector<float>& centres, const std::vector<float>& weights, float sigma, int neighbours = 5) {
    const std::size_t bins = centres.size() / 2;
    KILN_CHECK(centres.size() % 2 == 0 && bins > 0 && bins <= std::size_t(K), "AbSoftEncode<", K, ">: needs 1 to ", K,
               " bin centres as (a, b) pairs, got ", centres.size(), " numbers");
    KILN_CHECK(weights.empty() || weights.size() == bins, "AbSoftEncode: ", weights.size(), " weights for ", bins,
               " bins");
    KILN_CHECK(sigma > 0.0f, "AbSoftEncode: sigma must be positive, got ", sigma);
    KILN_CHECK(neighbours >= 1 && neighbours <= AbEncodeArgs::kMaxNeighbours, "AbSoftEncode: neighbours must be 1 to ",
               AbEncodeArgs::kMaxNeighbours, ", got ", neighbours);
    centres_ = T::from_host(Shape{std::int64_t(bins), 2}, centres);
    weights_ = weights.empty() ? T() : T::from_host(Shape{std::int64_t(bins)}, weights);
    sigma_ = sigma, neighbours_ = neighbours;
  }
  std::int64_t classes() const { return centres_.empty() ? 0 : centres_.shape()[0]; }

  void reset_parameters(Rng&) {}

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4 && in.c() == 2, kiln::detail::where(kind, path), ": expected ab as [N,2,H,W], got ",
               in.str());
    const auto x = arena.current();
    const Shape out = Shape::nchw(in.n(), K, in.h(), in.w());
    arena.output(y_, out);
    arena.request(pixel_weights_, Shape::nchw(in.n(), 1, in.h(), in.w()));
    if (arena.training())
      arena.request(dx_, in);
    else
      dx_ = {};
    arena.release(x);
    return out;
  }
  const T& forward(const T& ab, Mode) {
    KILN_CHECK(classes() > 0, "AbSoftEncode: forward() before set_bins()");
    KILN_CHECK(ab.shape().rank() == 4 && Shape::nchw(ab.shape().n(), K, ab.shape().h(), ab.shape().w()) == y_.shape(),
               "AbSoftEncode: forward() got ", ab.shape().str(), " but was planned for targets ", y_.shape().str());
    ColourOps<Device>::ab_soft_encode_forward(args(ab.shape()), ab, centres_, weights_, y_, pixel_weights_);
    return y_;
  }
  // dL/dab for dL/dtargets (the targets of the last forward()).
  const T& backward(const T& dy) {
    KILN_CHECK(!dx_.empty(), "AbSoftEncode: backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == y_.shape(), "AbSoftEncode: gradient ", dy.shape().str(), " does not match ",
               y_.shape().str());
    ColourOps<Device>::ab_soft_encode_backward(args(dx_.shape()), centres_, y_, dy, dx_);
    return dx_;
  }
  // The class rebalancing weight of each pixel of the last forward() ([N,1,H,W]).
  const T& pixel_weights() const { return pixel_weights_; }

  template <class F>
  void visit(F&&, const std::string&) {}

 private:
  AbEncodeArgs args(const Shape& ab) const { return {ab.n(), K, classes(), ab.h() * ab.w(), neighbours_, sigma_}; }
  T centres_, weights_, y_, dx_, pixel_weights_;
  float sigma_ = 1.0f;
  int neighbours_ = 5;
};

}  // namespace kiln::color

// The programs (examples/) still spell this kiln::; drop once they say kiln::color::.
namespace kiln {
using color::AbSoftEncode;
}  // namespace kiln
