#pragma once
// Upsample's arguments and PyTorch's bilinear source taps, shared by Backend<Cpu>
// (cpu/upsample.hpp) and the CUDA kernels (kernels/upsample.cuh).
#include <cstdint>

#include "kiln/ops/host_device.hpp"

namespace kiln {

struct UpsampleArgs {
  std::int64_t n = 0, c = 0, h = 0, w = 0;  // INPUT shape [n, c, h, w]
  std::int64_t scale = 2;
  constexpr std::int64_t out_h() const { return h * scale; }
  constexpr std::int64_t out_w() const { return w * scale; }
};

// PyTorch's source coordinate for align_corners = false:
//   src = (dst + 0.5) / scale - 0.5, clamped at 0, computed as PyTorch does in
//   float: float(1.0 / scale) * (dst + 0.5f) - 0.5f (bit-exact for scale 2);
// i0 = floor(src), i1 = i0 + 1 unless i0 is the last row (edges clamp);
// weights l1 = src - i0 on i1 and l0 = 1 - l1 on i0. The CPU and the kernels call this one.
struct BilinearTap {
  std::int64_t i0, i1;
  float l0, l1;
};
// The same with 1 / scale given (a kernel computes it once, outside its loop).
KILN_HD inline constexpr BilinearTap bilinear_tap_inv(std::int64_t dst, std::int64_t in_size, float inv_scale) {
  float src = inv_scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  if (src < 0.0f) src = 0.0f;
  const std::int64_t i0 = static_cast<std::int64_t>(src);  // floor: src >= 0
  const std::int64_t i1 = i0 < in_size - 1 ? i0 + 1 : i0;
  const float l1 = src - static_cast<float>(i0);
  return {i0, i1, 1.0f - l1, l1};
}
// 1.0f / scale equals float(1.0 / scale) for every scale up to 2^24.
KILN_HD inline constexpr float bilinear_inv_scale(std::int64_t scale) { return 1.0f / static_cast<float>(scale); }
KILN_HD inline constexpr BilinearTap bilinear_tap(std::int64_t dst, std::int64_t in_size, std::int64_t scale) {
  return bilinear_tap_inv(dst, in_size, bilinear_inv_scale(scale));
}

}  // namespace kiln
