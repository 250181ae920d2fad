#pragma once
// kiln::color::ColourOps<Device>: the colorizer's own device table, built like the library's
// Backend<D> but living with the colour module, so that the library knows nothing of colour. The
// colour layers (AbSoftEncode, AnnealedMean) call only these; ColourOps<Cpu> is here (CPU loops:
// color/cpu/colour_classes.hpp), ColourOps<Cuda> in <kiln/color/cuda.hpp> (kernels:
// color/kernels/*.cuh, launched through kiln/cuda/launch.hpp). Both tables have the same members,
// checked by ColourOpsTable after each.
#include <cstdint>

#include "kiln/color/cpu/colour_classes.hpp"
#include "kiln/color/ops/colour_classes.hpp"
#include "kiln/core/device.hpp"
#include "kiln/core/error.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/ops/color.hpp"

namespace kiln::color {

// Whether a device's ColourOps table is included (the Cuda one comes with <kiln/color/cuda.hpp>).
template <class Device>
inline constexpr bool colour_ops_included = false;

template <class Device>
struct ColourOps {
  static_assert(colour_ops_included<Device>,
                "kiln::color: no colour ops for this device are included: include <kiln/color/cuda.hpp> "
                "(after <kiln/cuda.hpp>) to use the colour layers on kiln::Cuda");
};

// Every member of a ColourOps table.
//   ab_soft_encode_forward(args, ab, centres, bin_weights, targets, pixel_weights)  (weights may be empty)
//   ab_soft_encode_backward(args, centres, targets, dtargets, dab)
//   annealed_mean_forward(args, logits, centres, ab); annealed_mean_backward(args, logits, centres, ab, dab, dlogits)
//   srgb_to_lab(rgb, lab), lab_to_srgb(lab, rgb): [N, 3, H, W] sRGB 0..1 <-> L*a*b*; may alias fully.
template <class D, class B = ColourOps<D>>
concept ColourOpsTable = requires(const AbEncodeArgs& enc, const AnnealedMeanArgs& mean, const Tensor<float, D>& c,
                                  Tensor<float, D>& m) {
  B::ab_soft_encode_forward(enc, c, c, c, m, m);
  B::ab_soft_encode_backward(enc, c, c, c, m);
  B::annealed_mean_forward(mean, c, c, m);
  B::annealed_mean_backward(mean, c, c, c, c, m);
  B::srgb_to_lab(c, m);
  B::lab_to_srgb(c, m);
};

namespace detail {
// Both colour conversions take two [N, 3, H, W] tensors of one shape.
template <class D>
void check_colour_planes(const Tensor<float, D>& in, const Tensor<float, D>& out, const char* device,
                         const char* what) {
  KILN_CHECK(in.shape().rank() == 4 && in.shape().c() == 3 && in.shape() == out.shape(), "ColourOps<", device,
             ">::", what, ": expected two [N, 3, H, W] tensors, got ", in.shape().str(), " and ", out.shape().str());
}
}  // namespace detail

template <>
inline constexpr bool colour_ops_included<Cpu> = true;

template <>
struct ColourOps<Cpu> {
  using T = Tensor<float, Cpu>;

  // bin_weights and pixel_weights may be empty.
  static void ab_soft_encode_forward(const AbEncodeArgs& a, const T& ab, const T& centres, const T& bin_weights,
                                     T& targets, T& pixel_weights) {
    cpu::ab_soft_encode_forward(a, ab.data(), centres.data(), bin_weights.empty() ? nullptr : bin_weights.data(),
                                targets.data(), pixel_weights.empty() ? nullptr : pixel_weights.data());
  }
  static void ab_soft_encode_backward(const AbEncodeArgs& a, const T& centres, const T& targets, const T& dtargets,
                                      T& dab) {
    cpu::ab_soft_encode_backward(a, centres.data(), targets.data(), dtargets.data(), dab.data());
  }
  static void annealed_mean_forward(const AnnealedMeanArgs& a, const T& logits, const T& centres, T& ab) {
    cpu::annealed_mean_forward(a, logits.data(), centres.data(), ab.data());
  }
  static void annealed_mean_backward(const AnnealedMeanArgs& a, const T& logits, const T& centres, const T& ab,
                                     const T& dab, T& dlogits) {
    cpu::annealed_mean_backward(a, logits.data(), centres.data(), ab.data(), dab.data(), dlogits.data());
  }

  // Image by image with ops/color.hpp's planar loops (the ones kiln::io converts with).
  static void srgb_to_lab(const T& rgb, T& lab) {
    detail::check_colour_planes(rgb, lab, "Cpu", "srgb_to_lab");
    const std::int64_t hw = rgb.shape().h() * rgb.shape().w();
    for (std::int64_t i = 0; i < rgb.shape().n(); ++i) {
      const float* p = rgb.data() + i * 3 * hw;
      float* q = lab.data() + i * 3 * hw;
      rgb_to_lab_planar(p, p + hw, p + 2 * hw, q, q + hw, q + 2 * hw, static_cast<std::size_t>(hw));
    }
  }
  static void lab_to_srgb(const T& lab, T& rgb) {
    detail::check_colour_planes(lab, rgb, "Cpu", "lab_to_srgb");
    const std::int64_t hw = lab.shape().h() * lab.shape().w();
    for (std::int64_t i = 0; i < lab.shape().n(); ++i) {
      const float* p = lab.data() + i * 3 * hw;
      float* q = rgb.data() + i * 3 * hw;
      lab_to_rgb_planar(p, p + hw, p + 2 * hw, q, q + hw, q + 2 * hw, static_cast<std::size_t>(hw));
    }
  }
};

static_assert(ColourOpsTable<Cpu>, "kiln::color: ColourOps<Cpu> lacks a member of ColourOpsTable");

}  // namespace kiln::color
