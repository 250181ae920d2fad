#pragma once
// V consecutive floats in registers, read or written with one access: V = 4 is a 16-byte LDG.128 /
// STG.128 (the address must be 16-byte aligned), V = 2 an 8-byte access, V = 1 a plain float. The
// launchers pick V = 4 only where every access is aligned (vector_width() below), V = 1 otherwise.
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels {

// A load that bypasses L1 (not coherent across SMs): data another block wrote in this launch (the
// split-K and one-launch reductions' partial sums). T: a type __ldcg takes (float4, double, ...).
template <class T>
__device__ __forceinline__ T load_l2(const T* p) {
#if KILN_GPU_REAL
  return __ldcg(p);
#else
  return *p;
#endif
}

template <int V>
struct Floats {
  static_assert(V == 1 || V == 2 || V == 4, "Floats: V must be 1, 2 or 4");
  float v[V];
};

#if KILN_GPU_REAL
template <int V>
__device__ __forceinline__ Floats<V> load_floats(const float* p) {
  Floats<V> r;
  if constexpr (V == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    r.v[0] = q.x, r.v[1] = q.y, r.v[2] = q.z, r.v[3] = q.w;
  } else if constexpr (V == 2) {
    const float2 q = *reinterpret_cast<const float2*>(p);
    r.v[0] = q.x, r.v[1] = q.y;
  } else {
    r.v[0] = *p;
  }
  return r;
}

template <int V>
__device__ __forceinline__ void store_floats(float* p, const Floats<V>& r) {
  if constexpr (V == 4)
    *reinterpret_cast<float4*>(p) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
  else if constexpr (V == 2)
    *reinterpret_cast<float2*>(p) = make_float2(r.v[0], r.v[1]);
  else
    *p = r.v[0];
}
#else
// The emulator: a GCC/clang vector of V floats is ONE V*4-byte load or store on x86, like the GPU's
// LDG.E.128 / .64, so the checking build's traffic counters see one access per lane (a float4
// struct copy would be split into four 4-byte accesses). may_alias: it reads float arrays.
template <int V>
struct FloatVector {
  typedef float type __attribute__((vector_size(V * sizeof(float)), __may_alias__));
};

template <int V>
__device__ __forceinline__ Floats<V> load_floats(const float* p) {
  Floats<V> r;
  if constexpr (V == 1) {
    r.v[0] = *p;
  } else {
    const typename FloatVector<V>::type q = *reinterpret_cast<const typename FloatVector<V>::type*>(p);
    for (int i = 0; i < V; ++i) r.v[i] = q[i];
  }
  return r;
}

template <int V>
__device__ __forceinline__ void store_floats(float* p, const Floats<V>& r) {
  if constexpr (V == 1) {
    *p = r.v[0];
  } else {
    typename FloatVector<V>::type q{};  // {}: g++ -Wmaybe-uninitialized under TSan; folded away
    for (int i = 0; i < V; ++i) q[i] = r.v[i];
    *reinterpret_cast<typename FloatVector<V>::type*>(p) = q;
  }
}
#endif

// Whether every non-null pointer is `bytes`-aligned (host side).
inline bool aligned_to(std::size_t bytes, std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (p != nullptr && reinterpret_cast<std::uintptr_t>(p) % bytes != 0) return false;
  return true;
}

// 4 when every pointer is 16-byte aligned and `run` (the length of each contiguous run of
// elements: a plane, or the whole tensor) is a multiple of 4, else 1. Host side.
inline int vector_width(std::int64_t run, std::initializer_list<const void*> pointers) {
  return run % 4 == 0 && aligned_to(16, pointers) ? 4 : 1;
}

}  // namespace kiln::cuda::kernels
