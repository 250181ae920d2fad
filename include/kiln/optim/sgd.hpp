#pragma once
// SGD with torch.optim.SGD semantics (maximize off):
//   g = grad + weight_decay * p
//   momentum != 0: buf = g on the first step, else momentum * buf + (1 - dampening) * g;
//                  g = nesterov ? g + momentum * buf : buf
//   p -= lr * g
// State for checkpoints: visit_state(f) calls f(name, tensor) for
// "<param>.momentum_buffer" (only when momentum != 0); step_count()/set_step_count()
// (a restored step count > 0 means the buffers are live, as PyTorch's non-None buffers).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kiln/core/backend.hpp"
#include "kiln/ops/optim.hpp"
#include "kiln/optim/parameters.hpp"

namespace kiln {

struct SgdOptions {
  float lr = 1e-2f;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

template <class Device = Cpu>
class SGD {
 public:
  using device = Device;

  explicit SGD(std::vector<ParameterSlot<Device>> slots, const SgdOptions& o = {}) : slots_(std::move(slots)), o_(o) {
    KILN_CHECK(o.lr >= 0.0f, "SGD: learning rate must be non-negative, got ", o.lr);
    KILN_CHECK(o.momentum >= 0.0, "SGD: momentum must be non-negative, got ", o.momentum);
    KILN_CHECK(o.weight_decay >= 0.0, "SGD: weight_decay must be non-negative, got ", o.weight_decay);
    KILN_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
               "SGD: Nesterov momentum requires a momentum and zero dampening");
    if (o.momentum != 0.0) {
      buffers_.reserve(slots_.size());
      for (const auto& s : slots_) buffers_.emplace_back(s.value->shape());
    }
  }

  // One Backend::sgd_step call per parameter tensor.
  void step() {
    SgdStepArgs a;
    a.lr = o_.lr;
    a.momentum = static_cast<float>(o_.momentum);
    a.one_minus_dampening = static_cast<float>(1.0 - o_.dampening);
    a.weight_decay = static_cast<float>(o_.weight_decay);
    a.nesterov = o_.nesterov;
    a.first_step = step_ == 0;
    Tensor<float, Device> none;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      a.numel = static_cast<std::int64_t>(slots_[i].value->numel());
      Backend<Device>::sgd_step(a, *slots_[i].value, *slots_[i].grad, buffers_.empty() ? none : buffers_[i]);
      parameter_written(slots_[i]);
    }
    ++step_;
  }

  void zero_grad() { kiln::zero_gradients(slots_); }

  float lr() const { return o_.lr; }
  void set_lr(float lr) { o_.lr = lr; }
  const SgdOptions& options() const { return o_; }
  std::int64_t step_count() const { return step_; }
  void set_step_count(std::int64_t steps) { step_ = steps; }

  template <class F>
  void visit_state(F&& f) {
    for (std::size_t i = 0; i < buffers_.size(); ++i) f(slots_[i].name + ".momentum_buffer", buffers_[i]);
  }

  const std::vector<ParameterSlot<Device>>& parameters() const { return slots_; }

 private:
  std::vector<ParameterSlot<Device>> slots_;
  std::vector<Tensor<float, Device>> buffers_;
  SgdOptions o_;
  std::int64_t step_ = 0;
};
template <class Device>
SGD(std::vector<ParameterSlot<Device>>, const SgdOptions&) -> SGD<Device>;
template <class Device>
SGD(std::vector<ParameterSlot<Device>>) -> SGD<Device>;

}  // namespace kiln
