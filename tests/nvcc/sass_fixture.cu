// Deliberate regressions for tests/nvcc/sass_check.py: each sass_fixture_* kernel breaks exactly one
// of the limits that tests/nvcc/sass_thresholds.json sets for sass_fixture_* (and sass_fixture_clean
// none), so the SASS check must report each of them, and only them:
//   python3 tests/nvcc/sass_check.py --kernels 'sass_fixture_*' \
//     --expect 'sass_fixture_local_array:local_ops' --expect 'sass_fixture_generic_load:generic_loads_in_loops' \
//     --expect 'sass_fixture_div64:div64_in_loops' --expect 'sass_fixture_hmma:inst_per_hmma' BUILD/kiln_sass_fixture
// Built by tests/nvcc.cmake (target kiln_sass_fixture, sm_80 and sm_90) next to kiln_nvcc_check; not
// part of the library. The program does nothing.
#include <cstdint>
#include <cstdio>

#include <mma.h>

// Healthy: 32-bit grid-stride loop, global loads, no division. Must pass every limit.
__global__ void sass_fixture_clean(const float* x, float* y, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = 2.0f * x[i] + 1.0f;
}

// A per-thread array indexed at run time lives in local memory: STL / LDL like a register spill.
__global__ void sass_fixture_local_array(const int* idx, float* y, int n) {
  float buf[32];
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<float>(i * threadIdx.x);
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += buf[idx[i] & 31];
  y[threadIdx.x] = s;
}

// The pointer is either shared or global memory, so the load in the loop is generic (LD, not LDS/LDG).
__global__ void sass_fixture_generic_load(const float* x, float* y, int n, int use_shared) {
  __shared__ float tile[256];
  tile[threadIdx.x] = x[threadIdx.x];
  __syncthreads();
  const float* p = use_shared ? tile : x;
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += p[(i * 7 + threadIdx.x) & 255];
  y[threadIdx.x] = s;
}

// A 64-bit division by a run-time value per iteration (the __cuda_sm20_div_s64 subroutine).
__global__ void sass_fixture_div64(const float* x, float* y, std::int64_t n, std::int64_t hw) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x)
    y[i] = x[i / hw];
}

// One warp, TF32 wmma straight from global memory with the conversion loops: far more than 4
// instructions per HMMA in the k loop.
__global__ void sass_fixture_hmma(const float* a, const float* b, float* c, int k_steps, int lda) {
  namespace wmma = nvcuda::wmma;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (int k = 0; k < k_steps; ++k) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
    wmma::load_matrix_sync(fa, a + k * 8, lda);
    wmma::load_matrix_sync(fb, b + k * 8 * 16, 16);
    for (int e = 0; e < fa.num_elements; ++e) fa.x[e] = wmma::__float_to_tf32(fa.x[e]);
    for (int e = 0; e < fb.num_elements; ++e) fb.x[e] = wmma::__float_to_tf32(fb.x[e]);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

int main() {
  std::puts("kiln_sass_fixture: compiled (the SASS check reads this binary; nothing to run)");
  return 0;
}
