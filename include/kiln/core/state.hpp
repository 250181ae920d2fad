#pragma once
// The state a layer owns, as visit() hands it to optimizers and serialisers: parameters (value +
// gradient), buffers (running statistics) and counters, under PyTorch state_dict names. It sits
// in core so that io (checkpoints) and optim read a network's state without knowing layers.
#include <cstdint>
#include <string>
#include <string_view>

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
};

inline std::string join_name(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  std::string s(prefix);
  s += '.';
  s += name;
  return s;
}

}  // namespace kiln
