#pragma once
// A test kernel of the checking build shared by test_fragment_traffic.cpp (its counters) and
// test_traffic_targets.cpp (the conflicted-ldmatrix deliberate bug).
#include <cstdint>

#include "kiln/gpu/gpu.hpp"

namespace kiln_check_kernels {

// One warp: ldmatrix.x4 of 32 rows of 16 bytes, `row_floats` apart (4: conflict-free; 32: every row in
// banks 0-3, 8-way conflicts), then one TF32 m16n8k8 mma (so that the kernel counts as tensor-core).
inline __global__ void ldmatrix_rows(float* out, unsigned row_floats) {
  float* s = kiln::gpu::dynamic_shared<float>();
  for (unsigned i = threadIdx.x; i < 32 * row_floats; i += 32) s[i] = 1.0f;
  __syncthreads();
  std::uint32_t a[4], b[2] = {0, 0};
  kiln::gpu::mma::ldmatrix_x4(a, s + threadIdx.x * row_floats);
  float acc[4] = {0, 0, 0, 0};
  kiln::gpu::mma::mma_tf32_m16n8k8(acc, a, b, acc);
  out[threadIdx.x] = acc[0] + __uint_as_float(a[0]);
}

}  // namespace kiln_check_kernels
