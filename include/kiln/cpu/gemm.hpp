#pragma once
// Plain blocked GEMMs for the CPU reference path (row-major). They are written
// so the compiler vectorises the inner loop; the fast CPU path is a separate
// piece of work (docs/architecture.md). All are parallel over OpenMP threads
// and write disjoint parts of C, so they are race-free by construction.
#include <algorithm>
#include <cstddef>

namespace kiln::cpu {

// Columns of C handled together: a K x kColumnBlock panel of B stays in L2
// while every row of A passes over it.
inline constexpr std::ptrdiff_t kColumnBlock = 256;

// C[M,N] (+)= A[M,K] * B[K,N]
inline void gemm_nn(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* A, const float* B, float* C,
                    bool accumulate) {
  const std::ptrdiff_t blocks = (N + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for collapse(2) schedule(static)
  for (std::ptrdiff_t jb = 0; jb < blocks; ++jb) {
    for (std::ptrdiff_t i = 0; i < M; ++i) {
      const std::ptrdiff_t j0 = jb * kColumnBlock, j1 = std::min(N, j0 + kColumnBlock);
      float* __restrict c = C + i * N;
      if (!accumulate)
        for (std::ptrdiff_t j = j0; j < j1; ++j) c[j] = 0.0f;
      for (std::ptrdiff_t k = 0; k < K; ++k) {
        const float a = A[i * K + k];
        const float* __restrict b = B + k * N;
#pragma omp simd
        for (std::ptrdiff_t j = j0; j < j1; ++j) c[j] += a * b[j];
      }
    }
  }
}

// C[M,N] (+)= A^T * B, with A stored [K,M] and B [K,N]
inline void gemm_tn(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* A, const float* B, float* C,
                    bool accumulate) {
  const std::ptrdiff_t blocks = (N + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for collapse(2) schedule(static)
  for (std::ptrdiff_t jb = 0; jb < blocks; ++jb) {
    for (std::ptrdiff_t i = 0; i < M; ++i) {
      const std::ptrdiff_t j0 = jb * kColumnBlock, j1 = std::min(N, j0 + kColumnBlock);
      float* __restrict c = C + i * N;
      if (!accumulate)
        for (std::ptrdiff_t j = j0; j < j1; ++j) c[j] = 0.0f;
      for (std::ptrdiff_t k = 0; k < K; ++k) {
        const float a = A[k * M + i];
        const float* __restrict b = B + k * N;
#pragma omp simd
        for (std::ptrdiff_t j = j0; j < j1; ++j) c[j] += a * b[j];
      }
    }
  }
}

// C[M,N] (+)= A[M,K] * B^T, with B stored [N,K]: dot products of rows.
inline void gemm_nt(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, const float* A, const float* B, float* C,
                    bool accumulate) {
#pragma omp parallel for collapse(2) schedule(static)
  for (std::ptrdiff_t i = 0; i < M; ++i) {
    for (std::ptrdiff_t j = 0; j < N; ++j) {
      const float* __restrict a = A + i * K;
      const float* __restrict b = B + j * K;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (std::ptrdiff_t k = 0; k < K; ++k) sum += a[k] * b[k];
      C[i * N + j] = accumulate ? C[i * N + j] + sum : sum;
    }
  }
}

}  // namespace kiln::cpu
