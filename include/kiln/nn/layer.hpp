#pragma once
// The contract every kiln layer implements (see docs/architecture.md), checked by the
// kiln::Layer concept below (Sequential and Network assert it for every layer they hold):
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
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kiln/core/arena.hpp"
#include "kiln/core/mode.hpp"
#include "kiln/core/random.hpp"
#include "kiln/core/state.hpp"
#include "kiln/core/tensor.hpp"

namespace kiln {

// A layer that accepts any number of channels (ReLU, pooling) says so with
// in_channels = any_channels and out_channels = same_channels.
inline constexpr int any_channels = -1;
inline constexpr int same_channels = -2;

// The layer contract as a concept: a missing or misspelt member is a compile error at the
// Sequential or Network that holds the layer, naming it, instead of deep inside a template.
namespace detail {
// A visitor for the concept below (a lambda there is not accepted by every compiler: nvcc).
template <class Device>
struct LayerStateProbe {
  void operator()(StateRef<Device>) const {}
};
}  // namespace detail

template <class L>
concept Layer = requires(L& l, const Shape& shape, Arena<typename L::device>& arena,
                         const Tensor<float, typename L::device>& t, Rng& rng) {
  typename L::device;
  { L::in_channels } -> std::convertible_to<int>;
  { L::out_channels } -> std::convertible_to<int>;
  { L::parameter_count } -> std::convertible_to<std::size_t>;
  { l.plan(shape, arena, std::string_view{}) } -> std::same_as<Shape>;
  { l.forward(t, Mode::train) } -> std::convertible_to<const Tensor<float, typename L::device>&>;
  { l.backward(t) } -> std::convertible_to<const Tensor<float, typename L::device>&>;
  l.visit(detail::LayerStateProbe<typename L::device>{}, std::string{});
  l.reset_parameters(rng);
};

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

// forward() runs on the buffers plan() requested, so its input must have the planned shape.
inline void check_planned(std::string_view kind, const Shape& got, const Shape& planned) {
  KILN_CHECK(got == planned, kind, ": forward() got ", got.str(), " but was planned for ", planned.str(),
             " (call plan() for a new shape)");
}
}  // namespace detail

}  // namespace kiln
