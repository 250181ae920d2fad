#pragma once
// Concat<Ca, Cb>: y = [a; b] along channels (torch.cat(dim=1)); backward splits
// the gradient back into its two parts. Both inputs must agree in N, H, W.
#include <string>
#include <string_view>
#include <utility>

#include "kiln/core/backend.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln {

template <int Ca, int Cb, class Device = Cpu>
class Concat {
  static_assert(Ca > 0 && Cb > 0, "kiln::Concat: channel counts must be positive");

 public:
  using device = Device;
  static constexpr int out_channels = Ca + Cb;
  static constexpr std::size_t parameter_count = 0;
  static constexpr std::string_view kind = "Concat";

  Shape plan(const Shape& a, const Shape& b, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(a.rank() == 4 && b.rank() == 4 && a.c() == Ca && b.c() == Cb && a.n() == b.n() && a.h() == b.h() &&
                   a.w() == b.w(),
               detail::where("Concat<" + std::to_string(Ca) + ", " + std::to_string(Cb) + ">", path),
               ": cannot concatenate ", a.str(), " and ", b.str(), " along channels (expected [N, ", Ca,
               ", H, W] and [N, ", Cb, ", H, W])");
    const Shape out = Shape::nchw(a.n(), Ca + Cb, a.h(), a.w());
    a_ = a;
    b_ = b;
    const auto av = arena.current();
    arena.output(y_, out);
    if (arena.training()) {
      arena.request(da_, a);
      arena.request(db_, b);
    } else {
      da_ = {};  // (not stale views into a reused block)
      db_ = {};
    }
    arena.release(av);
    return out;
  }
  const Tensor<float, Device>& forward(const Tensor<float, Device>& a, const Tensor<float, Device>& b) {
    KILN_CHECK(a.shape() == a_ && b.shape() == b_, "Concat: forward() got ", a.shape().str(), " and ", b.shape().str(),
               " but was planned for ", a_.str(), " and ", b_.str());
    Backend<Device>::concat_channels(a, b, y_);
    return y_;
  }
  // Returns {dL/da, dL/db}.
  std::pair<const Tensor<float, Device>&, const Tensor<float, Device>&> backward(const Tensor<float, Device>& dy) {
    KILN_CHECK(!da_.empty(), "Concat: backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == y_.shape(), "Concat: gradient ", dy.shape().str(), " does not match output ",
               y_.shape().str());
    Backend<Device>::split_channels(dy, da_, db_);
    return {da_, db_};
  }

 private:
  Shape a_, b_;
  Tensor<float, Device> y_, da_, db_;
};

}  // namespace kiln
