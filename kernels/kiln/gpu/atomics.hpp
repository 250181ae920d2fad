#pragma once
// CUDA's atomic functions for the emulator: relaxed read-modify-writes through std::atomic_ref
// (CUDA's atomics are relaxed too). The operand is not deduced, so atomicAdd(unsigned*, 1) works as
// with CUDA's overloads.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#include <atomic>
#include <type_traits>

namespace kiln::gpu::emu {
template <class T>
std::atomic_ref<T> atomic_at(T* address) {
  static_assert(std::is_arithmetic_v<T>, "CUDA atomics work on integers and floating-point numbers");
  return std::atomic_ref<T>(*address);
}
template <class T, class Update>
T atomic_update(T* address, Update update) {
  auto ref = atomic_at(address);
  T old = ref.load(std::memory_order_relaxed);
  while (!ref.compare_exchange_weak(old, update(old), std::memory_order_relaxed)) {
  }
  return old;
}
}  // namespace kiln::gpu::emu

template <class T>
T atomicAdd(T* address, std::type_identity_t<T> value) {
  return kiln::gpu::emu::atomic_at(address).fetch_add(value, std::memory_order_relaxed);
}
template <class T>
T atomicSub(T* address, std::type_identity_t<T> value) {
  static_assert(std::is_integral_v<T>, "atomicSub takes integers");
  return kiln::gpu::emu::atomic_at(address).fetch_sub(value, std::memory_order_relaxed);
}
template <class T>
T atomicExch(T* address, std::type_identity_t<T> value) {
  return kiln::gpu::emu::atomic_at(address).exchange(value, std::memory_order_relaxed);
}
template <class T>
T atomicCAS(T* address, std::type_identity_t<T> compare, std::type_identity_t<T> value) {
  static_assert(std::is_integral_v<T>, "atomicCAS takes integers");
  kiln::gpu::emu::atomic_at(address).compare_exchange_strong(compare, value, std::memory_order_relaxed);
  return compare;  // the old value either way
}
template <class T>
T atomicMax(T* address, std::type_identity_t<T> value) {
  static_assert(std::is_integral_v<T>, "atomicMax takes integers");
  return kiln::gpu::emu::atomic_update(address, [value](T old) { return old < value ? value : old; });
}
template <class T>
T atomicMin(T* address, std::type_identity_t<T> value) {
  static_assert(std::is_integral_v<T>, "atomicMin takes integers");
  return kiln::gpu::emu::atomic_update(address, [value](T old) { return value < old ? value : old; });
}
template <class T>
T atomicAnd(T* address, std::type_identity_t<T> value) {
  return kiln::gpu::emu::atomic_at(address).fetch_and(value, std::memory_order_relaxed);
}
template <class T>
T atomicOr(T* address, std::type_identity_t<T> value) {
  return kiln::gpu::emu::atomic_at(address).fetch_or(value, std::memory_order_relaxed);
}
template <class T>
T atomicXor(T* address, std::type_identity_t<T> value) {
  return kiln::gpu::emu::atomic_at(address).fetch_xor(value, std::memory_order_relaxed);
}
// CUDA: ((old >= limit) ? 0 : old + 1) and ((old == 0 || old > limit) ? limit : old - 1).
inline unsigned atomicInc(unsigned* address, unsigned limit) {
  return kiln::gpu::emu::atomic_update(address, [limit](unsigned old) { return old >= limit ? 0u : old + 1u; });
}
inline unsigned atomicDec(unsigned* address, unsigned limit) {
  return kiln::gpu::emu::atomic_update(address,
                                       [limit](unsigned old) { return (old == 0 || old > limit) ? limit : old - 1u; });
}

#endif  // !KILN_GPU_REAL
