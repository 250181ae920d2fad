#pragma once
// kiln-train's numerical guards: a NaN or an infinity must stop the run before it reaches the
// weights or a checkpoint.
//   * every gradient is checked after backward, before the optimizer step (an optimizer would
//     spread one NaN into every weight it touches, and the next save would keep it);
//   * the weights are checked before every save (nothing non-finite is written over a good file);
//   * when the loss itself is not finite, the weights are searched for the first non-finite one.
// The check reads each float's exponent bits (all ones = Inf or NaN) and ORs the result over the
// tensor: one pass over the gradients, vectorised, no branches, about 0.2% of a training step
// (docs/reliability.md). On the Cuda device (one process) the same check runs on the device
// (kiln::cuda::StepMonitor): a flag per step, read with the losses every --loss-every steps and
// before every save; the optimizer kernels skip their update from the first bad step on, so the
// weights the messages describe are those of the last good step (cuda_step.hpp).
#include <kiln/core/tensor.hpp>
#include <kiln/optim/parameters.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace kiln::programs {

// True when none of the n floats is NaN or infinite.
inline bool all_finite(const float* values, std::size_t n) {
  std::uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, values + i, sizeof bits);
    bad |= std::uint32_t((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

template <class Device>
bool all_finite(const Tensor<float, Device>& t) {
  if constexpr (std::is_same_v<Device, Cpu>) {
    return all_finite(t.data(), t.numel());
  } else {
    const std::vector<float> host = t.to_vector();
    return all_finite(host.data(), host.size());
  }
}

// What a non-finite tensor holds: how many values are bad, and the first bad one ("NaN", "inf").
struct NonFiniteReport {
  std::string name;  // parameter name, e.g. "down.0.conv1.weight"
  std::size_t bad = 0, total = 0;
  std::string first_value;  // "NaN", "inf" or "-inf"
  std::size_t count = 0;    // how many tensors of the searched set are non-finite
};

template <class Device>
NonFiniteReport describe(const std::string& name, const Tensor<float, Device>& t) {
  const std::vector<float> v = t.to_vector();
  NonFiniteReport r{name, 0, v.size(), "", 0};
  for (float x : v) {
    if (std::isfinite(x)) continue;
    if (r.bad++ == 0) r.first_value = std::isnan(x) ? "NaN" : (x > 0 ? "inf" : "-inf");
  }
  return r;
}

// The gradients after backward. Backward runs from the output layer to the input layer, so the
// first layer where a NaN appeared is the last one in forward (visiting) order: reported here,
// with the number of gradient tensors affected.
template <class Device>
std::optional<NonFiniteReport> first_non_finite_gradient(const std::vector<ParameterSlot<Device>>& slots) {
  std::optional<NonFiniteReport> found;
  std::size_t count = 0;
  for (auto it = slots.rbegin(); it != slots.rend(); ++it) {
    if (all_finite(*it->grad)) continue;
    ++count;
    if (!found) found = describe(it->name, *it->grad);
  }
  if (found) found->count = count;
  return found;
}

// The weights, in forward order (the layer nearest the input first).
template <class Device>
std::optional<NonFiniteReport> first_non_finite_weight(const std::vector<ParameterSlot<Device>>& slots) {
  std::optional<NonFiniteReport> found;
  std::size_t count = 0;
  for (const ParameterSlot<Device>& s : slots) {
    if (all_finite(*s.value)) continue;
    ++count;
    if (!found) found = describe(s.name, *s.value);
  }
  if (found) found->count = count;
  return found;
}

// What the steps since the last read gave: their losses in order, and the first step that went
// wrong (its index in `losses`): a non-finite loss, or non-finite gradients (`gradient`: the first
// layer backward reached, with the number of gradient tensors affected). Nothing was updated from
// that step on.
struct StepResults {
  std::vector<float> losses;
  int bad_step = -1;
  bool bad_loss = false;
  std::optional<NonFiniteReport> gradient;
};

// "NaN in 1 of 144 values of down.0.conv1.weight (and 3 more tensors)"; `of` names what was
// searched ("the gradient of " for gradients).
inline std::string report_text(const NonFiniteReport& r, const std::string& of = "") {
  std::string s =
      r.first_value + " in " + std::to_string(r.bad) + " of " + std::to_string(r.total) + " values of " + of + r.name;
  if (r.count > 1) s += " (and " + std::to_string(r.count - 1) + " more tensor" + (r.count > 2 ? "s" : "") + ")";
  return s;
}

// --debug-inject-nan KIND:NAME@STEP (hidden; for the tests): before step STEP (1-based, global)
// runs its forward pass, a NaN is written into the first value of parameter NAME (KIND weight), or
// after its backward pass into NAME's gradient (KIND grad).
struct NanInjection {
  enum class Kind { weight, grad } kind = Kind::weight;
  std::string name;
  long long step = 0;
};

inline std::optional<NanInjection> parse_nan_injection(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const auto colon = text.find(':'), at = text.rfind('@');
  if (colon == std::string::npos || at == std::string::npos || at < colon)
    throw std::invalid_argument("'" + text + "' is not KIND:NAME@STEP (e.g. grad:down.0.conv1.weight@3)");
  NanInjection inj;
  const std::string kind = text.substr(0, colon);
  if (kind == "weight")
    inj.kind = NanInjection::Kind::weight;
  else if (kind == "grad")
    inj.kind = NanInjection::Kind::grad;
  else
    throw std::invalid_argument("'" + kind + "' is not weight or grad");
  inj.name = text.substr(colon + 1, at - colon - 1);
  inj.step = std::stoll(text.substr(at + 1));
  if (inj.step < 1) throw std::invalid_argument("the step must be 1 or more");
  return inj;
}

template <class Device>
void inject_nan(const std::vector<ParameterSlot<Device>>& slots, const NanInjection& inj) {
  for (const ParameterSlot<Device>& s : slots) {
    if (s.name != inj.name) continue;
    Tensor<float, Device>& t = inj.kind == NanInjection::Kind::weight ? *s.value : *s.grad;
    std::vector<float> v = t.to_vector();
    v.at(0) = std::numeric_limits<float>::quiet_NaN();
    t.copy_from_host(v);
    parameter_written(s);
    return;
  }
  throw std::invalid_argument("--debug-inject-nan: the model has no parameter '" + inj.name + "'");
}

}  // namespace kiln::programs
