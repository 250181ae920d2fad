#pragma once
// Conv2d on the CPU: stride 1, zero padding K/2, NCHW, weight [Cout, Cin, K, K].
// reference:: holds the plain loops (the oracle every other version is tested
// against); the im2col + GEMM versions below are what layers call.
#include <cstddef>
#include <cstdint>

#include <omp.h>

#include "kiln/core/conv_shape.hpp"
#include "kiln/cpu/gemm.hpp"

namespace kiln::cpu {

using kiln::ConvShape;

namespace reference {

inline void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y) {
  const std::int64_t p = s.pad();
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < s.h; ++i)
        for (std::int64_t j = 0; j < s.w; ++j) {
          double acc = b ? b[o] : 0.0;
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < s.k; ++u)
              for (std::int64_t v = 0; v < s.k; ++v) {
                const std::int64_t ii = i + u - p, jj = j + v - p;
                if (ii < 0 || ii >= s.h || jj < 0 || jj >= s.w) continue;
                acc += static_cast<double>(x[((n * s.c_in + c) * s.h + ii) * s.w + jj]) *
                       w[((o * s.c_in + c) * s.k + u) * s.k + v];
              }
          y[((n * s.c_out + o) * s.h + i) * s.w + j] = static_cast<float>(acc);
        }
}

// dx = conv_transpose(dy, w) (overwritten); dw, db accumulated (+=).
inline void conv2d_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                            float* db) {
  const std::int64_t p = s.pad();
  if (dx)
    for (std::int64_t i = 0; i < s.n * s.c_in * s.hw(); ++i) dx[i] = 0.0f;
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < s.h; ++i)
        for (std::int64_t j = 0; j < s.w; ++j) {
          const float g = dy[((n * s.c_out + o) * s.h + i) * s.w + j];
          if (db) db[o] += g;
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < s.k; ++u)
              for (std::int64_t v = 0; v < s.k; ++v) {
                const std::int64_t ii = i + u - p, jj = j + v - p;
                if (ii < 0 || ii >= s.h || jj < 0 || jj >= s.w) continue;
                const std::int64_t xi = ((n * s.c_in + c) * s.h + ii) * s.w + jj;
                const std::int64_t wi = ((o * s.c_in + c) * s.k + u) * s.k + v;
                if (dx) dx[xi] += g * w[wi];
                if (dw) dw[wi] += g * x[xi];
              }
        }
}

}  // namespace reference

// col[(c*K + u)*K + v][i*W + j] = x[c][i + u - p][j + v - p] (0 outside): one image.
inline void im2col(const ConvShape& s, const float* x, float* col) {
  const std::int64_t p = s.pad();
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < s.c_in; ++c)
    for (std::int64_t u = 0; u < s.k; ++u)
      for (std::int64_t v = 0; v < s.k; ++v) {
        float* row = col + ((c * s.k + u) * s.k + v) * s.hw();
        const float* plane = x + c * s.hw();
        for (std::int64_t i = 0; i < s.h; ++i) {
          const std::int64_t ii = i + u - p;
          float* out = row + i * s.w;
          if (ii < 0 || ii >= s.h) {
            for (std::int64_t j = 0; j < s.w; ++j) out[j] = 0.0f;
            continue;
          }
          for (std::int64_t j = 0; j < s.w; ++j) {
            const std::int64_t jj = j + v - p;
            out[j] = (jj >= 0 && jj < s.w) ? plane[ii * s.w + jj] : 0.0f;
          }
        }
      }
}

// The adjoint of im2col: dx[c][..] = sum of the col entries that read it.
// Parallel over input channels: channel c only receives rows c*K*K..c*K*K+K*K-1.
inline void col2im(const ConvShape& s, const float* col, float* dx) {
  const std::int64_t p = s.pad();
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < s.c_in; ++c) {
    float* plane = dx + c * s.hw();
    for (std::int64_t i = 0; i < s.hw(); ++i) plane[i] = 0.0f;
    for (std::int64_t u = 0; u < s.k; ++u)
      for (std::int64_t v = 0; v < s.k; ++v) {
        const float* row = col + ((c * s.k + u) * s.k + v) * s.hw();
        for (std::int64_t i = 0; i < s.h; ++i) {
          const std::int64_t ii = i + u - p;
          if (ii < 0 || ii >= s.h) continue;
          for (std::int64_t j = 0; j < s.w; ++j) {
            const std::int64_t jj = j + v - p;
            if (jj >= 0 && jj < s.w) plane[ii * s.w + jj] += row[i * s.w + j];
          }
        }
      }
  }
}

