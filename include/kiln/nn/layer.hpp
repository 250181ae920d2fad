#pragma once
// The contract every kiln layer implements (see docs/architecture.md):
//
//   static constexpr int in_channels;          // or kiln::any_channels
//   static constexpr int out_channels;         // or kiln::same_channels
//   static constexpr std::size_t parameter_count;
//   Shape plan(const Shape& in, Arena<D>&, std::string_view path);
//       checks the input shape (throws naming `path` and both shapes), requests
//       its output, saved state and input-gradient buffers; returns the output shape
//   const Tensor<float, D>& forward(const Tensor<float, D>& x, Mode);
//       writes its planned output; in Mode::train keeps what backward needs
//       (x itself must stay alive until backward: in a network it does).
//       The result is a VIEW into the arena: the next forward (or plan) overwrites
//       it, and copying the Tensor copies the view, not the values: use .clone()
//       to keep a result (see core/tensor.hpp, "ALIASING")
//   const Tensor<float, D>& backward(const Tensor<float, D>& dy);
//       returns dL/dx (overwritten), and ADDS dL/dparameter into the gradients
//   template <class F> void visit(F&& f, const std::string& prefix);
//       calls f(StateRef<D>) for every parameter, buffer and counter, with
//       PyTorch state_dict names ("conv1.weight", "bn1.running_mean", ...)
//   void reset_parameters(Rng&);
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kiln/core/arena.hpp"
#include "kiln/core/mode.hpp"
#include "kiln/core/random.hpp"
#include "kiln/core/tensor.hpp"

namespace kiln {

// A layer that accepts any number of channels (ReLU, pooling) says so with
// in_channels = any_channels and out_channels = same_channels.
inline constexpr int any_channels = -1;
inline constexpr int same_channels = -2;

// Channels after a layer whose input has `in` channels.
template <class L>
constexpr int channels_after(int in) {
  return L::out_channels == same_channels ? in : L::out_channels;
}

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

// Sets every parameter gradient of a layer or network to zero.
template <class Net>
void zero_grad(Net& net) {
  net.visit(
      [](auto ref) {
        if (ref.grad) ref.grad->zero();
      },
      "");
}

// Number of float elements in all parameters (run-time count, for checks).
template <class Net>
std::size_t count_parameters(Net& net) {
  std::size_t n = 0;
  net.visit(
      [&](auto ref) {
        if (ref.kind == decltype(ref)::Kind::parameter) n += ref.value->numel();
      },
      "");
  return n;
}

namespace detail {
// "Conv2d<3, 16, 3> at down.0.conv1"
inline std::string where(std::string_view kind, std::string_view path) {
  std::string s(kind);
  if (!path.empty()) {
    s += " at '";
    s += path;
    s += "'";
  }
  return s;
}
}  // namespace detail

}  // namespace kiln
