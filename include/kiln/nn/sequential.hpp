#pragma once
// Sequential<L...>: layers applied in order. The channel counts of neighbours
// are checked at compile time; forward folds left to right, backward right to
// left; the first layer's input gradient is skipped when nobody needs it.
// A BatchNorm2d directly followed by a ReLU runs as one fused pass each way
// (same values; the ReLU's buffers are used, the pair's middle tensor is not).
#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kiln/core/backend_ops.hpp"
#include "kiln/nn/layer.hpp"
#include "kiln/nn/named.hpp"

namespace kiln {

namespace detail {

// Instantiated once per link so that a mismatch names the numbers in the
// compiler's "required from" line: LinkCheck<Position, Produced, Expected>.
template <std::size_t Position, int Produced, int Expected>
struct LinkCheck {
  static_assert(Expected == any_channels || Produced == any_channels || Produced == Expected,
                "kiln: channel mismatch between neighbouring layers: the layer before `Position` produces "
                "`Produced` channels but layer `Position` expects `Expected` (see the LinkCheck<Position, "
                "Produced, Expected> arguments below)");
  static constexpr bool ok = true;
};

// Channels flowing into each layer (index i) and out of the last (index N).
template <class... L>
constexpr std::array<int, sizeof...(L) + 1> channel_chain() {
  constexpr int ins[] = {L::in_channels...};
  constexpr int outs[] = {L::out_channels...};
  std::array<int, sizeof...(L) + 1> c{};
  c[0] = ins[0];
  for (std::size_t i = 0; i < sizeof...(L); ++i) {
    int in = c[i] == any_channels ? ins[i] : c[i];
    c[i + 1] = outs[i] == same_channels ? in : outs[i];
  }
  return c;
}

template <class... L>
constexpr int first_fixed_input() {
  constexpr int ins[] = {L::in_channels...};
  constexpr int outs[] = {L::out_channels...};
  for (std::size_t i = 0; i < sizeof...(L); ++i) {
    if (ins[i] != any_channels) return ins[i];
    if (outs[i] != same_channels) return any_channels;
  }
  return any_channels;
}

// Layer L followed by Next runs as one fused operation: a BatchNorm2d then a ReLU
// (BatchNorm2d::forward_relu / backward_relu) where the backend has the fused op.
template <class L, class Next, class D>
concept FusedWithNext = requires(L& layer, Next& next, const Tensor<float, D>& t, Mode mode) {
  { layer.forward_relu(t, mode, next) } -> std::same_as<const Tensor<float, D>&>;
  { layer.backward_relu(t, next) } -> std::same_as<const Tensor<float, D>&>;
};

// A layer that reads copies of its input and of its output gradient, which the fused pair next to
// it may write instead (Conv2d; core/backend_ops.hpp, HasActivationCopies).
template <class L>
concept TakesActivationCopies = requires(L& layer, Mode mode) {
  { layer.input_copy_slot(mode) } -> std::same_as<float*>;
  layer.input_copy_written();
  { layer.gradient_copy_slot() } -> std::same_as<float*>;
  layer.gradient_copy_written();
};

}  // namespace detail

template <class... Layers>
class Sequential {
  static_assert(sizeof...(Layers) > 0, "kiln::Sequential needs at least one layer");
  static_assert((Layer<Layers> && ...),
                "kiln::Sequential: every element must meet the layer contract (kiln::Layer, nn/layer.hpp)");
  using First = std::tuple_element_t<0, std::tuple<Layers...>>;

 public:
  using device = typename First::device;
  static_assert((std::is_same_v<typename Layers::device, device> && ...),
                "kiln::Sequential: all layers must be on the same device");

  static constexpr auto chain = detail::channel_chain<Layers...>();
  static constexpr int in_channels = detail::first_fixed_input<Layers...>();
  static constexpr int out_channels = chain.back() == any_channels ? same_channels : chain.back();
  static constexpr std::size_t parameter_count = (std::size_t{0} + ... + Layers::parameter_count);
  static constexpr std::string_view kind = "Sequential";

 private:
  template <std::size_t... I>
  static constexpr bool check_links(std::index_sequence<I...>) {
    return (
        detail::LinkCheck<I + 1, chain[I + 1], std::tuple_element_t<I + 1, std::tuple<Layers...>>::in_channels>::ok &&
        ... && true);
  }
  static_assert(check_links(std::make_index_sequence<sizeof...(Layers) - 1>{}));

 public:
  static constexpr std::size_t size = sizeof...(Layers);

  template <std::size_t I>
  auto& get() {
    return std::get<I>(layers_);
  }

  void reset_parameters(Rng& rng) {
    std::apply([&](auto&... l) { (l.reset_parameters(rng), ...); }, layers_);
  }

  // Tells the first layer whether anyone needs dL/dinput (a network's input
  // layer does not). Containers pass this on to their first child.
  void set_input_grad(bool wanted) {
    if constexpr (requires { std::get<0>(layers_).set_input_grad(wanted); })
      std::get<0>(layers_).set_input_grad(wanted);
  }

  Shape plan(const Shape& in, Arena<device>& arena, std::string_view path) { return plan_from<0>(in, arena, path); }

  const Tensor<float, device>& forward(const Tensor<float, device>& x, Mode mode) { return forward_from<0>(x, mode); }

  const Tensor<float, device>& backward(const Tensor<float, device>& dy) {
    return backward_from<sizeof...(Layers) - 1>(dy);
  }

