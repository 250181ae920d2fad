#pragma once
// The model types behind the names of devices.hpp, for the translation units that instantiate
// one (model, device) pair each (examples/CMakeLists.txt generates them). A unit for the Cuda
// device includes <kiln/cuda.hpp> before this header (under nvcc it must come first).
#include <kiln/kiln.hpp>
#include <kiln/models/unet.hpp>

#include <cstdint>
#include <string_view>
#include <type_traits>

#include "cli.hpp"
#include "devices.hpp"

namespace kiln::programs {

template <class Model>
std::string_view model_name() {
  return model_name_for(Model::width, Model::depth);
}

template <class Device>
using SmallModel = UNetSmall<Device>;
template <class Device>
using BaseModel = UNetBase<Device>;
template <class Device>
using SmallClassifier = UNet<1, kColourClasses, 16, 4, Device>;
template <class Device>
using BaseClassifier = UNet<1, kColourClasses, 32, 4, Device>;

// A CPU tensor on Device (no copy for the CPU).
template <class Device>
Tensor<float, Device> to_device(const Tensor<float, Cpu>& t) {
  if constexpr (std::is_same_v<Device, Cpu>)
    return t;
  else
    return kiln::to<Device>(t);
}
template <class Device>
Tensor<float, Cpu> to_host(const Tensor<float, Device>& t) {
  if constexpr (std::is_same_v<Device, Cpu>)
    return t;
  else
    return kiln::to<Cpu>(t);
}

// Bytes the network's arena would take for input shape `s` planned for `mode` (train: activations,
// saved state, gradients and per-thread workspaces; eval: only what is live at once), found by
// planning into a scratch arena that never allocates. 0 when the network is already planned for
// that shape and mode (its block exists). A dry plan rebinds nothing, but layers remember the
// shape they were planned for, so the network's own plan is redone (into its existing block, in
// its own mode, no allocation) to leave it as it was.
template <class Net>
std::uint64_t arena_bytes(Network<Net>& net, const Shape& s, Mode mode) {
  if (net.planned() && s == net.input_shape() && mode == net.planned_mode()) return 0;
  std::uint64_t bytes = 0;
  {
    Arena<typename Net::device> dry;
    dry.begin(mode);
    (void)net.layers().plan(s, dry, "");
    bytes = dry.measure();
  }
  if (net.planned()) (void)net.plan(net.input_shape(), net.planned_mode());
  return bytes;
}

}  // namespace kiln::programs
