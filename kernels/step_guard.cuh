#pragma once
// The training step's numerical check on the device (include/kiln/cuda/step_monitor.hpp): every
// gradient and the loss are checked on the GPU each step, and the host reads the outcome with the
// losses every few steps, instead of copying every gradient to the host every step.
//   nonfinite_count_kernel: per tensor of a list, how many values are NaN or infinite and the
//     first of them (index and kind, packed so that one atomicMin keeps the lowest index);
//   step_record_kernel (one thread): stores the step's loss, and when the step is the first of the
//     window with a non-finite loss or gradient, marks it (`bad`, which the optimizer kernels read
//     as their update guard and skip) and keeps its per-tensor counts; then clears the counters.
#include <cstdint>
#include <math.h>

#include "block_reduce.cuh"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

inline constexpr int step_guard_max_steps = 256;    // losses kept between two reads
inline constexpr int step_guard_list_tensors = 64;  // tensors per nonfinite_count_kernel launch
inline constexpr std::uint64_t no_bad_value = ~std::uint64_t{0};

// The header of the device status; the per-tensor arrays follow it (StepGuardView).
struct StepGuardStatus {
  unsigned bad;       // 0, or 1 + the window index of the first step with a non-finite loss or gradient
  unsigned bad_loss;  // that step's loss was not finite
  unsigned steps;     // steps recorded since the last reset
  unsigned padding;
  float losses[step_guard_max_steps];
};

// Per tensor t (of `tensors`): the current step's counters and the first bad step's copy. first:
// (index << 2) | kind (0 NaN, 1 +inf, 2 -inf), no_bad_value when none.
struct StepGuardView {
  StepGuardStatus* status;
  unsigned* count;                // [tensors]
  unsigned long long* first;      // [tensors]
  unsigned* bad_count;            // [tensors]
  unsigned long long* bad_first;  // [tensors]
  int tensors;
};

struct NonFiniteList {
  const float* data[step_guard_list_tensors];
  std::int64_t start[step_guard_list_tensors + 1];
  int count;
  int first_tensor;  // the index of data[0] in the view's arrays
};

__device__ __forceinline__ bool non_finite_bits(float x, unsigned& kind) {
  const unsigned bits = static_cast<unsigned>(__float_as_int(x));
  if ((bits & 0x7f800000u) != 0x7f800000u) return false;
  kind = (bits & 0x007fffffu) != 0u ? 0u : ((bits >> 31) != 0u ? 2u : 1u);
  return true;
}

// Grid-stride over the list's elements numbered one after another (as adam_multi_tensor_kernel).
template <class Float>
__global__ void nonfinite_count_kernel(NonFiniteList list, unsigned* count, unsigned long long* first) {
  const std::int64_t total = list.start[list.count];
  int t = 0;
  KILN_GRID_STRIDE_LOOP(i, total) {
    while (i >= list.start[t + 1]) ++t;
    const std::int64_t j = i - list.start[t];
    unsigned kind = 0;
    if (non_finite_bits(list.data[t][j], kind)) {
      atomicAdd(&count[list.first_tensor + t], 1u);
      atomicMin(&first[list.first_tensor + t], (static_cast<unsigned long long>(j) << 2) | kind);
    }
  }
}

// One thread: records the step (see the header comment).
template <class Float>
__global__ void step_record_kernel(StepGuardView v, const Float* loss) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  StepGuardStatus* s = v.status;
  const float value = *loss;
  unsigned kind = 0;
  const bool bad_loss = non_finite_bits(value, kind);
  bool bad = bad_loss;
  for (int t = 0; t < v.tensors; ++t) bad = bad || v.count[t] != 0u;
  const unsigned index = s->steps;
  if (index < static_cast<unsigned>(step_guard_max_steps)) s->losses[index] = value;
  if (bad && s->bad == 0u) {
    s->bad = index + 1u;
    s->bad_loss = bad_loss ? 1u : 0u;
    for (int t = 0; t < v.tensors; ++t) {
      v.bad_count[t] = v.count[t];
      v.bad_first[t] = v.first[t];
    }
  }
  for (int t = 0; t < v.tensors; ++t) {
    v.count[t] = 0u;
    v.first[t] = no_bad_value;
  }
  s->steps = index + 1u;
}

}  // namespace kiln::cuda::kernels
