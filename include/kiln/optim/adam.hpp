#pragma once
// Adam and AdamW with torch.optim semantics (amsgrad off):
//   Adam:  g = grad + weight_decay * p            (L2 added to the gradient)
//   AdamW: p *= 1 - lr * weight_decay             (decoupled decay), g = grad
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Defaults as PyTorch: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay
// 0 (Adam) or 0.01 (AdamW).
//
// State for checkpoints: visit_state(f) calls f(name, tensor) for
// "<param>.exp_avg" and "<param>.exp_avg_sq"; step_count()/set_step_count().
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kiln/core/backend.hpp"
#include "kiln/ops/optim.hpp"
#include "kiln/optim/parameters.hpp"

namespace kiln {

// Hyper-parameters other than lr are doubles, like PyTorch's Python floats:
// 1 - beta2 is then computed exactly before rounding to float.
struct AdamOptions {
  float lr = 1e-3f;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

struct AdamWOptions {
  float lr = 1e-3f;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

namespace detail {

// Backend<D>::AdamTensors when the backend has adam_step_multi, else an empty placeholder.
template <class B>
struct MultiTensorOf {
  static constexpr bool available = false;
  struct type {};
};
template <class B>
requires requires { typename B::AdamTensors; }
struct MultiTensorOf<B> {
  static constexpr bool available = true;
  using type = typename B::AdamTensors;
};

template <class Device>
class AdamBase {
 public:
  using device = Device;

  // One Backend::adam_step call per parameter tensor, or a fused multi-tensor step where the backend has one.
  void step() {
    ++step_;
    const double t = static_cast<double>(step_);
    const double bc1 = 1.0 - std::pow(beta1_, t);
    const double bc2 = 1.0 - std::pow(beta2_, t);
    AdamStepArgs a;
    a.beta1 = static_cast<float>(beta1_);
    a.beta2 = static_cast<float>(beta2_);
    a.one_minus_beta1 = static_cast<float>(1.0 - beta1_);
    a.one_minus_beta2 = static_cast<float>(1.0 - beta2_);
    a.eps = static_cast<float>(eps_);
    a.l2 = decoupled_ ? 0.0f : static_cast<float>(weight_decay_);
    a.decay = decoupled_ ? static_cast<float>(1.0 - static_cast<double>(lr_) * weight_decay_) : 1.0f;
    a.step_size = static_cast<float>(static_cast<double>(lr_) / bc1);
    a.bias_correction2_sqrt = static_cast<float>(std::sqrt(bc2));
    for (const auto& s : slots_) parameter_written(s);  // a backend that packs as it writes records it again
    if constexpr (has_multi_tensor_step) {
      // One launch per 64 tensors instead of one per tensor (launch overhead dominates small tensors).
      // A backend that keeps convolutions' weights packed (Backend<Cuda>) writes the packings of
      // the slots' ConvPacking in the same pass (core/conv_packing.hpp).
      if (multi_.size() != slots_.size()) {
        multi_.clear();
        for (std::size_t i = 0; i < slots_.size(); ++i) {
          MultiTensor t{slots_[i].value, slots_[i].grad, &exp_avg_[i], &exp_avg_sq_[i]};
          if constexpr (requires { t.packing; }) t.packing = slots_[i].packing;
          multi_.push_back(t);
        }
      }
      Backend<Device>::adam_step_multi(a, std::span<const MultiTensor>(multi_));
    } else {
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        a.numel = static_cast<std::int64_t>(slots_[i].value->numel());
        Backend<Device>::adam_step(a, *slots_[i].value, *slots_[i].grad, exp_avg_[i], exp_avg_sq_[i]);
      }
    }
  }

  void zero_grad() { kiln::zero_gradients(slots_); }

  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  double weight_decay() const { return weight_decay_; }
  std::int64_t step_count() const { return step_; }
  // For resuming from a checkpoint (together with the moments from visit_state).
  void set_step_count(std::int64_t steps) { step_ = steps; }

  // f(const std::string& name, Tensor<float, Device>& tensor) for every moment.
  template <class F>
  void visit_state(F&& f) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      f(slots_[i].name + ".exp_avg", exp_avg_[i]);
      f(slots_[i].name + ".exp_avg_sq", exp_avg_sq_[i]);
    }
  }

  const std::vector<ParameterSlot<Device>>& parameters() const { return slots_; }

 protected:
  AdamBase(std::vector<ParameterSlot<Device>> slots, float lr, double beta1, double beta2, double eps, double wd,
           bool decoupled, const char* who)
      : slots_(std::move(slots)), lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps), weight_decay_(wd),
        decoupled_(decoupled) {
    KILN_CHECK(lr >= 0.0f, who, ": learning rate must be non-negative, got ", lr);
    KILN_CHECK(beta1 >= 0.0 && beta1 < 1.0 && beta2 >= 0.0 && beta2 < 1.0, who, ": betas must lie in [0, 1), got (",
               beta1, ", ", beta2, ")");
    KILN_CHECK(eps >= 0.0, who, ": eps must be non-negative, got ", eps);
    KILN_CHECK(wd >= 0.0, who, ": weight_decay must be non-negative, got ", wd);
    exp_avg_.reserve(slots_.size());
    exp_avg_sq_.reserve(slots_.size());
    for (const auto& s : slots_) {
      exp_avg_.emplace_back(s.value->shape());
      exp_avg_sq_.emplace_back(s.value->shape());
    }
  }

 private:
  // Backends with a fused multi-tensor Adam (Backend<Cuda>) get all parameters in few launches.
  static constexpr bool has_multi_tensor_step = MultiTensorOf<Backend<Device>>::available;
  using MultiTensor = typename MultiTensorOf<Backend<Device>>::type;

  std::vector<ParameterSlot<Device>> slots_;
  std::vector<MultiTensor> multi_;  // pointers into slots_ and the moments, built on the first step
  std::vector<Tensor<float, Device>> exp_avg_, exp_avg_sq_;
  float lr_;
  double beta1_, beta2_, eps_, weight_decay_;
  bool decoupled_;
  std::int64_t step_ = 0;
};

}  // namespace detail

template <class Device = Cpu>
class Adam : public detail::AdamBase<Device> {
 public:
  explicit Adam(std::vector<ParameterSlot<Device>> slots, const AdamOptions& o = {})
      : detail::AdamBase<Device>(std::move(slots), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, false, "Adam") {}
};
template <class Device>
Adam(std::vector<ParameterSlot<Device>>, const AdamOptions&) -> Adam<Device>;
template <class Device>
Adam(std::vector<ParameterSlot<Device>>) -> Adam<Device>;

template <class Device = Cpu>
class AdamW : public detail::AdamBase<Device> {
 public:
  explicit AdamW(std::vector<ParameterSlot<Device>> slots, const AdamWOptions& o = {})
      : detail::AdamBase<Device>(std::move(slots), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, true, "AdamW") {}
};
template <class Device>
AdamW(std::vector<ParameterSlot<Device>>, const AdamWOptions&) -> AdamW<Device>;
template <class Device>
AdamW(std::vector<ParameterSlot<Device>>) -> AdamW<Device>;

}  // namespace kiln
