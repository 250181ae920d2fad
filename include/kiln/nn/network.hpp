#pragma once
// Network<Net>: a composed network plus the arena its step memory comes from.
// The first forward() for an input shape plans every buffer of forward and
// backward (one allocation); later steps with that shape allocate nothing.
#include <string>
#include <vector>

#include "kiln/nn/layer.hpp"

namespace kiln {

template <class Net>
class Network {
 public:
  using device = typename Net::device;
  static constexpr int in_channels = Net::in_channels;
  static constexpr int out_channels = Net::out_channels;
  static constexpr std::size_t parameter_count = Net::parameter_count;

  Network() { net_.set_input_grad(false); }

  // Plans for an input shape (done by forward() when the shape changes).
  Shape plan(const Shape& input) {
    arena_.begin();
    output_shape_ = net_.plan(input, arena_, "");
    arena_.finalize();
    input_shape_ = input;
    return output_shape_;
  }

  const Tensor<float, device>& forward(const Tensor<float, device>& x, Mode mode) {
    if (!(x.shape() == input_shape_)) plan(x.shape());
    return net_.forward(x, mode);
  }

  // dy = dL/d(output). Parameter gradients accumulate; call zero_grad() per step.
  void backward(const Tensor<float, device>& dy) {
    KILN_CHECK(dy.shape() == output_shape_, "Network::backward: the gradient has shape ", dy.shape().str(),
               " but the output has shape ", output_shape_.str());
    net_.backward(dy);
  }

  template <class F>
  void visit(F&& f, const std::string& prefix = "") {
    net_.visit(f, prefix);
  }
  // Zeroes every parameter gradient. The gradient tensors are gathered once
  // (visit() builds names, which allocates), so a step allocates nothing.
  void zero_grad() {
    if (grads_.empty())
      net_.visit(
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

 private:
  Net net_;
  Arena<device> arena_;
  Shape input_shape_, output_shape_;
  std::vector<Tensor<float, device>*> grads_;
};

}  // namespace kiln
