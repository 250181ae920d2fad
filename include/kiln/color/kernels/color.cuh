#pragma once
// Colour conversion per pixel on the device: sRGB (0..1) <-> CIE L*a*b* (D65), on planar images
// [N, 3, H, W], with the CPU's scalar maths (kiln/ops/color.hpp, KILN_HD functions). Launched by
// ColourOps<Cuda> (kiln/color/cuda.hpp) on pixel_grid(HW, N) (kernels/spatial_grid.cuh): the image
// and the pixel come from the block and thread indices, no division per pixel.
#include <cstdint>

#include "kiln/gpu/gpu.hpp"
#include "kiln/ops/color.hpp"
#include "spatial_grid.cuh"

namespace kiln::color::kernels {

// lab[n][0..2][p] = srgb_to_lab(rgb[n][0..2][p]); one thread per pixel. May alias fully.
template <class Float>
__global__ void srgb_to_lab_kernel(const Float* rgb, Float* lab, std::int64_t n, std::int64_t hw) {
  const std::int64_t p = kiln::cuda::kernels::grid_pixel();
  if (p >= hw) return;
  for (std::int64_t i = blockIdx.y; i < n; i += gridDim.y) {
    const std::int64_t base = i * 3 * hw + p;
    const kiln::color::Lab c = kiln::color::srgb_to_lab({rgb[base], rgb[base + hw], rgb[base + 2 * hw]});
    lab[base] = c.L;
    lab[base + hw] = c.a;
    lab[base + 2 * hw] = c.b;
  }
}

// rgb = lab_to_srgb(lab) (clamped to the gamut in linear light); one thread per pixel.
template <class Float>
__global__ void lab_to_srgb_kernel(const Float* lab, Float* rgb, std::int64_t n, std::int64_t hw) {
  const std::int64_t p = kiln::cuda::kernels::grid_pixel();
  if (p >= hw) return;
  for (std::int64_t i = blockIdx.y; i < n; i += gridDim.y) {
    const std::int64_t base = i * 3 * hw + p;
    const kiln::color::Rgb c = kiln::color::lab_to_srgb({lab[base], lab[base + hw], lab[base + 2 * hw]});
    rgb[base] = c.r;
    rgb[base + hw] = c.g;
    rgb[base + 2 * hw] = c.b;
  }
}

}  // namespace kiln::color::kernels
