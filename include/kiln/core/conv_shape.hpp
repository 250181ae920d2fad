#pragma once
// The run-time geometry of a stride-1, "same"-padded convolution, shared by
// the CPU and CUDA implementations.
#include <cstdint>

namespace kiln {

struct ConvShape {
  std::int64_t n, c_in, c_out, h, w, k;
  constexpr std::int64_t pad() const { return k / 2; }
  constexpr std::int64_t hw() const { return h * w; }
  constexpr std::int64_t patch() const { return c_in * k * k; }  // rows of the im2col matrix
};

}  // namespace kiln
