#pragma once
// ConvPacking<Device>: a stride-1 convolution of a training plan whose weights a backend packs into
// the convolution's workspace (the tensor-core layouts its forward and input gradient read). Conv2d
// owns it; its pointers are the layer's own tensors. Two users:
//   * a network packs every registered convolution's weights in one launch at the start of each
//     training forward (Arena::conv_packings, Backend::conv2d_pack_forwards where the device has it;
//     docs/kernels.md "The forward's packings in one launch");
//   * an optimizer that writes a convolution's weights may write the packed layouts in the same
//     pass (Adam<Cuda>: Backend<Cuda>::adam_step_multi; docs/kernels.md "The packing in the
//     optimizer"). It then records what it left in `optimizer_packed`, and the next forward packs
//     nothing for this convolution where the backend finds the record still current.
// The record is the backend's own description (all zero: nothing packed). Whoever may write the
// weights or the workspace otherwise forgets it: the layer's visit(), weight(), plan, forward and
// backward, the optimizers' other paths (parameter_written). A write through a pointer kept from
// an earlier visit() must call forget() (or parameter_written(slot)) itself.
#include <array>
#include <cstdint>

#include "kiln/core/conv_shape.hpp"
#include "kiln/core/tensor.hpp"

namespace kiln {

template <class Device>
struct ConvPacking {
  ConvShape shape{};
  const Tensor<float, Device>* weight = nullptr;
  Tensor<float, Device>* workspace = nullptr;  // null: not planned for training
  std::array<std::uint64_t, 4> optimizer_packed{};

  bool packed_by_optimizer() const { return optimizer_packed[0] != 0; }
  void forget() { optimizer_packed = {}; }
};

// A layer's own ConvPacking: its pointers are the layer's members, so a copied or moved layer starts
// without one (it registers again when planned) rather than with the source's pointers.
template <class Device>
struct OwnedConvPacking {
  ConvPacking<Device> value;

  OwnedConvPacking() = default;
  OwnedConvPacking(const OwnedConvPacking&) noexcept {}
  OwnedConvPacking& operator=(const OwnedConvPacking&) noexcept {
    value = {};
    return *this;
  }
};

}  // namespace kiln
