#pragma once
// MaxPool2d on the CPU: kernel = stride = size, no padding, H and W divisible
// by size. OpenMP over (n, c) planes. The plain loops are cpu::reference::maxpool2d_forward
// (the oracle); the version used has a fixed 2x2 window (the U-Net's) with the same rule.
#include <cmath>
#include <cstdint>

#include "kiln/cpu/separate.hpp"
#include "kiln/ops/pooling.hpp"

namespace kiln::cpu {

using kiln::PoolArgs;

// y[n][c][i][j] = max of the size x size window; argmax receives the index of
// the maximum inside the input plane (ih * w + iw), like PyTorch's indices.
// Ties: the first maximum in row-major window order wins; a NaN wins over
// numbers (PyTorch's CPU rule: `v > best || isnan(v)`).
namespace reference {
inline void maxpool2d_forward(const PoolArgs& a, const float* x, float* y, std::int32_t* argmax) {
  const std::int64_t oh = a.out_h(), ow = a.out_w();
#pragma omp parallel for schedule(static)
  for (std::int64_t plane = 0; plane < a.n * a.c; ++plane) {
    const float* xp = x + plane * a.h * a.w;
    float* yp = y + plane * oh * ow;
    std::int32_t* ap = argmax + plane * oh * ow;
    for (std::int64_t i = 0; i < oh; ++i)
      for (std::int64_t j = 0; j < ow; ++j) {
        std::int64_t best_index = (i * a.size) * a.w + j * a.size;
        float best = xp[best_index];
        for (std::int64_t u = 0; u < a.size; ++u)
          for (std::int64_t v = 0; v < a.size; ++v) {
            const std::int64_t idx = (i * a.size + u) * a.w + (j * a.size + v);
            const float val = xp[idx];
            if (val > best || std::isnan(val)) {
              best = val;
              best_index = idx;
            }
          }
        yp[i * ow + j] = best;
        ap[i * ow + j] = static_cast<std::int32_t>(best_index);
      }
  }
}
}  // namespace reference

// What the layers call, declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) defined in
// one unit of the program only.
void maxpool2d_forward(const PoolArgs& a, const float* x, float* y, std::int32_t* argmax);
void maxpool2d_backward(const PoolArgs& a, const std::int32_t* argmax, const float* dy, float* dx);

#if KILN_CPU_ENTRY_DEFINITIONS
// The 2x2 window without the general loops (which cost ~10x a copy of the data): the three
// candidates after the first are tested in the reference's order with its rule, so values and
// indices are bitwise the same, NaN and ties included.
KILN_CPU_ENTRY void maxpool2d_forward(const PoolArgs& a, const float* x, float* y, std::int32_t* argmax) {
  if (a.size != 2) return reference::maxpool2d_forward(a, x, y, argmax);
  const std::int64_t oh = a.out_h(), ow = a.out_w(), w = a.w;
  const auto w32 = static_cast<std::int32_t>(w);  // indices are int32, as in the reference
#pragma omp parallel for schedule(static)
  for (std::int64_t plane = 0; plane < a.n * a.c; ++plane) {
    const float* xp = x + plane * a.h * w;
    float* yp = y + plane * oh * ow;
    std::int32_t* ap = argmax + plane * oh * ow;
    for (std::int64_t i = 0; i < oh; ++i) {
      const float* r0 = xp + 2 * i * w;
      const float* r1 = r0 + w;
      const auto row = static_cast<std::int32_t>(2 * i * w);
      for (std::int64_t j = 0; j < ow; ++j) {
        const auto base = row + static_cast<std::int32_t>(2 * j);
        float best = r0[2 * j];  // a NaN here stays unless a later NaN follows: as the reference
        std::int32_t at = base;
        const float c1 = r0[2 * j + 1], c2 = r1[2 * j], c3 = r1[2 * j + 1];
        if (c1 > best || std::isnan(c1)) {
          best = c1;
          at = base + 1;
        }
        if (c2 > best || std::isnan(c2)) {
          best = c2;
          at = base + w32;
        }
        if (c3 > best || std::isnan(c3)) {
          best = c3;
          at = base + w32 + 1;
        }
        yp[i * ow + j] = best;
        ap[i * ow + j] = at;
      }
    }
  }
}

// dx (overwritten) = dy routed to the saved arg-max of each window, 0 elsewhere.
KILN_CPU_ENTRY void maxpool2d_backward(const PoolArgs& a, const std::int32_t* argmax, const float* dy, float* dx) {
  const std::int64_t oh = a.out_h(), ow = a.out_w();
#pragma omp parallel for schedule(static)
  for (std::int64_t plane = 0; plane < a.n * a.c; ++plane) {
    float* dp = dx + plane * a.h * a.w;
    for (std::int64_t i = 0; i < a.h * a.w; ++i) dp[i] = 0.0f;
    const float* gp = dy + plane * oh * ow;
    const std::int32_t* ap = argmax + plane * oh * ow;
    for (std::int64_t i = 0; i < oh * ow; ++i) dp[ap[i]] += gp[i];  // windows do not overlap
  }
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::cpu
