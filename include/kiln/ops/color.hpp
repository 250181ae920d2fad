// kiln/ops/color.hpp — sRGB <-> linear RGB <-> CIE XYZ (D65) <-> CIE L*a*b*. (The scaling a
// colorization network sees is the colorizer's: kiln/color/scaling.hpp.)
//
// The chain is the textbook one (IEC 61966-2-1 sRGB, CIE 1976 L*a*b*):
//   sRGB in 0..1  --transfer curve-->  linear RGB  --3x3 matrix-->  XYZ (D65)  --f(t)-->  Lab
// L is 0..100; a and b are roughly -110..110 for colours inside the sRGB gamut
// (the extremes are about a in [-86.2, 98.3], b in [-107.9, 94.5]).
//
// The scalar functions are marked KILN_HD (ops/host_device.hpp) so a CUDA kernel
// (kiln/color/kernels/color.cuh) calls the same code as the CPU.
// They use only the C math functions that CUDA also provides on the device (powf, cbrtf).
#pragma once

#include <math.h>  // powf, cbrtf, fminf, fmaxf: also available in CUDA device code

#include <cstddef>
#include <cstdint>

#include "kiln/ops/host_device.hpp"

namespace kiln::color {

struct Rgb {
  float r, g, b;
};
struct Xyz {
  float x, y, z;
};
struct Lab {
  float L, a, b;
};

// ---- constants ----------------------------------------------------------------------------
// D65 reference white (2° observer), as in the sRGB standard.
inline constexpr float kWhiteX = 0.95047f;
inline constexpr float kWhiteY = 1.00000f;
inline constexpr float kWhiteZ = 1.08883f;

// CIE f(t): cube root above (6/29)^3, a straight line below (keeps the slope finite at 0).
inline constexpr float kLabDelta = 6.0f / 29.0f;
inline constexpr float kLabDelta3 = kLabDelta * kLabDelta * kLabDelta;     // 0.008856
inline constexpr float kLabSlope = 1.0f / (3.0f * kLabDelta * kLabDelta);  // 7.787
inline constexpr float kLabOffset = 4.0f / 29.0f;

// ---- sRGB transfer curve ------------------------------------------------------------------
// Encoded sRGB value (0..1) -> linear light. Values outside 0..1 follow the same formula
// mirrored through 0, so the functions stay monotonic and never produce NaN.
KILN_HD inline float srgb_to_linear(float c) {
  const float m = fabsf(c);
  const float v = m <= 0.04045f ? m / 12.92f : powf((m + 0.055f) / 1.055f, 2.4f);
  return c < 0.0f ? -v : v;
}

KILN_HD inline float linear_to_srgb(float l) {
  const float m = fabsf(l);
  const float v = m <= 0.0031308f ? 12.92f * m : 1.055f * powf(m, 1.0f / 2.4f) - 0.055f;
  return l < 0.0f ? -v : v;
}

// ---- linear RGB <-> XYZ (sRGB primaries, D65) ----------------------------------------------
KILN_HD inline Xyz linear_rgb_to_xyz(Rgb c) {
  return {0.4124564f * c.r + 0.3575761f * c.g + 0.1804375f * c.b,
          0.2126729f * c.r + 0.7151522f * c.g + 0.0721750f * c.b,
          0.0193339f * c.r + 0.1191920f * c.g + 0.9503041f * c.b};
}

KILN_HD inline Rgb xyz_to_linear_rgb(Xyz c) {
  return {3.2404542f * c.x - 1.5371385f * c.y - 0.4985314f * c.z,
          -0.9692660f * c.x + 1.8760108f * c.y + 0.0415560f * c.z,
          0.0556434f * c.x - 0.2040259f * c.y + 1.0572252f * c.z};
}

// The luminance row of the matrix above: Y of a linear-RGB colour. L* depends on Y only.
KILN_HD inline float linear_rgb_luminance(float r, float g, float b) {
  return 0.2126729f * r + 0.7151522f * g + 0.0721750f * b;
}

// ---- XYZ <-> Lab --------------------------------------------------------------------------
KILN_HD inline float lab_f(float t) { return t > kLabDelta3 ? cbrtf(t) : t * kLabSlope + kLabOffset; }
KILN_HD inline float lab_f_inverse(float ft) { return ft > kLabDelta ? ft * ft * ft : (ft - kLabOffset) / kLabSlope; }

KILN_HD inline Lab xyz_to_lab(Xyz c) {
  const float fx = lab_f(c.x / kWhiteX);
  const float fy = lab_f(c.y / kWhiteY);
  const float fz = lab_f(c.z / kWhiteZ);
  return {116.0f * fy - 16.0f, 500.0f * (fx - fy), 200.0f * (fy - fz)};
}

KILN_HD inline Xyz lab_to_xyz(Lab c) {
  const float fy = (c.L + 16.0f) / 116.0f;
  const float fx = fy + c.a / 500.0f;
  const float fz = fy - c.b / 200.0f;
  return {kWhiteX * lab_f_inverse(fx), kWhiteY * lab_f_inverse(fy), kWhiteZ * lab_f_inverse(fz)};
}

// ---- the whole chain ----------------------------------------------------------------------
// sRGB in 0..1 -> Lab.
KILN_HD inline Lab srgb_to_lab(Rgb c) {
  return xyz_to_lab(linear_rgb_to_xyz({srgb_to_linear(c.r), srgb_to_linear(c.g), srgb_to_linear(c.b)}));
}

KILN_HD inline float clamp01(float v) { return fminf(fmaxf(v, 0.0f), 1.0f); }

// Lab -> sRGB in 0..1. A Lab colour outside the sRGB gamut (the network can predict one) is
// clamped channel by channel in linear light: simple, and it never returns NaN or values
// outside 0..1. (Clamping keeps hue only approximately; fine for display.)
KILN_HD inline Rgb lab_to_srgb(Lab c) {
  const Rgb lin = xyz_to_linear_rgb(lab_to_xyz(c));
  return {linear_to_srgb(clamp01(lin.r)), linear_to_srgb(clamp01(lin.g)), linear_to_srgb(clamp01(lin.b))};
}

// The L* of an sRGB grey level v (0..1): the same for r = g = b = v.
KILN_HD inline float srgb_grey_to_L(float v) { return 116.0f * lab_f(srgb_to_linear(v)) - 16.0f; }

// ---- 8-bit helpers ------------------------------------------------------------------------
KILN_HD inline float from_8bit(std::uint8_t v) { return static_cast<float>(v) / 255.0f; }
// Rounds to nearest and clamps (NaN becomes 0).
KILN_HD inline std::uint8_t to_8bit(float v) {
  const float c = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
  return static_cast<std::uint8_t>(c * 255.0f + 0.5f);
}

KILN_HD inline Lab srgb8_to_lab(std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  return srgb_to_lab({from_8bit(r), from_8bit(g), from_8bit(b)});
}

// ---- bulk conversions over planar buffers ---------------------------------------------------
// Planar (one array per channel) because that is the network's NCHW layout. Input and output
// arrays may not alias each other partially; fully aliasing (r == L etc.) is fine because each
// element is read before it is written.
inline void rgb_to_lab_planar(const float* r, const float* g, const float* b, float* L, float* a, float* b_out,
                              std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const Lab lab = srgb_to_lab({r[i], g[i], b[i]});
    L[i] = lab.L;
    a[i] = lab.a;
    b_out[i] = lab.b;
  }
}

// Lab -> sRGB 0..1, clamped to the gamut as in lab_to_srgb.
inline void lab_to_rgb_planar(const float* L, const float* a, const float* b, float* r, float* g, float* b_out,
                              std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const Rgb rgb = lab_to_srgb({L[i], a[i], b[i]});
    r[i] = rgb.r;
    g[i] = rgb.g;
    b_out[i] = rgb.b;
  }
}

}  // namespace kiln::color