  template <class F>
  void visit(F&& f, const std::string& prefix) {
    StateVisitor<device> visitor(f);  // the children's visit() once, whatever F (core/state.hpp)
    visit_from<0>(visitor, prefix);
  }

  template <std::size_t I>
  static std::string child_name() {
    using L = std::tuple_element_t<I, std::tuple<Layers...>>;
    if constexpr (detail::HasChildName<L>)
      return std::string(L::child_name);
    else
      return std::to_string(I);
  }

 private:
  template <std::size_t I>
  using layer_t = std::tuple_element_t<I, std::tuple<Layers...>>;

  template <std::size_t I>
  Shape plan_from(const Shape& in, Arena<device>& arena, std::string_view path) {
    Shape out;
    if constexpr (fused_at<I>()) {
      // The fused pass reads layer I's input while writing layer I + 1's output, so
      // in an eval plan the input must outlive the pair (not only layer I).
      const auto x = arena.current();
      arena.retain(x);
      out = std::get<I>(layers_).plan(in, arena, join_name(path, child_name<I>()));
      out = std::get<I + 1>(layers_).plan(out, arena, join_name(path, child_name<I + 1>()));
      arena.release(x);
    } else {
      out = std::get<I>(layers_).plan(in, arena, join_name(path, child_name<I>()));
    }
    constexpr std::size_t next = fused_at<I>() ? I + 2 : I + 1;
    if constexpr (next < sizeof...(Layers))
      return plan_from<next>(out, arena, path);
    else
      return out;
  }

  // Layers I and I + 1 run as one fused operation (see detail::FusedWithNext).
  template <std::size_t I>
  static constexpr bool fused_at() {
    if constexpr (I + 1 < sizeof...(Layers))
      return detail::FusedWithNext<layer_t<I>, layer_t<I + 1>, device>;
    else
      return false;
  }

  // The fused pair at I writes the activation copy of the layer after it (I + 2) or before it
  // (I - 1), where the backend has the copies and that layer takes them.
  template <std::size_t I>
  static constexpr bool copies_forward() {
    if constexpr (HasActivationCopies<device> && fused_at<I>() && I + 2 < sizeof...(Layers))
      return detail::TakesActivationCopies<layer_t<I + 2>>;
    else
      return false;
  }
  template <std::size_t I>
  static constexpr bool copies_backward() {
    if constexpr (HasActivationCopies<device> && fused_at<I>() && I > 0)
      return detail::TakesActivationCopies<layer_t<I - 1>>;
    else
      return false;
  }

  // Layer I is the second of a fused pair.
  template <std::size_t I>
  static constexpr bool fused_before() {
    if constexpr (I > 0)
      return fused_at<I - 1>();
    else
      return false;
  }

  template <std::size_t I>
  const Tensor<float, device>& forward_from(const Tensor<float, device>& x, Mode mode) {
    constexpr std::size_t next = fused_at<I>() ? I + 2 : I + 1;
    const Tensor<float, device>* y;
    if constexpr (copies_forward<I>()) {
      auto& consumer = std::get<I + 2>(layers_);
      float* slot = consumer.input_copy_slot(mode);
      y = &std::get<I>(layers_).forward_relu(x, mode, std::get<I + 1>(layers_), slot);
      if (slot != nullptr && std::get<I>(layers_).copy_written()) consumer.input_copy_written();
    } else if constexpr (fused_at<I>()) {
      y = &std::get<I>(layers_).forward_relu(x, mode, std::get<I + 1>(layers_));
    } else
      y = &std::get<I>(layers_).forward(x, mode);
    if constexpr (next < sizeof...(Layers))
      return forward_from<next>(*y, mode);
    else
      return *y;
  }
  template <std::size_t I>
  const Tensor<float, device>& backward_from(const Tensor<float, device>& dy) {
    // A fused pair (I - 1, I) is entered at its second layer and leaves before its first.
    if constexpr (fused_before<I>()) {
      const auto& dx = backward_pair<I - 1>(dy);
      if constexpr (I > 1)
        return backward_from<I - 2>(dx);
      else
        return dx;
    } else {
      const auto& dx = std::get<I>(layers_).backward(dy);
      if constexpr (I > 0)
        return backward_from<I - 1>(dx);
      else
        return dx;
    }
  }
  // The fused pair (I, I + 1) backward, writing the previous layer's dy copy where it takes one.
  template <std::size_t I>
  const Tensor<float, device>& backward_pair(const Tensor<float, device>& dy) {
    if constexpr (copies_backward<I>()) {
      auto& producer = std::get<I - 1>(layers_);
      float* slot = producer.gradient_copy_slot();
      const auto& dx = std::get<I>(layers_).backward_relu(dy, std::get<I + 1>(layers_), slot);
      if (slot != nullptr && std::get<I>(layers_).copy_written()) producer.gradient_copy_written();
      return dx;
    } else {
      return std::get<I>(layers_).backward_relu(dy, std::get<I + 1>(layers_));
    }
  }
  template <std::size_t I, class F>
  void visit_from(F& f, const std::string& prefix) {
    std::get<I>(layers_).visit(f, join_name(prefix, child_name<I>()));
    if constexpr (I + 1 < sizeof...(Layers)) visit_from<I + 1>(f, prefix);
  }

  std::tuple<Layers...> layers_;
};

}  // namespace kiln
