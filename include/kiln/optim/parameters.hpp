#pragma once
// collect_parameters(net): the learnable tensors of a layer or network, with
// their state_dict names, in visit() order (buffers and counters are skipped).
// The pointers stay valid as long as the network object lives and is not moved.
#include <string>
#include <vector>

#include "kiln/core/state.hpp"

namespace kiln {

template <class Device>
struct ParameterSlot {
  std::string name;  // "down.0.conv1.weight"
  Tensor<float, Device>* value = nullptr;
  Tensor<float, Device>* grad = nullptr;  // same shape as value
  // A convolution's weight: its packed copies (core/conv_packing.hpp). Whoever writes value without
  // writing them too calls parameter_written(slot).
  ConvPacking<Device>* packing = nullptr;
};

// What a writer of a slot's value calls (an optimizer that does not pack as it writes, a test
// injecting a value): the copies packed from the old value are forgotten, the next forward packs.
template <class Device>
void parameter_written(const ParameterSlot<Device>& slot) {
  if (slot.packing != nullptr) slot.packing->forget();
}

template <class Net>
std::vector<ParameterSlot<typename Net::device>> collect_parameters(Net& net) {
  using Device = typename Net::device;
  std::vector<ParameterSlot<Device>> slots;
  net.visit(
      [&](StateRef<Device> ref) {
        if (ref.kind != StateRef<Device>::Kind::parameter) return;
        KILN_CHECK(ref.value && ref.grad && ref.value->shape() == ref.grad->shape(), "collect_parameters: parameter '",
                   ref.name, "' has no gradient of its shape");
        slots.push_back({ref.name, ref.value, ref.grad, ref.packing});
      },
      std::string{});
  return slots;
}

// Sets the gradients of the slots to zero.
template <class Device>
void zero_gradients(const std::vector<ParameterSlot<Device>>& slots) {
  for (const auto& s : slots) s.grad->zero();
}

}  // namespace kiln
