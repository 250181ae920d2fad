#pragma once
// SoftmaxCrossEntropy: the per-pixel softmax cross-entropy over the channels of NCHW logits with
// soft targets (each pixel's targets a distribution over the classes) and optional per-pixel
// weights, mean over the N*H*W pixels; fused and numerically stable (kiln/cpu/softmax_xent.hpp):
//   L = 1/P sum_p w_p sum_k -t_pk log softmax(z_p)_k
// PyTorch: (w * F.cross_entropy(z, t, reduction='none')).mean() with t a probability map [N,K,H,W].
// Only the first `classes` channels take part (0: all); the others get a zero gradient.
//
// Usage (like kiln::Loss): float l = xent.forward(logits, targets, &weights); dz = xent.backward();
// logits, targets and weights must stay alive until backward().
#include <algorithm>
#include <cstdint>

#include "kiln/core/backend.hpp"
#include "kiln/ops/softmax_xent.hpp"
#include "kiln/nn/layer.hpp"

namespace kiln {

template <class Device = Cpu>
class SoftmaxCrossEntropy {
 public:
  using device = Device;
  using T = Tensor<float, Device>;

  explicit SoftmaxCrossEntropy(std::int64_t classes = 0) : classes_(classes) {
    KILN_CHECK(classes >= 0, "SoftmaxCrossEntropy: classes must be >= 0 (0: every channel), got ", classes);
  }
  std::int64_t classes() const { return classes_; }
  void set_classes(std::int64_t classes) { classes_ = classes; }

  // The gradient, the per-pixel losses (the CUDA reduction's input) and the result from the arena.
  void plan(const Shape& logits_shape, Arena<Device>& arena) {
    arena.request(dlogits_, logits_shape);
    arena.request(pixel_loss_, Shape{logits_shape.n() * logits_shape.h() * logits_shape.w()});
    arena.request(value_, Shape{1});
  }

  // weights: [N,1,H,W] or null (every pixel weighs 1). The mean as a host float (waits for the device).
  float forward(const T& logits, const T& targets, const T* weights = nullptr) {
    const T& value = forward_on_device(logits, targets, weights);
    float host = 0.0f;
    DeviceMemory<Device>::to_host(&host, value.data(), sizeof(float));
    return host;
  }

  // The same, leaving the mean in a 1-element device tensor (no copy to the host, no wait: a
  // training step that reads its loss only every few steps, or runs from a CUDA graph).
  const T& forward_on_device(const T& logits, const T& targets, const T* weights = nullptr) {
    KILN_CHECK(logits.shape().rank() == 4, "SoftmaxCrossEntropy: expected NCHW logits, got ", logits.shape().str());
    KILN_CHECK(logits.shape() == targets.shape(), "SoftmaxCrossEntropy: logits ", logits.shape().str(), " and targets ",
               targets.shape().str(), " differ in shape");
    const Shape& s = logits.shape();
    KILN_CHECK(classes_ <= s.c(), "SoftmaxCrossEntropy: ", classes_, " classes but the logits have ", s.c(),
               " channels");
    if (weights)
      KILN_CHECK(weights->shape() == Shape::nchw(s.n(), 1, s.h(), s.w()), "SoftmaxCrossEntropy: weights ",
                 weights->shape().str(), " are not one per pixel of ", s.str());
    if (!(dlogits_.shape() == s)) dlogits_ = T(s);
    const std::int64_t pixels = s.n() * s.h() * s.w();
    if (pixel_loss_.numel() != static_cast<std::size_t>(pixels)) pixel_loss_ = T(Shape{pixels});
    if (value_.empty()) value_ = T(Shape{1});
    logits_ = &logits, targets_ = &targets, weights_ = weights;
    Backend<Device>::softmax_xent_forward(args(s), logits, targets, weights ? *weights : empty_, pixel_loss_, value_);
    return value_;
  }

  // dL/dlogits for the last forward() (overwritten).
  const T& backward() {
    KILN_CHECK(logits_ != nullptr, "SoftmaxCrossEntropy: backward() called before forward()");
    Backend<Device>::softmax_xent_backward(args(logits_->shape()), *logits_, *targets_, weights_ ? *weights_ : empty_,
                                           dlogits_);
    return dlogits_;
  }

 private:
  SoftmaxXentArgs args(const Shape& s) const { return {s.n(), s.c(), classes_ ? classes_ : s.c(), s.h() * s.w()}; }
  std::int64_t classes_;
  T dlogits_, pixel_loss_, value_, empty_;
  const T* logits_ = nullptr;
  const T* targets_ = nullptr;
  const T* weights_ = nullptr;
};

}  // namespace kiln
