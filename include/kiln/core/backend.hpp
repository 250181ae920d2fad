#pragma once
// Backend<Device>: the table of operations a device provides. Layers call
// Backend<D>::op(...) and never know more about the device than its tag.
// Backend<Cpu> lives in <kiln/cpu/backend.hpp>; Backend<Cuda> in
// <kiln/cuda/backend.hpp> (hand-written kernels, emulated without nvcc).
#include "kiln/core/device.hpp"

namespace kiln {

template <class Device>
struct Backend {
  static_assert(backend_included<Device>,
                "kiln: no backend for this device is included: include <kiln/cuda.hpp> to use kiln::Cuda layers");
};

}  // namespace kiln
