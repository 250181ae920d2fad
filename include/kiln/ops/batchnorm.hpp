#pragma once
// BatchNorm2d's arguments, shared by Backend<Cpu> (cpu/batchnorm.hpp), the CUDA kernels
// (kernels/batchnorm.cuh) and cuDNN (cuda/cudnn.hpp).
#include <cstdint>

namespace kiln {

struct BatchNormArgs {
  std::int64_t n = 0, c = 0, hw = 0;  // input [n, c, hw]
  float eps = 1e-5f;
  float momentum = 0.1f;                                   // running = (1 - momentum) * running + momentum * batch
  bool training = true;                                    // batch statistics (train) or running statistics (eval)
  constexpr std::int64_t count() const { return n * hw; }  // values per channel
};

}  // namespace kiln
