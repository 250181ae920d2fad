#pragma once
// The colour-space maths (sRGB <-> CIE L*a*b*, 8-bit helpers) under kiln::io, where image code
// calls it; it is device-neutral and lives in kiln/ops/color.hpp. Named one by one, so that
// kiln::io does not take in the rest of kiln::color (the colorizer's module, kiln/color/).
#include "kiln/ops/color.hpp"

namespace kiln::io {
using color::clamp01;
using color::from_8bit;
using color::kLabDelta;
using color::kLabDelta3;
using color::kLabOffset;
using color::kLabSlope;
using color::kWhiteX;
using color::kWhiteY;
using color::kWhiteZ;
using color::Lab;
using color::lab_f;
using color::lab_f_inverse;
using color::lab_to_rgb_planar;
using color::lab_to_srgb;
using color::lab_to_xyz;
using color::linear_rgb_luminance;
using color::linear_rgb_to_xyz;
using color::linear_to_srgb;
using color::Rgb;
using color::rgb_to_lab_planar;
using color::srgb8_to_lab;
using color::srgb_grey_to_L;
using color::srgb_to_lab;
using color::srgb_to_linear;
using color::to_8bit;
using color::Xyz;
using color::xyz_to_lab;
using color::xyz_to_linear_rgb;
}  // namespace kiln::io
