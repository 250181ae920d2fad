#pragma once
// Dropout<D>(p = 0.5): torch.nn.Dropout(p) semantics. In Mode::train each element is zeroed with
// probability p and the others are scaled by 1 / (1 - p) ("inverted" dropout); in Mode::eval it is
// the identity. p == 1 drops everything (output zeros), p == 0 keeps everything.
//
// The mask is counter-based: element i of the layer's `step`-th training forward is kept when
// kiln::dropout_uniform(seed, step, i) >= p (a hash of the three, kiln/cpu/activation.hpp), so the
// CPU and CUDA draw exactly the same mask for the same (seed, step), nothing is stored for
// backward (it recomputes the mask), and a run is reproducible. The seed is drawn from
// kiln::default_rng() at construction (seed it with kiln::manual_seed, as PyTorch's
// torch.manual_seed), or set with set_seed(); `step` counts training forwards (set_step() to
// resume). Unlike PyTorch the mask does not depend on the order of other random draws.
//
// Planning: a train plan gives Dropout its own output and input-gradient buffers. An eval plan
// gives it nothing: forward(x, Mode::eval) returns x itself (zero cost; the next layer reads the
// previous one's buffer).
#include <cstdint>
#include <string>
#include <string_view>

#include "kiln/core/backend.hpp"
#include "kiln/ops/activation.hpp"  // DropoutArgs, dropout_uniform
#include "kiln/nn/layer.hpp"

namespace kiln {

template <class Device = Cpu>
class Dropout {
 public:
  using device = Device;
  static constexpr int in_channels = any_channels;
  static constexpr int out_channels = same_channels;
  static constexpr std::size_t parameter_count = 0;
  static constexpr std::string_view kind = "Dropout";

  explicit Dropout(float p = 0.5f) : Dropout(p, default_rng().next()) {}
  Dropout(float p, std::uint64_t seed) : p_(p), seed_(seed) {
    KILN_CHECK(p >= 0.0f && p <= 1.0f, "Dropout: probability has to be between 0 and 1, but got ", p);
  }

  float p() const { return p_; }
  std::uint64_t seed() const { return seed_; }
  std::uint64_t step() const { return step_; }
  void set_seed(std::uint64_t seed) { seed_ = seed; }
  // The number of training forwards so far (the next one draws mask number step + 1).
  void set_step(std::uint64_t step) { step_ = step; }

  void reset_parameters(Rng&) {}

  Shape plan(const Shape& in, Arena<Device>& arena, std::string_view path) {
    KILN_CHECK(in.rank() >= 1, detail::where(kind, path), ": expected a tensor, got ", in.str());
    shape_ = in;
    if (arena.training()) {
      const auto x = arena.current();
      arena.output(y_, in);
      arena.request(dx_, in);
      arena.release(x);
    } else {
      y_ = {};  // eval: pass-through, the input stays current() for the next layer
      dx_ = {};
    }
    return in;
  }

  // Mode::train: the planned output buffer (overwritten by the next forward). Mode::eval: x itself
  // when planned for eval, else a copy of x in the output buffer.
  const Tensor<float, Device>& forward(const Tensor<float, Device>& x, Mode mode) {
    detail::check_planned(kind, x.shape(), shape_);
    trained_ = mode == Mode::train;
    if (mode == Mode::eval) {
      if (y_.empty()) return x;
      copy(y_, x);
      return y_;
    }
    KILN_CHECK(!y_.empty(), "Dropout: forward(Mode::train) after a plan for Mode::eval (plan for Mode::train)");
    ++step_;
    Backend<Device>::dropout_forward(args(), x, y_);
    return y_;
  }

  const Tensor<float, Device>& backward(const Tensor<float, Device>& dy) {
    KILN_CHECK(!dx_.empty(), "Dropout: backward() after a plan for Mode::eval (plan for Mode::train to train)");
    KILN_CHECK(dy.shape() == shape_, "Dropout: gradient ", dy.shape().str(), " does not match output ", shape_.str());
    if (trained_)
      Backend<Device>::dropout_backward(args(), dy, dx_);
    else
      copy(dx_, dy);  // the last forward was the identity
    return dx_;
  }

  template <class F>
  void visit(F&&, const std::string&) {}

 private:
  DropoutArgs args() const { return DropoutArgs{static_cast<std::int64_t>(shape_.numel()), p_, seed_, step_}; }

  float p_;
  std::uint64_t seed_;
  std::uint64_t step_ = 0;
  bool trained_ = false;
  Shape shape_{};
  Tensor<float, Device> y_, dx_;
};

}  // namespace kiln
