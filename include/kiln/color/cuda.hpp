#pragma once
// ColourOps<Cuda>: the colour module's kernels (color/kernels/*.cuh) launched on kiln::Cuda, through
// the library's launch path (kiln/cuda/launch.hpp: the current stream, the emulator without nvcc).
// Include it after <kiln/cuda.hpp> where the colour layers run on kiln::Cuda.
#include <cstdint>
#include <utility>

#include "kiln/color/colour_ops.hpp"
#include "kiln/color/kernels/color.cuh"  // (and spatial_grid.cuh: pixel_grid)
#include "kiln/color/kernels/colour_classes.cuh"
#include "kiln/cuda/launch.hpp"
#include "kiln/cuda/memory.hpp"

namespace kiln::color {

template <>
inline constexpr bool colour_ops_included<Cuda> = true;

template <>
struct ColourOps<Cuda> {
  using T = Tensor<float, Cuda>;

  // bin_weights and pixel_weights may be empty.
  static void ab_soft_encode_forward(const AbEncodeArgs& a, const T& ab, const T& centres, const T& bin_weights,
                                     T& targets, T& pixel_weights) {
    launch_pixels(KILN_CUDA_KERNEL_FLOAT_IN(kernels, ab_soft_encode_forward_kernel), a.hw, a.n, a, ab.data(),
                  centres.data(), ptr(bin_weights), targets.data(), ptr(pixel_weights));
  }
  static void ab_soft_encode_backward(const AbEncodeArgs& a, const T& centres, const T& targets, const T& dtargets,
                                      T& dab) {
    launch_pixels(KILN_CUDA_KERNEL_FLOAT_IN(kernels, ab_soft_encode_backward_kernel), a.hw, a.n, a, centres.data(),
                  targets.data(), dtargets.data(), dab.data());
  }
  static void annealed_mean_forward(const AnnealedMeanArgs& a, const T& logits, const T& centres, T& ab) {
    launch_pixels(KILN_CUDA_KERNEL_FLOAT_IN(kernels, annealed_mean_forward_kernel), a.hw, a.n, a, logits.data(),
                  centres.data(), ab.data());
  }
  static void annealed_mean_backward(const AnnealedMeanArgs& a, const T& logits, const T& centres, const T& ab,
                                     const T& dab, T& dlogits) {
    launch_pixels(KILN_CUDA_KERNEL_FLOAT_IN(kernels, annealed_mean_backward_kernel), a.hw, a.n, a, logits.data(),
                  centres.data(), ab.data(), dab.data(), dlogits.data());
  }

  // One thread per pixel; `lab` may be `rgb` itself.
  static void srgb_to_lab(const T& rgb, T& lab) {
    detail::check_colour_planes(rgb, lab, "Cuda", "srgb_to_lab");
    const std::int64_t hw = rgb.shape().h() * rgb.shape().w();
    if (rgb.numel() == 0) return;
    launch_pixels(KILN_CUDA_KERNEL_FLOAT_IN(kernels, srgb_to_lab_kernel), hw, rgb.shape().n(), rgb.data(), lab.data(),
                  rgb.shape().n(), hw);
  }
  // Out-of-gamut colours clamped in linear light.
  static void lab_to_srgb(const T& lab, T& rgb) {
    detail::check_colour_planes(lab, rgb, "Cuda", "lab_to_srgb");
    const std::int64_t hw = lab.shape().h() * lab.shape().w();
    if (lab.numel() == 0) return;
    launch_pixels(KILN_CUDA_KERNEL_FLOAT_IN(kernels, lab_to_srgb_kernel), hw, lab.shape().n(), lab.data(), rgb.data(),
                  lab.shape().n(), hw);
  }

 private:
  // One thread per pixel of each image (kernels/spatial_grid.cuh's pixel_grid); nothing for no pixels.
  template <class... Params, class... Args>
  static void launch_pixels(const kiln::cuda::Kernel<Params...>& k, std::int64_t hw, std::int64_t images,
                            Args&&... args) {
    if (hw <= 0 || images <= 0) return;
    const auto g = kiln::cuda::kernels::pixel_grid(hw, images);
    kiln::cuda::launch(k, g.grid, g.block, 0, std::forward<Args>(args)...);
  }
  static float* ptr(T& t) { return t.empty() ? nullptr : t.data(); }
  static const float* ptr(const T& t) { return t.empty() ? nullptr : t.data(); }
};

static_assert(ColourOpsTable<Cuda>, "kiln::color: ColourOps<Cuda> lacks a member of ColourOpsTable");

}  // namespace kiln::color
