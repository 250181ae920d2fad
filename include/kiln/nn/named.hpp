#pragma once
// Named<"conv1", Layer>: gives a child of a Sequential its state_dict name
// (children without one are named by position: "0", "1", ...).
#include <algorithm>
#include <cstddef>
#include <string_view>

namespace kiln {

// A string usable as a template argument.
template <std::size_t N>
struct FixedString {
  char chars[N]{};
  constexpr FixedString(const char (&s)[N]) { std::copy_n(s, N, chars); }
  constexpr std::string_view view() const { return {chars, N - 1}; }
};

template <FixedString Name, class Layer>
struct Named : Layer {
  static constexpr std::string_view child_name = Name.view();
  using named_layer = Layer;  // (what is named: nn/receptive_field.hpp reads it)
};

namespace detail {
template <class L>
concept HasChildName = requires {
  L::child_name;
};
}  // namespace detail

}  // namespace kiln
