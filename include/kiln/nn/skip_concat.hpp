#pragma once
// SkipConcat<Branch>: y = concat(Branch(x), x) along channels — the U-Net's
// skip connection. The gradient reaching x is the branch's input gradient plus
// the skip part of dy (the gradient is added where the skip branched).
#include <string>
#include <string_view>

#include "kiln/core/backend.hpp"
#include "kiln/nn/concat.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln {

template <class Branch>
class SkipConcat {
 public:
  using device = typename Branch::device;
  static_assert(Branch::in_channels > 0 && Branch::out_channels > 0,
                "kiln::SkipConcat: the branch must have fixed input and output channel counts");
  static constexpr int in_channels = Branch::in_channels;
  static constexpr int out_channels = Branch::out_channels + Branch::in_channels;
  static constexpr std::size_t parameter_count = Branch::parameter_count;
  static constexpr std::string_view kind = "SkipConcat";

  void reset_parameters(Rng& rng) { branch_.reset_parameters(rng); }

  Shape plan(const Shape& in, Arena<device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() == 4 && in.c() == in_channels, detail::where(kind, path), ": expected [N, ", in_channels,
               ", H, W], got ", in.str());
    const auto x = arena.current();
    arena.retain(x);  // the concat reads x after the whole branch has run
    const Shape b = branch_.plan(in, arena, join_name(path, "branch"));
    KILN_CHECK(b.n() == in.n() && b.h() == in.h() && b.w() == in.w(), detail::where(kind, path), ": the branch turned ",
               in.str(), " into ", b.str(), "; a skip connection needs the same batch and image size on both sides");
    if (arena.training())
      arena.request(dx_, in);
    else
      dx_ = {};                                          // (not a stale view into a reused block)
    const Shape out = concat_.plan(b, in, arena, path);  // consumes the branch's output
    arena.release(x);
    return out;
  }

  const Tensor<float, device>& forward(const Tensor<float, device>& x, Mode mode) {
    return concat_.forward(branch_.forward(x, mode), x);
  }

  const Tensor<float, device>& backward(const Tensor<float, device>& dy) {
    auto [d_branch, d_skip] = concat_.backward(dy);
    const auto& dx_branch = branch_.backward(d_branch);
    Backend<device>::add(dx_branch, d_skip, dx_);
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
  Concat<Branch::out_channels, Branch::in_channels, device> concat_;
  Tensor<float, device> dx_;
};

}  // namespace kiln
