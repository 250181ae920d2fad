#pragma once
// Element-wise and channel-copy operations on the CPU.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kiln/cpu/separate.hpp"

namespace kiln::cpu {

// Declared first: with KILN_CPU_SEPARATE (kiln/cpu/separate.hpp) defined in one unit of the program only.
void relu_forward(const float* x, float* y, std::int64_t n);
void relu_backward(const float* y, const float* dy, float* dx, std::int64_t n);
void add(const float* a, const float* b, float* out, std::int64_t n);
void concat_channels(const float* a, std::int64_t ca, const float* b, std::int64_t cb, float* y, std::int64_t n,
                     std::int64_t hw);
void split_channels(const float* dy, float* da, std::int64_t ca, float* db, std::int64_t cb, std::int64_t n,
                    std::int64_t hw);

#if KILN_CPU_ENTRY_DEFINITIONS
KILN_CPU_ENTRY void relu_forward(const float* x, float* y, std::int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// dx = dy where the output was positive (PyTorch's convention: 0 at x == 0).
KILN_CPU_ENTRY void relu_backward(const float* y, const float* dy, float* dx, std::int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

KILN_CPU_ENTRY void add(const float* a, const float* b, float* out, std::int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// y[n] = [a[n]; b[n]] along channels; each of a, b is [N, Ca|Cb, HW].
KILN_CPU_ENTRY void concat_channels(const float* a, std::int64_t ca, const float* b, std::int64_t cb, float* y,
                                    std::int64_t n, std::int64_t hw) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    std::memcpy(y + i * (ca + cb) * hw, a + i * ca * hw, sizeof(float) * static_cast<std::size_t>(ca * hw));
    std::memcpy(y + (i * (ca + cb) + ca) * hw, b + i * cb * hw, sizeof(float) * static_cast<std::size_t>(cb * hw));
  }
}

// The adjoint: da, db = the two channel ranges of dy.
KILN_CPU_ENTRY void split_channels(const float* dy, float* da, std::int64_t ca, float* db, std::int64_t cb,
                                   std::int64_t n, std::int64_t hw) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    std::memcpy(da + i * ca * hw, dy + i * (ca + cb) * hw, sizeof(float) * static_cast<std::size_t>(ca * hw));
    std::memcpy(db + i * cb * hw, dy + (i * (ca + cb) + ca) * hw, sizeof(float) * static_cast<std::size_t>(cb * hw));
  }
}
#endif  // KILN_CPU_ENTRY_DEFINITIONS

}  // namespace kiln::cpu
