#pragma once
// __nv_bfloat16 (8 exponent bits, 7 mantissa bits): <cuda_bf16.h> under nvcc; for the emulator a
// 16-bit storage type with CUDA's conversions: __float2bfloat16 (= __float2bfloat16_rn) rounds
// to nearest, ties to even; NaN stays a (quiet) NaN; __bfloat162float is exact.
#include "kiln/gpu/config.hpp"

#if KILN_GPU_REAL
#include <cuda_bf16.h>
#else

#include <bit>
#include <cstdint>

struct __nv_bfloat16 {
  std::uint16_t bits = 0;
};

inline __nv_bfloat16 __float2bfloat16_rn(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((u >> 16) | 0x0040u)};  // NaN: keep it quiet
  const std::uint32_t round = 0x7fffu + ((u >> 16) & 1u);  // to nearest, ties to even (overflow gives inf)
  return {static_cast<std::uint16_t>((u + round) >> 16)};
}
inline __nv_bfloat16 __float2bfloat16(float x) { return __float2bfloat16_rn(x); }
inline float __bfloat162float(__nv_bfloat16 h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h.bits) << 16);
}

#endif
