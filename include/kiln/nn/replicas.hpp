#pragma once
// Hooks for code that trains several replicas of one network at once (data parallelism),
// so that the layers cooperate without knowing how replicas talk to each other. Both are
// process-wide and empty by default (one replica: the layers behave as without them).
//
//   replica_sum()            sums a few doubles element-wise across the replicas, in place,
//                            identically on every replica. When set, BatchNorm2d in
//                            Mode::train normalises with the statistics of the whole global
//                            batch (synchronised BatchNorm): two sums in forward (mean, then
//                            squared deviations), one in backward (the two gradient sums).
//                            The backend must have the `_across` BatchNorm operations
//                            (Backend<Cpu> has; a backend without them throws, saying so).
//   gradient_ready_hook<D>() called by each layer with parameters as soon as its backward()
//                            has finished adding into a parameter's gradient, once per
//                            parameter and step, in backward order: a data-parallel trainer
//                            starts all-reducing a bucket of gradients the moment the last
//                            gradient of that bucket is complete, while backward goes on.
#include <functional>
#include <span>

#include "kiln/core/tensor.hpp"

namespace kiln {

using ReplicaSum = std::function<void(std::span<double> values)>;

inline ReplicaSum& replica_sum() {
  static ReplicaSum sum;
  return sum;
}

template <class Device>
using GradientReady = std::function<void(Tensor<float, Device>& grad)>;

template <class Device>
GradientReady<Device>& gradient_ready_hook() {
  static GradientReady<Device> hook;
  return hook;
}

namespace detail {
template <class Device>
void gradient_ready(Tensor<float, Device>& grad) {
  if (auto& hook = gradient_ready_hook<Device>()) hook(grad);
}
}  // namespace detail

}  // namespace kiln
