#pragma once
// kiln-train's loss on the network's output: a regression loss on ab/110 (mse, l1, huber) for a
// 2-channel model, or, for a model with kColourClasses outputs, the classification loss of
// Zhang et al. 2016: ab -> soft targets over the data's bins (AbSoftEncode), class-rebalanced
// per-pixel softmax cross-entropy (SoftmaxCrossEntropy). Same forward(pred, ab) / backward() as
// kiln::Loss, so the training step does not change.
#include "../common/colour_head.hpp"
#include "../common/models.hpp"
#include <kiln/color/ab_soft_encode.hpp>
#if KILN_CUDA_DEVICE_INCLUDED
#include <kiln/color/cuda.hpp>  // ColourOps<Cuda>, for the Cuda units (after <kiln/cuda.hpp>)
#endif

#include <string>

namespace kiln::programs {

template <class Model>
class ColourObjective {
 public:
  using Device = typename Model::device;
  using T = Tensor<float, Device>;
  static constexpr int K = Model::out_channels;
  static constexpr bool classify = K != 2;

  ColourObjective(const std::string& loss, float huber_delta, ColourHead head)
      : head_(std::move(head)), loss_(classify ? LossKind::mse : parse_loss_kind(loss), huber_delta) {
    if constexpr (classify) {
      encode_.set_bins(head_.bins.scaled_centres(kAbScale), head_.bins.weights, head_.sigma * kAbScale,
                       head_.neighbours);
      xent_.set_classes(std::int64_t(head_.bins.size()));
    }
  }
  const ColourHead& head() const { return head_; }

  float forward(const T& pred, const T& ab) {
    const T& value = forward_on_device(pred, ab);
    float host = 0.0f;
    DeviceMemory<Device>::to_host(&host, value.data(), sizeof host);
    return host;
  }
  // The loss left in a 1-element device tensor (no copy to the host: the step of cuda_step.hpp).
  const T& forward_on_device(const T& pred, const T& ab) {
    if constexpr (!classify) {
      return loss_.forward_on_device(pred, ab);
    } else {
      if (!(planned_ == ab.shape())) {
        arena_.begin(Mode::train);
        encode_.plan(ab.shape(), arena_, "encode");
        xent_.plan(pred.shape(), arena_);
        arena_.finalize();
        planned_ = ab.shape();
      }
      const T& targets = encode_.forward(ab, Mode::train);
      return xent_.forward_on_device(pred, targets, &encode_.pixel_weights());
    }
  }
  const T& backward() {
    if constexpr (!classify)
      return loss_.backward();
    else
      return xent_.backward();
  }

 private:
  ColourHead head_;
  Loss<Device> loss_;
  AbSoftEncode<K, Device> encode_;
  SoftmaxCrossEntropy<Device> xent_;
  Arena<Device> arena_;
  Shape planned_;
};

}  // namespace kiln::programs
