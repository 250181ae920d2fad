#pragma once
// Conv2d with a stride > 1 on the CPU (kiln::StridedConvShape: zero padding K/2, NCHW, weight
// [Cout, Cin, K, K]): reference-quality direct loops, parallel over independent outputs.
// The stride-1 convolutions of the U-Net keep their fast GEMM paths (cpu/conv2d.hpp).
#include <cstdint>

#include "kiln/core/conv_shape.hpp"
#include "kiln/cpu/separate.hpp"

namespace kiln::cpu {

// Declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) defined in one unit of the program only.
void conv2d_strided_forward(const StridedConvShape& s, const float* x, const float* w, const float* b, float* y);
void conv2d_strided_backward(const StridedConvShape& s, const float* x, const float* w, const float* dy, float* dx,
                             float* dw, float* db);

#if KILN_CPU_ENTRY_DEFINITIONS
// y[n][o][i][j] = b[o] + sum_{c,u,v} x[n][c][i*S+u-P][j*S+v-P] * w[o][c][u][v]
KILN_CPU_ENTRY void conv2d_strided_forward(const StridedConvShape& s, const float* x, const float* w, const float* b,
                                           float* y) {
  const std::int64_t K = s.k, P = s.pad(), S = s.stride, H = s.h, W = s.w, Ho = s.ho(), Wo = s.wo();
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o) {
      float* yp = y + (n * s.c_out + o) * Ho * Wo;
      for (std::int64_t i = 0; i < Ho; ++i)
        for (std::int64_t j = 0; j < Wo; ++j) {
          float acc = 0.0f;
          for (std::int64_t c = 0; c < s.c_in; ++c) {
            const float* xp = x + (n * s.c_in + c) * H * W;
            const float* wp = w + (o * s.c_in + c) * K * K;
            for (std::int64_t u = 0; u < K; ++u) {
              const std::int64_t ii = i * S + u - P;
              if (ii < 0 || ii >= H) continue;
              for (std::int64_t v = 0; v < K; ++v) {
                const std::int64_t jj = j * S + v - P;
                if (jj >= 0 && jj < W) acc += xp[ii * W + jj] * wp[u * K + v];
              }
            }
          }
          yp[i * Wo + j] = acc + (b ? b[o] : 0.0f);
        }
    }
}

// dx overwritten (if not null); dw, db accumulated (if not null).
// dx[n][c][ii][jj] = sum over (o, u, v) with ii = i*S+u-P, jj = j*S+v-P of dy[n][o][i][j] * w[o][c][u][v]
// dw[o][c][u][v] += sum_{n,i,j} dy[n][o][i][j] * x[n][c][i*S+u-P][j*S+v-P]
// db[o] += sum_{n,i,j} dy[n][o][i][j]
KILN_CPU_ENTRY void conv2d_strided_backward(const StridedConvShape& s, const float* x, const float* w, const float* dy,
                                            float* dx, float* dw, float* db) {
  const std::int64_t K = s.k, P = s.pad(), S = s.stride, H = s.h, W = s.w, Ho = s.ho(), Wo = s.wo();
  if (dx) {
#pragma omp parallel for collapse(2) schedule(static)
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < s.c_in; ++c) {
        float* dxp = dx + (n * s.c_in + c) * H * W;
        for (std::int64_t q = 0; q < H * W; ++q) dxp[q] = 0.0f;
        for (std::int64_t o = 0; o < s.c_out; ++o) {
          const float* g = dy + (n * s.c_out + o) * Ho * Wo;
          const float* wp = w + (o * s.c_in + c) * K * K;
          for (std::int64_t i = 0; i < Ho; ++i)
            for (std::int64_t u = 0; u < K; ++u) {
              const std::int64_t ii = i * S + u - P;
              if (ii < 0 || ii >= H) continue;
              for (std::int64_t j = 0; j < Wo; ++j)
                for (std::int64_t v = 0; v < K; ++v) {
                  const std::int64_t jj = j * S + v - P;
                  if (jj >= 0 && jj < W) dxp[ii * W + jj] += g[i * Wo + j] * wp[u * K + v];
                }
            }
        }
      }
  }
  if (dw) {
#pragma omp parallel for collapse(2) schedule(static)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t c = 0; c < s.c_in; ++c)
        for (std::int64_t u = 0; u < K; ++u)
          for (std::int64_t v = 0; v < K; ++v) {
            double acc = 0.0;
            for (std::int64_t n = 0; n < s.n; ++n) {
              const float* g = dy + (n * s.c_out + o) * Ho * Wo;
              const float* xp = x + (n * s.c_in + c) * H * W;
              for (std::int64_t i = 0; i < Ho; ++i) {
                const std::int64_t ii = i * S + u - P;
                if (ii < 0 || ii >= H) continue;
                for (std::int64_t j = 0; j < Wo; ++j) {
                  const std::int64_t jj = j * S + v - P;
                  if (jj >= 0 && jj < W) acc += static_cast<double>(g[i * Wo + j]) * xp[ii * W + jj];
                }
              }
            }
            dw[((o * s.c_in + c) * K + u) * K + v] += static_cast<float>(acc);
          }
  }
  if (db) {
#pragma omp parallel for schedule(static)
    for (std::int64_t o = 0; o < s.c_out; ++o) {
      double acc = 0.0;
      for (std::int64_t n = 0; n < s.n; ++n) {
        const float* g = dy + (n * s.c_out + o) * Ho * Wo;
        for (std::int64_t q = 0; q < Ho * Wo; ++q) acc += g[q];
      }
      db[o] += static_cast<float>(acc);
    }
  }
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::cpu
