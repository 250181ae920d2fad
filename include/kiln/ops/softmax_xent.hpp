#pragma once
// The argument struct of the per-pixel softmax cross-entropy over channels (SoftmaxCrossEntropy),
// shared by Backend<Cpu> (cpu/softmax_xent.hpp) and the CUDA kernels (kernels/softmax_xent.cuh).
#include <cstdint>

#include "kiln/ops/host_device.hpp"

namespace kiln {

// Per-pixel softmax cross-entropy over channels.
struct SoftmaxXentArgs {
  std::int64_t n = 0, channels = 0, classes = 0, hw = 0;  // classes <= channels take part
  KILN_HD std::int64_t pixels() const { return n * hw; }
};

}  // namespace kiln
