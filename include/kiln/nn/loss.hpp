#pragma once
// Regression losses with mean reduction, as PyTorch's nn.MSELoss, nn.L1Loss and
// nn.HuberLoss(delta) with reduction='mean'.
//   MSE:   mean((p - t)^2)
//   L1:    mean(|p - t|)                    (gradient sign(p - t), 0 at p == t)
//   Huber: mean(|d| < delta ? d^2 / 2 : delta * (|d| - delta / 2)),  d = p - t
// SmoothL1Loss(beta) equals HuberLoss(delta = beta) / beta, so SmoothL1 with
// beta = 1 is exactly Huber with delta = 1 (the default here).
//
// Usage: float l = loss.forward(prediction, target); const auto& dp = loss.backward();
// forward() returns the mean as a host float (copied from a 1-element device
// tensor, so it waits for the device); forward_on_device() leaves it in that
// tensor (no copy, no wait: for a step that reads its loss every few steps or
// runs from a CUDA graph); backward() returns dL/dprediction (overwritten). Buffers come from
// an Arena via plan(), or are allocated lazily by the first forward() of a shape.
// prediction and target must stay alive until backward().
#include <algorithm>
#include <string>
#include <string_view>

#include "kiln/core/backend.hpp"
#include "kiln/ops/loss.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln {

inline constexpr std::string_view loss_kind_name(LossKind k) {
  switch (k) {
    case LossKind::mse:
      return "mse";
    case LossKind::l1:
      return "l1";
    case LossKind::huber:
      return "huber";
  }
  return "?";
}

// "mse" | "l1" | "huber" (case-sensitive); anything else throws listing the valid names.
inline LossKind parse_loss_kind(std::string_view name) {
  for (LossKind k : {LossKind::mse, LossKind::l1, LossKind::huber})
    if (name == loss_kind_name(k)) return k;
  fail("unknown loss '", name, "': valid names are mse, l1, huber");
}

// A loss chosen at run time; MSELoss, L1Loss and HuberLoss fix the kind.
template <class Device = Cpu>
class Loss {
 public:
  using device = Device;

  explicit Loss(LossKind kind = LossKind::mse, float delta = 1.0f) : kind_(kind), delta_(delta) {
    KILN_CHECK(delta > 0.0f, "HuberLoss: delta must be positive, got ", delta);
  }

  LossKind kind() const { return kind_; }
  float delta() const { return delta_; }
  std::string_view name() const { return loss_kind_name(kind_); }

  // Takes the gradient and the 1-element result from the arena.
  void plan(const Shape& prediction_shape, Arena<Device>& arena) {
    arena.request(dprediction_, prediction_shape);
    arena.request(value_, Shape{1});
  }

  float forward(const Tensor<float, Device>& prediction, const Tensor<float, Device>& target) {
    const Tensor<float, Device>& value = forward_on_device(prediction, target);
    float host = 0.0f;  // one float back to the host, without a temporary vector
    DeviceMemory<Device>::to_host(&host, value.data(), sizeof(float));
    return host;
  }

  // The mean loss in a 1-element device tensor (valid until the next forward).
  const Tensor<float, Device>& forward_on_device(const Tensor<float, Device>& prediction,
                                                 const Tensor<float, Device>& target) {
    KILN_CHECK(prediction.shape() == target.shape(), loss_name(), ": prediction ", prediction.shape().str(),
               " and target ", target.shape().str(), " differ in shape");
    if (!(dprediction_.shape() == prediction.shape()))
      dprediction_ = Tensor<float, Device>(prediction.shape());  // lazily sized (or re-sized)
    if (value_.empty()) value_ = Tensor<float, Device>(Shape{1});
    prediction_ = &prediction;
    target_ = &target;
    Backend<Device>::loss_forward(args(prediction), prediction, target, value_);
    return value_;
  }

  // dL/dprediction for the last forward() (overwritten).
  const Tensor<float, Device>& backward() {
    KILN_CHECK(prediction_ != nullptr, loss_name(), ": backward() called before forward()");
    Backend<Device>::loss_backward(args(*prediction_), *prediction_, *target_, dprediction_);
    return dprediction_;
  }

 private:
  std::string loss_name() const {
    switch (kind_) {
      case LossKind::mse:
        return "MSELoss";
      case LossKind::l1:
        return "L1Loss";
      case LossKind::huber:
        return "HuberLoss";
    }
    return "Loss";
  }
  LossArgs args(const Tensor<float, Device>& prediction) const {
    return LossArgs{kind_, static_cast<std::int64_t>(prediction.numel()), delta_};
  }

  LossKind kind_;
  float delta_;
  Tensor<float, Device> dprediction_, value_;
  const Tensor<float, Device>* prediction_ = nullptr;
  const Tensor<float, Device>* target_ = nullptr;
};

template <class Device = Cpu>
class MSELoss : public Loss<Device> {
 public:
  MSELoss() : Loss<Device>(LossKind::mse) {}
};

template <class Device = Cpu>
class L1Loss : public Loss<Device> {
 public:
  L1Loss() : Loss<Device>(LossKind::l1) {}
};

template <class Device = Cpu>
class HuberLoss : public Loss<Device> {
 public:
  explicit HuberLoss(float delta = 1.0f) : Loss<Device>(LossKind::huber, delta) {}
};

// The loss named at run time ("mse", "l1", "huber"); delta is used by Huber only.
template <class Device = Cpu>
Loss<Device> make_loss(std::string_view name, float delta = 1.0f) {
  return Loss<Device>(parse_loss_kind(name), delta);
}

}  // namespace kiln
