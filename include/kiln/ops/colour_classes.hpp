#pragma once
// Colour as classification: the argument structs of the softmax cross-entropy, the ab soft
// encoding and the annealed-mean decoding, and the nearest-bin search both devices run. Shared by
// Backend<Cpu> (cpu/colour_classes.hpp) and the CUDA kernels (kernels/colour_classes.cuh).
#include <cstdint>

#include "kiln/ops/host_device.hpp"

namespace kiln {

// Per-pixel softmax cross-entropy over channels.
struct SoftmaxXentArgs {
  std::int64_t n = 0, channels = 0, classes = 0, hw = 0;  // classes <= channels take part
  KILN_HD std::int64_t pixels() const { return n * hw; }
};

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

namespace detail {
// The `count` nearest of `classes` centres to (a, b), nearest first (insertion into a short list;
// ties keep the lower index). Returns how many were found (min(count, classes)).
KILN_HD inline int nearest_bins(float a, float b, const float* centres, std::int64_t classes, int count, int* index,
                        float* dist2) {
  int found = 0;
  for (std::int64_t k = 0; k < classes; ++k) {
    const float da = a - centres[2 * k], db = b - centres[2 * k + 1];
    const float d = da * da + db * db;
    if (found == count && d >= dist2[found - 1]) continue;
    int at = found < count ? found++ : count - 1;
    while (at > 0 && dist2[at - 1] > d) {
      dist2[at] = dist2[at - 1];
      index[at] = index[at - 1];
      --at;
    }
    dist2[at] = d;
    index[at] = static_cast<int>(k);
  }
  return found;
}
}  // namespace detail

}  // namespace kiln
