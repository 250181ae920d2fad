#pragma once
// The one launch path of kiln's CUDA kernels: a kernel with the name its launch reports, and
// kiln::gpu::launch on kiln::cuda::current_stream() (under nvcc a real launch checked with
// cudaGetLastError, otherwise the CPU emulator; a failure throws kiln::gpu::Error naming the
// kernel). Backend<Cuda> launches through it, and so do modules on top of the library that bring
// kernels of their own (kiln/color/cuda.hpp).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <utility>

#include "kiln/cuda/memory.hpp"
#include "kiln/cuda/step_scalars.hpp"
#include "kiln/gpu/gpu.hpp"

#include "block_reduce.cuh"  // grid_stride

namespace kiln::cuda {

// A kernel and the name its launch reports (in errors, the emulator's profile and launch hook):
// "relu_forward_kernel<4>", with the template arguments' values. Made by KILN_CUDA_KERNEL.
template <class... Params>
struct Kernel {
  void (*function)(Params...);
  char name[96];
};

namespace detail {
inline void append_name(char* name, std::size_t size, const char* text) {
  std::size_t at = 0;
  while (at + 1 < size && name[at] != '\0') ++at;
  for (; at + 1 < size && *text != '\0'; ++text) name[at++] = *text;
  name[at] = '\0';
}
// A template argument of a kernel's name: an int or a bool ("true").
struct NameArgument {
  int value;
  bool is_bool;
  NameArgument(int v) : value(v), is_bool(false) {}
  NameArgument(bool b) : value(b), is_bool(true) {}
};
// "base<spelled>" or "base<1, 64, true>" into name. Out of line (noinline): every kernel's
// make_kernel is then a call, not a copy of this loop (the launchers make about a hundred kernels).
[[gnu::noinline]] inline void write_name(char* name, std::size_t size, const char* base, const char* spelled_arguments,
                                         std::initializer_list<NameArgument> values) {
  name[0] = '\0';
  append_name(name, size, base);
  append_name(name, size, "<");
  if (values.size() == 0) append_name(name, size, spelled_arguments);
  bool first = true;
  for (const NameArgument& v : values) {
    append_name(name, size, first ? "" : ", ");
    first = false;
    if (v.is_bool) {
      append_name(name, size, v.value ? "true" : "false");
    } else {
      char digits[16];
      std::snprintf(digits, sizeof digits, "%d", v.value);
      append_name(name, size, digits);
    }
  }
  append_name(name, size, ">");
}
template <class... Params, class... Values>
Kernel<Params...> make_kernel(const char* base, void (*function)(Params...), const char* spelled_arguments,
                              Values... values) {
  Kernel<Params...> k{function, {}};
  write_name(k.name, sizeof k.name, base, spelled_arguments, {NameArgument(values)...});
  return k;
}
}  // namespace detail
}  // namespace kiln::cuda

// kernels::name<args...>, named with the arguments' values: KILN_CUDA_KERNEL(relu_forward_kernel, V)
// (V an int or bool known at compile time); KILN_CUDA_KERNEL_FLOAT(name) is kernels::name<float>;
// KILN_CUDA_KERNEL_FLOAT_IN(ns, name) is ns::name<float>, for kernels outside kiln::cuda::kernels.
#define KILN_CUDA_KERNEL(name, ...) \
  ::kiln::cuda::detail::make_kernel(#name, &::kiln::cuda::kernels::name<__VA_ARGS__>, "", __VA_ARGS__)
#define KILN_CUDA_KERNEL_FLOAT(name) KILN_CUDA_KERNEL_FLOAT_IN(::kiln::cuda::kernels, name)
#define KILN_CUDA_KERNEL_FLOAT_IN(ns, name) ::kiln::cuda::detail::make_kernel(#name, &ns::name<float>, "float")

// KILN_LAUNCH on kiln::cuda::current_stream(), for kernels launched outside Backend<Cuda> (tests).
#define KILN_CUDA_LAUNCH(kernel, grid, block, shared_bytes, ...) \
  KILN_LAUNCH(kernel, grid, block, shared_bytes, ::kiln::cuda::current_stream(), __VA_ARGS__)

namespace kiln::cuda {

// Launches k on the current stream; nothing while a captured graph is replayed host-side only
// (step_scalars.hpp).
template <class... Params, class... Args>
void launch(const Kernel<Params...>& k, dim3 grid, dim3 block, std::size_t shared_bytes, Args&&... args) {
  if (in_host_pass()) return;
  kiln::gpu::launch(k.name, k.function, grid, block, shared_bytes, current_stream(), std::forward<Args>(args)...);
}

// ... in thread-block clusters of `cluster` blocks (kiln::gpu::launch_cluster: sm_90).
template <class... Params, class... Args>
void launch_cluster(const Kernel<Params...>& k, dim3 grid, dim3 block, dim3 cluster, std::size_t shared_bytes,
                    Args&&... args) {
  if (in_host_pass()) return;
  kiln::gpu::launch_cluster(k.name, k.function, grid, block, cluster, shared_bytes, current_stream(),
                            std::forward<Args>(args)...);
}

// A grid-stride kernel over `items` work items (kernels::grid_stride()'s shape); nothing when there
// are none.
template <class... Params, class... Args>
void launch_1d(const Kernel<Params...>& k, std::int64_t items, Args&&... args) {
  if (items <= 0) return;
  const auto g = kernels::grid_stride(items);
  launch(k, dim3(g.blocks), dim3(g.threads), 0, std::forward<Args>(args)...);
}

}  // namespace kiln::cuda
