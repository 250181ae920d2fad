#pragma once
// The launch shape of a kernel with one thread per (row, column) of `planes` planes: blocks of
// 32 x 8 threads (a warp takes 32 consecutive columns of one row), grid (columns / 32, rows / 8,
// planes); more than 65535 planes are covered by the kernel's loop over planes with stride gridDim.z.
// Host side; the kernels are in pooling.cuh and upsample.cuh.
#include <cstdint>

#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

inline constexpr unsigned spatial_block_x = 32, spatial_block_y = 8;
struct SpatialGrid {
  dim3 grid, block;
};
inline SpatialGrid spatial_grid(std::int64_t rows, std::int64_t cols, std::int64_t planes) {
  const auto blocks = [](std::int64_t n, unsigned per) { return static_cast<unsigned>((n + per - 1) / per); };
  const std::int64_t z = planes < 65535 ? planes : 65535;  // the kernels loop over planes with stride gridDim.z
  return {dim3(blocks(cols, spatial_block_x), blocks(rows, spatial_block_y), static_cast<unsigned>(z)),
          dim3(spatial_block_x, spatial_block_y)};
}

}  // namespace kiln::cuda::kernels
