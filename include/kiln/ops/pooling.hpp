#pragma once
// MaxPool2d's arguments, shared by Backend<Cpu> (cpu/pooling.hpp) and the CUDA kernels
// (kernels/pooling.cuh).
#include <cstdint>

namespace kiln {

struct PoolArgs {
  std::int64_t n = 0, c = 0, h = 0, w = 0;  // INPUT shape [n, c, h, w]
  std::int64_t size = 2;                    // kernel = stride
  constexpr std::int64_t out_h() const { return h / size; }
  constexpr std::int64_t out_w() const { return w / size; }
};

}  // namespace kiln
