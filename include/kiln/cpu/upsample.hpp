#pragma once
// Upsampling by an integer factor on the CPU: nearest and bilinear
// (align_corners = false), forward and the adjoint. Plain loops, OpenMP over
// (n, c) planes (reference:: keeps the general nearest loops as the oracle of
// the scale-2 fast path).
#include <algorithm>
#include <cstdint>

#include "kiln/cpu/separate.hpp"
#include "kiln/ops/upsample.hpp"

namespace kiln::cpu {

using kiln::UpsampleArgs;

namespace reference {

// y[i][j] = x[i / s][j / s]
inline void upsample_nearest_forward(const UpsampleArgs& a, const float* x, float* y) {
  const std::int64_t oh = a.out_h(), ow = a.out_w();
#pragma omp parallel for schedule(static)
  for (std::int64_t plane = 0; plane < a.n * a.c; ++plane) {
    const float* xp = x + plane * a.h * a.w;
    float* yp = y + plane * oh * ow;
    for (std::int64_t i = 0; i < oh; ++i)
      for (std::int64_t j = 0; j < ow; ++j) yp[i * ow + j] = xp[(i / a.scale) * a.w + j / a.scale];
  }
}

// dx[i][j] = sum of dy over its s x s block (overwritten).
inline void upsample_nearest_backward(const UpsampleArgs& a, const float* dy, float* dx) {
  const std::int64_t oh = a.out_h(), ow = a.out_w();
#pragma omp parallel for schedule(static)
  for (std::int64_t plane = 0; plane < a.n * a.c; ++plane) {
    const float* gp = dy + plane * oh * ow;
    float* dp = dx + plane * a.h * a.w;
    for (std::int64_t i = 0; i < a.h; ++i)
      for (std::int64_t j = 0; j < a.w; ++j) {
        float sum = 0.0f;
        for (std::int64_t u = 0; u < a.scale; ++u)
          for (std::int64_t v = 0; v < a.scale; ++v) sum += gp[(i * a.scale + u) * ow + j * a.scale + v];
        dp[i * a.w + j] = sum;
      }
  }
}

}  // namespace reference

// What the layers call, declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) defined in
// one unit of the program only.
void upsample_nearest_forward(const UpsampleArgs& a, const float* x, float* y);
void upsample_nearest_backward(const UpsampleArgs& a, const float* dy, float* dx);
void upsample_bilinear_forward(const UpsampleArgs& a, const float* x, float* y);
void upsample_bilinear_backward(const UpsampleArgs& a, const float* dy, float* dx);

#if KILN_CPU_ENTRY_DEFINITIONS
// Nearest, what the layers call: scale 2 (the U-Net's) without the per-pixel
// divisions, any other scale through the plain loops. Same values, bit for bit
// (the backward adds a 2 x 2 block in the reference's order).
KILN_CPU_ENTRY void upsample_nearest_forward(const UpsampleArgs& a, const float* x, float* y) {
  if (a.scale != 2) return reference::upsample_nearest_forward(a, x, y);
  const std::int64_t w = a.w, ow = 2 * a.w;
#pragma omp parallel for schedule(static)
  for (std::int64_t row = 0; row < a.n * a.c * a.h; ++row) {  // one input row -> two output rows
    const float* __restrict in = x + row * w;
    float* __restrict out = y + row * 2 * ow;
    for (std::int64_t j = 0; j < w; ++j) out[2 * j] = out[2 * j + 1] = in[j];
    for (std::int64_t j = 0; j < ow; ++j) out[ow + j] = out[j];
  }
}

KILN_CPU_ENTRY void upsample_nearest_backward(const UpsampleArgs& a, const float* dy, float* dx) {
  if (a.scale != 2) return reference::upsample_nearest_backward(a, dy, dx);
  const std::int64_t w = a.w, ow = 2 * a.w;
#pragma omp parallel for schedule(static)
  for (std::int64_t row = 0; row < a.n * a.c * a.h; ++row) {
    const float* __restrict g0 = dy + row * 2 * ow;
    const float* __restrict g1 = g0 + ow;
    float* __restrict d = dx + row * w;
    for (std::int64_t j = 0; j < w; ++j) d[j] = ((g0[2 * j] + g0[2 * j + 1]) + g1[2 * j]) + g1[2 * j + 1];
  }
}

// y[i][j] = sum over the 2 x 2 taps of x weighted by the tap weights.
KILN_CPU_ENTRY void upsample_bilinear_forward(const UpsampleArgs& a, const float* x, float* y) {
  const std::int64_t oh = a.out_h(), ow = a.out_w();
#pragma omp parallel for schedule(static)
  for (std::int64_t plane = 0; plane < a.n * a.c; ++plane) {
    const float* xp = x + plane * a.h * a.w;
    float* yp = y + plane * oh * ow;
    for (std::int64_t i = 0; i < oh; ++i) {
      const BilinearTap r = bilinear_tap(i, a.h, a.scale);
      for (std::int64_t j = 0; j < ow; ++j) {
        const BilinearTap q = bilinear_tap(j, a.w, a.scale);
        yp[i * ow + j] = r.l0 * (q.l0 * xp[r.i0 * a.w + q.i0] + q.l1 * xp[r.i0 * a.w + q.i1]) +
                         r.l1 * (q.l0 * xp[r.i1 * a.w + q.i0] + q.l1 * xp[r.i1 * a.w + q.i1]);
      }
    }
  }
}

// The adjoint: each dy scatters into its 4 taps with the same weights (dx overwritten).
KILN_CPU_ENTRY void upsample_bilinear_backward(const UpsampleArgs& a, const float* dy, float* dx) {
  const std::int64_t oh = a.out_h(), ow = a.out_w();
#pragma omp parallel for schedule(static)
  for (std::int64_t plane = 0; plane < a.n * a.c; ++plane) {
    const float* gp = dy + plane * oh * ow;
    float* dp = dx + plane * a.h * a.w;
    for (std::int64_t i = 0; i < a.h * a.w; ++i) dp[i] = 0.0f;
    for (std::int64_t i = 0; i < oh; ++i) {
      const BilinearTap r = bilinear_tap(i, a.h, a.scale);
      for (std::int64_t j = 0; j < ow; ++j) {
        const BilinearTap q = bilinear_tap(j, a.w, a.scale);
        const float g = gp[i * ow + j];
        dp[r.i0 * a.w + q.i0] += r.l0 * q.l0 * g;
        dp[r.i0 * a.w + q.i1] += r.l0 * q.l1 * g;
        dp[r.i1 * a.w + q.i0] += r.l1 * q.l0 * g;
        dp[r.i1 * a.w + q.i1] += r.l1 * q.l1 * g;
      }
    }
  }
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::cpu