// Threads the batch is split over: with fewer images than threads the
// parallelism moves inside the GEMMs instead (batch-1 inference).
inline int conv2d_batch_threads(const ConvShape& s) {
  const int threads = omp_get_max_threads();
  return s.n >= threads ? threads : 1;
}

// Floats of scratch: per batch thread, one im2col matrix (none for 1x1) and a
// private weight- and bias-gradient accumulator.
inline std::size_t conv2d_workspace_floats(const ConvShape& s) {
  const std::size_t col = s.k == 1 ? 0 : static_cast<std::size_t>(s.patch() * s.hw());
  const std::size_t grads = static_cast<std::size_t>(s.c_out * s.patch() + s.c_out);
  return static_cast<std::size_t>(conv2d_batch_threads(s)) * (col + grads);
}

inline float* conv2d_thread_workspace(const ConvShape& s, float* workspace, int thread) {
  const std::size_t col = s.k == 1 ? 0 : static_cast<std::size_t>(s.patch() * s.hw());
  const std::size_t grads = static_cast<std::size_t>(s.c_out * s.patch() + s.c_out);
  return workspace + static_cast<std::size_t>(thread) * (col + grads);
}

// y = conv(x, w) + b. Images are split over threads (one parallel region per
// call: many small regions stall when the cores are shared); inside a thread
// the GEMM runs serially because nested parallelism is off.
inline void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                           float* workspace) {
  const int threads = conv2d_batch_threads(s);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t n = 0; n < s.n; ++n) {
    float* scratch = conv2d_thread_workspace(s, workspace, omp_get_thread_num());
    const float* xn = x + n * s.c_in * s.hw();
    float* yn = y + n * s.c_out * s.hw();
    const float* col = xn;
    if (s.k != 1) {
      im2col(s, xn, scratch);
      col = scratch;
    }
    gemm_nn(s.c_out, s.hw(), s.patch(), w, col, yn, false);
    if (b) {
      for (std::int64_t o = 0; o < s.c_out; ++o)
        for (std::int64_t i = 0; i < s.hw(); ++i) yn[o * s.hw() + i] += b[o];
    }
  }
}

// dx overwritten (may be null: the first layer of a network needs none);
// dw and db accumulated. Each batch thread sums its images' weight gradients
// privately; the partial sums are added in thread order (deterministic).
inline void conv2d_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                            float* db, float* workspace) {
  const int threads = conv2d_batch_threads(s);
  const std::int64_t wsize = s.c_out * s.patch();
  const std::size_t col_floats = s.k == 1 ? 0 : static_cast<std::size_t>(s.patch() * s.hw());
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num();
    float* scratch = conv2d_thread_workspace(s, workspace, t);
    float* dw_part = scratch + col_floats;
    float* db_part = dw_part + wsize;
    for (std::int64_t i = 0; i < wsize + s.c_out; ++i) dw_part[i] = 0.0f;
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < s.n; ++n) {
      const float* xn = x + n * s.c_in * s.hw();
      const float* dyn = dy + n * s.c_out * s.hw();
      if (db) {
        for (std::int64_t o = 0; o < s.c_out; ++o) {
          float sum = 0.0f;
          for (std::int64_t i = 0; i < s.hw(); ++i) sum += dyn[o * s.hw() + i];
          db_part[o] += sum;
        }
      }
      if (dw) {
        const float* col = xn;
        if (s.k != 1) {
          im2col(s, xn, scratch);
          col = scratch;
        }
        gemm_nt(s.c_out, s.patch(), s.hw(), dyn, col, dw_part, true);
      }
      if (dx) {
        float* dxn = dx + n * s.c_in * s.hw();
        if (s.k == 1) {
          gemm_tn(s.c_in, s.hw(), s.c_out, w, dyn, dxn, false);
        } else {
          gemm_tn(s.patch(), s.hw(), s.c_out, w, dyn, scratch, false);
          col2im(s, scratch, dxn);
        }
      }
    }
  }
  for (int t = 0; t < threads; ++t) {
    const float* dw_part = conv2d_thread_workspace(s, workspace, t) + col_floats;
    if (dw)
      for (std::int64_t i = 0; i < wsize; ++i) dw[i] += dw_part[i];
    if (db)
      for (std::int64_t o = 0; o < s.c_out; ++o) db[o] += dw_part[wsize + o];
  }
}

}  // namespace kiln::cpu
