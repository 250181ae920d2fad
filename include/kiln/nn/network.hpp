#pragma once
// Network<Net>: a composed network plus the arena its step memory comes from.
// The arena is planned for an input shape and a mode (see Arena):
//   Mode::train  every buffer of forward and backward, alive throughout;
//   Mode::eval   forward only, buffers reused once their last reader has run
//                (no gradients, no saved state): inference in a fraction of the memory.
// forward() (re)plans when the shape or the mode differs from the plan; later
// calls with that shape and mode allocate nothing (nor does switching between
// plans that fit the block already allocated).
#include <string>
#include <vector>

#include "kiln/core/backend_ops.hpp"
#include "kiln/nn/layer.hpp"
#include "kiln/nn/replicas.hpp"

namespace kiln {

template <class Net>
class Network {
 public:
  static_assert(Layer<Net>, "kiln::Network<Net>: Net must meet the layer contract (kiln::Layer, nn/layer.hpp)");
  using device = typename Net::device;
  using model = Net;  // the composed network inside (checkpoints name it)
  static constexpr int in_channels = Net::in_channels;
  static constexpr int out_channels = Net::out_channels;
  static constexpr std::size_t parameter_count = Net::parameter_count;

  Network() { net_.set_input_grad(false); }
  // The arena's registrations (Arena::ConvPacking) and the gradient list point into the layers: a
  // moved network plans again before its next forward.
  Network(Network&& other) noexcept
      : net_(std::move(other.net_)), arena_(std::move(other.arena_)), input_shape_(other.input_shape_),
        output_shape_(other.output_shape_), mode_(other.mode_) {
    other.planned_ = false;
  }
  Network& operator=(Network&& other) noexcept {
    net_ = std::move(other.net_);
    arena_ = std::move(other.arena_);
    input_shape_ = other.input_shape_;
    output_shape_ = other.output_shape_;
    mode_ = other.mode_;
    planned_ = forwarded_ = false;
    grads_.clear();
    other.planned_ = false;
    return *this;
  }
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Plans for an input shape and mode (forward() does this when either changes).
  Shape plan(const Shape& input, Mode mode = Mode::train) {
    planned_ = false;  // (a plan that throws leaves none)
    forwarded_ = false;
    arena_.begin(mode);
    output_shape_ = net_.plan(input, arena_, "");
    arena_.finalize();
    input_shape_ = input;
    mode_ = mode;
    planned_ = true;
    return output_shape_;
  }

  // The returned tensor is a view into the arena: the next forward() or plan()
  // overwrites it (copy what you keep: kiln::to<Cpu>(y) or to_vector()).
  const Tensor<float, device>& forward(const Tensor<float, device>& x, Mode mode) {
    if (!planned_ || !(x.shape() == input_shape_) || mode != mode_) plan(x.shape(), mode);
    // A training forward packs every convolution's weights in one launch first (where the device
    // batches them), and its convolutions know it for as long as this forward runs.
    std::uint64_t packed_plan = 0;
    if constexpr (HasBatchedConvPacking<device>) {
      if (mode == Mode::train && !arena_.conv_packings().empty()) {
        Backend<device>::conv2d_pack_forwards(arena_.conv_packings());
        packed_plan = arena_.plan_id();
      }
    }
    const PackedForward packed(packed_plan);
    const auto& y = net_.forward(x, mode);
    forwarded_ = true;
    return y;
  }

  // Inference: forward(x, Mode::eval) on the eval plan (running statistics in
  // BatchNorm, no memory for backward). Same lifetime rule for the result.
  const Tensor<float, device>& infer(const Tensor<float, device>& x) { return forward(x, Mode::eval); }

  // dy = dL/d(output). Parameter gradients accumulate; call zero_grad() per step.
  void backward(const Tensor<float, device>& dy) {
    KILN_CHECK(forwarded_, "Network::backward: no forward() since the last plan: call forward(x, Mode::train) first");
    KILN_CHECK(mode_ == Mode::train,
               "Network::backward: the last forward() was planned for Mode::eval (inference: no gradient buffers); "
               "call forward(x, Mode::train) before backward()");
    KILN_CHECK(dy.shape() == output_shape_, "Network::backward: the gradient has shape ", dy.shape().str(),
               " but the output has shape ", output_shape_.str());
    // The weight gradients' split-K reductions in one launch at the end (where the device batches
    // them), unless a data-parallel trainer reads each gradient as soon as its layer is done.
    if constexpr (HasDeferredWgradReductions<device>) {
      if (!gradient_ready_hook<device>()) {
        Backend<device>::conv2d_defer_wgrad_reductions();
        try {
          net_.backward(dy);
        } catch (...) {
          Backend<device>::conv2d_drop_wgrad_reductions();
          throw;
        }
        Backend<device>::conv2d_flush_wgrad_reductions();
        return;
      }
    }
    net_.backward(dy);
  }

  template <class F>
  void visit(F&& f, const std::string& prefix = "") {
    StateVisitor<device> visitor(f);  // the layers' visit() once, whatever F (core/state.hpp)
    net_.visit(visitor, prefix);
  }
  // Zeroes every parameter gradient. The gradient tensors are gathered once
  // (visit() builds names, which allocates), so a step allocates nothing.
  void zero_grad() {
    if (grads_.empty())
      visit(
          [&](StateRef<device> ref) {
            if (ref.grad) grads_.push_back(ref.grad);
          },
          "");
    for (auto* g : grads_) g->zero();
  }
  void reset_parameters(Rng& rng) { net_.reset_parameters(rng); }

  Net& layers() { return net_; }
  const Arena<device>& arena() const { return arena_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }
  // The mode of the current plan (meaningful once planned()).
  Mode planned_mode() const { return mode_; }
  bool planned() const { return planned_; }

 private:
  Net net_;
  Arena<device> arena_;
  Shape input_shape_, output_shape_;
  Mode mode_ = Mode::train;
  bool planned_ = false, forwarded_ = false;
  std::vector<Tensor<float, device>*> grads_;
};

}  // namespace kiln
