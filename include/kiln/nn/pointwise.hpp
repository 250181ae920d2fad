#pragma once
// What ReLU and the other element-wise activations share: no parameters, any channel count, an
// output and (in training) an input gradient of the input's shape. Derived names itself in `kind`.
#include <cstddef>
#include <string>
#include <string_view>

#include "kiln/core/arena.hpp"
#include "kiln/core/error.hpp"
#include "kiln/core/random.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln::detail {

template <class Derived, class Device>
class Pointwise {
 public:
  using device = Device;
  static constexpr int in_channels = any_channels;
  static constexpr int out_channels = same_channels;
  static constexpr std::size_t parameter_count = 0;

  void reset_parameters(Rng&) {}
  template <class F>
  void visit(F&&, const std::string&) {}

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4, where(Derived::kind, path), ": expected an NCHW input, got ", in.str());
    const auto x = arena.current();
    arena.output(y_, in);
    if (arena.training())
      arena.request(dx_, in);
    else
      dx_ = {};  // (not a stale view into a reused block)
    arena.release(x);
    return in;
  }

 protected:
  void check_forward(const Tensor<float, Device>& x) const { check_planned(Derived::kind, x.shape(), y_.shape()); }
  void check_backward(const Tensor<float, Device>& dy) const {
    KILN_CHECK(!dx_.empty(), Derived::kind, ": backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == y_.shape(), Derived::kind, ": gradient ", dy.shape().str(), " does not match output ",
               y_.shape().str());
  }

  Tensor<float, Device> y_, dx_;
};

}  // namespace kiln::detail
