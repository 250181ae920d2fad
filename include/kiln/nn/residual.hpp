#pragma once
// Residual<Branch>: y = x + Branch(x) — a residual (ResNet, DnCNN) connection.
// The branch must keep the input's shape (same channels, same image size: a
// compile-time check on channels, a plan-time check on the rest). The gradient
// reaching x is split to both paths and summed: dx = dy + Branch'(x)^T dy.
// The add is Backend<D>::add (cpu::add; kernels/elementwise.cuh add_kernel).
//
// Eval plan: x is retain()ed while the branch runs (the add reads it after the
// whole branch), then x and the branch's output are released once y exists.
#include <string>
#include <string_view>

#include "kiln/core/backend.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln {

template <class Branch>
class Residual {
 public:
  using device = typename Branch::device;
  static_assert(Branch::in_channels > 0,
                "kiln::Residual: the branch must have a fixed input channel count (start it with a Conv2d or "
                "BatchNorm2d)");
  static_assert(Branch::out_channels == same_channels || Branch::out_channels == Branch::in_channels,
                "kiln::Residual: the branch must produce as many channels as it takes (y = x + Branch(x))");
  using body_type = Branch;  // (ReceptiveField: the residual's reach is its branch's)
  static constexpr int in_channels = Branch::in_channels;
  static constexpr int out_channels = Branch::in_channels;
  static constexpr std::size_t parameter_count = Branch::parameter_count;
  static constexpr std::string_view kind = "Residual";

  void reset_parameters(Rng& rng) { branch_.reset_parameters(rng); }

  Shape plan(const Shape& in, Arena<device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4 && in.c() == in_channels, detail::where(kind, path), ": expected [N, ", in_channels,
               ", H, W], got ", in.str());
    const auto x = arena.current();
    arena.retain(x);  // the add reads x after the whole branch has run
    const Shape b = branch_.plan(in, arena, join_name(path, "branch"));
    KILN_CHECK(b == in, detail::where(kind, path), ": the branch turned ", in.str(), " into ", b.str(),
               "; a residual connection needs the branch to keep the input's shape");
    const auto bv = arena.current();
    arena.output(y_, in);
    if (arena.training())
      arena.request(dx_, in);
    else
      dx_ = {};         // (not a stale view into a reused block)
    arena.release(bv);  // the add was the branch output's only reader
    arena.release(x);
    return in;
  }

  const Tensor<float, device>& forward(const Tensor<float, device>& x, Mode mode) {
    detail::check_planned(kind, x.shape(), y_.shape());
    Backend<device>::add(x, branch_.forward(x, mode), y_);
    return y_;
  }

  const Tensor<float, device>& backward(const Tensor<float, device>& dy) {
    KILN_CHECK(!dx_.empty(), "Residual: backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == y_.shape(), "Residual: gradient ", dy.shape().str(), " does not match output ",
               y_.shape().str());
    const auto& dx_branch = branch_.backward(dy);
    Backend<device>::add(dx_branch, dy, dx_);  // both paths' gradients meet at x
    return dx_;
  }

  template <class F>
  void visit(F&& f, const std::string& prefix) {
    StateVisitor<device> visitor(f);  // the branch's visit() once, whatever F (core/state.hpp)
    branch_.visit(visitor, join_name(prefix, "branch"));
  }

  Branch& branch() { return branch_; }

 private:
  Branch branch_;
  Tensor<float, device> y_, dx_;
};

}  // namespace kiln
