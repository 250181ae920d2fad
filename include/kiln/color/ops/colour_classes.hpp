#pragma once
// Colour as classification: the argument structs of the ab soft encoding and the annealed-mean
// decoding, and the nearest-bin search both devices run. Shared by ColourOps<Cpu>
// (color/cpu/colour_classes.hpp) and the CUDA kernels (color/kernels/colour_classes.cuh).
#include <cstdint>

#include "kiln/ops/host_device.hpp"

namespace kiln::color {

// ab -> soft targets. neighbours <= kMaxNeighbours.
struct AbEncodeArgs {
  static constexpr int kMaxNeighbours = 8;
  std::int64_t n = 0, channels = 0, classes = 0, hw = 0;
  int neighbours = 5;
  float sigma = 5.0f;
};

// Annealed-mean decoding.
struct AnnealedMeanArgs {
  std::int64_t n = 0, channels = 0, classes = 0, hw = 0;
  float temperature = 0.38f;
};

// Unrolls the fixed-length loops over a neighbour list under nvcc, so that every index is a
// compile-time constant and the list stays in registers (a run-time index puts it in local memory).
#if defined(__CUDACC__)
#define KILN_NEIGHBOURS_UNROLL _Pragma("unroll")
#else
#define KILN_NEIGHBOURS_UNROLL
#endif

namespace detail {
// The `count` (<= kMaxNeighbours) nearest of `classes` centres to (a, b), nearest first; ties keep
// the lower index. Returns min(count, classes); the entries past it hold FLT_MAX. Each candidate
// bubbles through the whole list with selects (no run-time index into it).
KILN_HD inline int nearest_bins(float a, float b, const float* centres, std::int64_t classes, int count,
                                int (&index)[AbEncodeArgs::kMaxNeighbours],
                                float (&dist2)[AbEncodeArgs::kMaxNeighbours]) {
  constexpr int kN = AbEncodeArgs::kMaxNeighbours;
  constexpr float kFar = 3.402823466e+38f;  // FLT_MAX
  const int n = classes < count ? static_cast<int>(classes) : count;
  KILN_NEIGHBOURS_UNROLL
  for (int j = 0; j < kN; ++j) {
    dist2[j] = kFar;
    index[j] = 0;
  }
  float worst = kFar;  // the n-th distance so far: a candidate at least this far cannot enter
  for (std::int64_t k = 0; k < classes; ++k) {
    const float da = a - centres[2 * k], db = b - centres[2 * k + 1];
    float d = da * da + db * db;
    if (!(d < worst)) continue;
    int kk = static_cast<int>(k);
    KILN_NEIGHBOURS_UNROLL
    for (int j = 0; j < kN; ++j) {
      const bool take = j < n && d < dist2[j];
      const float dj = dist2[j];
      const int kj = index[j];
      dist2[j] = take ? d : dj;
      index[j] = take ? kk : kj;
      d = take ? dj : d;
      kk = take ? kj : kk;
    }
    // The new worst is the largest of the first n (a maximum, not dist2[n - 1], which nvcc turns
    // back into a run-time index).
    float w = 0.0f;
    KILN_NEIGHBOURS_UNROLL
    for (int j = 0; j < kN; ++j) w = j < n && dist2[j] > w ? dist2[j] : w;
    worst = w;
  }
  return n;
}
}  // namespace detail

}  // namespace kiln::color
