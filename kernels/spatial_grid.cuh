#pragma once
// The launch shape of a kernel with one thread per (row, column) of `planes` planes: blocks of
// 32 x 8 threads (a warp takes 32 consecutive columns of one row), grid (columns / 32, rows / 8,
// planes); more than 65535 planes are covered by the kernel's loop over planes with stride gridDim.z.
// The kernels are in pooling.cuh, upsample.cuh and conv2d_strided.cuh.
// pixel_grid: one thread per pixel of each of `images` images of hw pixels (the per-pixel kernels
// over [N, C, HW] tensors: softmax_xent.cuh, kiln/color/kernels/): 1-D blocks of 256 along the
// pixels (x), one image per blockIdx.y, looped with stride gridDim.y past 65535 images. The image and
// the pixel come from block and thread indices: no division per pixel.
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

inline constexpr unsigned pixel_block = 256;
inline SpatialGrid pixel_grid(std::int64_t hw, std::int64_t images) {
  const std::int64_t y = images < 65535 ? images : 65535;  // the kernels loop over images with stride gridDim.y
  return {dim3(static_cast<unsigned>((hw + pixel_block - 1) / pixel_block), static_cast<unsigned>(y)),
          dim3(pixel_block)};
}
// The (image n, channel c) of the planes a thread visits under spatial_grid with planes = N * C:
// plane blockIdx.z first, then every gridDim.z-th, stepped with adds (two divisions before the loop,
// none in it):  for (PlaneCursor p(C); p.n < N; p.next()) ...
struct PlaneCursor {
  std::int64_t n, c, channels, dn, dc;
  __device__ explicit PlaneCursor(std::int64_t channels_) : channels(channels_) {
    n = blockIdx.z / channels;
    c = blockIdx.z - n * channels;
    dn = gridDim.z / channels;
    dc = gridDim.z - dn * channels;
  }
  __device__ __forceinline__ void next() {
    n += dn;
    c += dc;
    if (c >= channels) {
      c -= channels;
      ++n;
    }
  }
};

// The pixel (in [0, hw)) of this thread under pixel_grid.
__device__ __forceinline__ std::int64_t grid_pixel() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

}  // namespace kiln::cuda::kernels
