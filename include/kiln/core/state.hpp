#pragma once
// The state a layer owns, as visit() hands it to optimizers and serialisers: parameters (value +
// gradient), buffers (running statistics) and counters, under PyTorch state_dict names. It sits
// in core so that io (checkpoints) and optim read a network's state without knowing layers.
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "kiln/core/conv_packing.hpp"
#include "kiln/core/tensor.hpp"

namespace kiln {

// One learnable tensor and its gradient (same shape, same device).
template <class Device>
struct Parameter {
  Tensor<float, Device> value;
  Tensor<float, Device> grad;

  Parameter() = default;
  explicit Parameter(const Shape& shape) : value(shape), grad(shape) {}
};

// What visit() hands out: a parameter (value + grad), a float buffer
// (running statistics) or an integer counter (num_batches_tracked).
template <class Device>
struct StateRef {
  enum class Kind { parameter, buffer, counter };
  Kind kind;
  std::string name;
  Tensor<float, Device>* value = nullptr;
  Tensor<float, Device>* grad = nullptr;
  std::int64_t* counter = nullptr;
  // A convolution's weight: the packed copies an optimizer may keep current (core/conv_packing.hpp).
  ConvPacking<Device>* packing = nullptr;
};

// A visitor of StateRefs, held by reference with its type erased. Composite layers (Sequential,
// the U-Net, the skip connections, Network) pass every visitor on to their children as this, so the
// layers' visit() is compiled once per network instead of once per visitor (a lambda each in
// zero_grad, the optimizers, checkpoints, ...: each used to instantiate it through the whole tree).
// Same order, same names: only the call goes through a pointer.
template <class Device>
class StateVisitor {
 public:
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, StateVisitor>) explicit StateVisitor(F& f)
      : object_(const_cast<void*>(static_cast<const void*>(&f))), call_(&call<std::remove_reference_t<F>>) {}

  void operator()(StateRef<Device> ref) const { call_(object_, ref); }

 private:
  template <class F>
  static void call(void* object, StateRef<Device>& ref) {
    (*static_cast<F*>(object))(std::move(ref));
  }
  void* object_;
  void (*call_)(void*, StateRef<Device>&);
};

inline std::string join_name(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  std::string s(prefix);
  s += '.';
  s += name;
  return s;
}

}  // namespace kiln
