#pragma once
// AnnealedMean<K>: class logits [N,K,H,W] -> ab [N,2,H,W], the annealed mean of Zhang et al. 2016
// (kiln/color/cpu/colour_classes.hpp): ab = sum_k softmax(z / T)_k c_k over the bin centres c_k. T = 1
// is the mean of the predicted distribution (muted colours), T -> 0 its mode (vivid but patchy);
// the paper uses T = 0.38. The bins are set at run time (K >= their count; channels past it are
// ignored). No parameters; backward gives dL/dlogits.
#include <string>
#include <string_view>
#include <vector>

#include "kiln/color/colour_ops.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln::color {

template <int K, class Device = Cpu>
class AnnealedMean {
  static_assert(K > 0, "kiln::AnnealedMean: the class count K must be positive");

 public:
  using device = Device;
  using T = Tensor<float, Device>;
  static constexpr int in_channels = K;
  static constexpr int out_channels = 2;
  static constexpr std::size_t parameter_count = 0;
  static constexpr std::string_view kind = "AnnealedMean";
  static constexpr float default_temperature = 0.38f;

  AnnealedMean() = default;
  explicit AnnealedMean(const std::vector<float>& centres, float temperature = default_temperature) {
    set_bins(centres, temperature);
  }
  // centres: interleaved (a, b) per bin, in the units the output should have.
  void set_bins(const std::vector<float>& centres, float temperature = default_temperature) {
    const std::size_t bins = centres.size() / 2;
    KILN_CHECK(centres.size() % 2 == 0 && bins > 0 && bins <= std::size_t(K), "AnnealedMean<", K, ">: needs 1 to ", K,
               " bin centres as (a, b) pairs, got ", centres.size(), " numbers");
    centres_ = T::from_host(Shape{std::int64_t(bins), 2}, centres);
    set_temperature(temperature);
  }
  void set_temperature(float temperature) {
    KILN_CHECK(temperature > 0.0f && temperature < 1e6f, "AnnealedMean: the temperature must be positive, got ",
               temperature);
    temperature_ = temperature;
  }
  float temperature() const { return temperature_; }
  std::int64_t classes() const { return centres_.empty() ? 0 : centres_.shape()[0]; }

  void reset_parameters(Rng&) {}

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4 && in.c() == K, kiln::detail::where(kind, path), ": expected [N,", K,
               ",H,W] logits, got ", in.str());
    const auto x = arena.current();
    const Shape out = Shape::nchw(in.n(), 2, in.h(), in.w());
    arena.output(y_, out);
    if (arena.training())
      arena.request(dx_, in);
    else
      dx_ = {};
    arena.release(x);
    return out;
  }
  const T& forward(const T& logits, Mode) {
    KILN_CHECK(classes() > 0, "AnnealedMean: forward() before set_bins()");
    KILN_CHECK(logits.shape().rank() == 4 &&
                   Shape::nchw(logits.shape().n(), 2, logits.shape().h(), logits.shape().w()) == y_.shape() &&
                   logits.shape().c() == K,
               "AnnealedMean: forward() got ", logits.shape().str(), " but was planned for ab ", y_.shape().str());
    x_ = &logits;
    ColourOps<Device>::annealed_mean_forward(args(logits.shape()), logits, centres_, y_);
    return y_;
  }
  const T& backward(const T& dy) {
    KILN_CHECK(!dx_.empty() && x_ != nullptr, "AnnealedMean: backward() needs a forward() on a plan for Mode::train");
    KILN_CHECK(dy.shape() == y_.shape(), "AnnealedMean: gradient ", dy.shape().str(), " does not match ",
               y_.shape().str());
    ColourOps<Device>::annealed_mean_backward(args(x_->shape()), *x_, centres_, y_, dy, dx_);
    return dx_;
  }

  template <class F>
  void visit(F&&, const std::string&) {}

 private:
  AnnealedMeanArgs args(const Shape& z) const { return {z.n(), K, classes(), z.h() * z.w(), temperature_}; }
  T centres_, y_, dx_;
  const T* x_ = nullptr;
  float temperature_ = default_temperature;
};

}  // namespace kiln::color
