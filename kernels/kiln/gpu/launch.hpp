#pragma once
// kiln::gpu::launch: kernel<<<grid, block, shared, stream>>>(args...) under nvcc, followed by a
// check of cudaGetLastError; in the emulator it runs the whole grid before returning. Either way a
// failure throws kiln::gpu::Error naming the kernel. KILN_LAUNCH passes the kernel's name for you:
//   KILN_LAUNCH(scale_kernel<float>, grid, block, 0, stream, data, n);
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kiln/gpu/config.hpp"
#include "kiln/gpu/error.hpp"
#include "kiln/gpu/launch_limits.hpp"
#include "kiln/gpu/stream.hpp"

#if KILN_GPU_REAL
#include "kiln/gpu/cuda_check.hpp"
#else
#include "kiln/gpu/emu_capture.hpp"
#include "kiln/gpu/emu_runner.hpp"
#endif

namespace kiln::gpu {

#if !KILN_GPU_REAL
namespace emu {
// One launch of a kernel whose parameters `arguments` holds (copied once, as CUDA copies them at
// launch or at capture); invoke(arguments) runs one thread. Runs the whole grid, or records it in
// the stream's capture. Not a template: every launch<Params...> shares it.
KILN_EMU_ENTRY void launch_or_capture(const char* kernel_name, std::shared_ptr<const void> arguments,
                                      void (*invoke)(const void*), dim3 grid, dim3 block,
                                      std::size_t dynamic_shared_bytes, stream_handle stream, dim3 cluster);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void launch_or_capture(const char* kernel_name, std::shared_ptr<const void> arguments,
                                      void (*invoke)(const void*), dim3 grid, dim3 block,
                                      std::size_t dynamic_shared_bytes, stream_handle stream, dim3 cluster) {
  auto run = [arguments, invoke, grid, block, dynamic_shared_bytes, cluster](const char* name) {
    KernelInvocation invocation;
    invocation.name = name;
    invocation.invoke = invoke;
    invocation.arguments = arguments.get();
    invocation.grid = grid;
    invocation.block = block;
    invocation.dynamic_shared_bytes = dynamic_shared_bytes;
    invocation.cluster = cluster;
    std::lock_guard lock(launch_mutex());
    run_grid(invocation);
  };
  if (Capture* capture = capture_for(stream, std::string("launch of ") + kernel_name)) {
    // The graph keeps its own copy of the name (Backend<Cuda>'s names live in temporaries).
    std::string name = kernel_name;
    capture->ops.push_back({"launch " + name, [run, name] { run(name.c_str()); }});
    return;
  }
  run(kernel_name);
}
#endif
}  // namespace emu
#endif

namespace detail {
template <class... Params, class... Args>
void launch_in_clusters(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block, dim3 cluster,
                        std::size_t dynamic_shared_bytes, stream_handle stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kiln::gpu::launch: wrong number of kernel arguments");
  validate_launch(kernel_name, reinterpret_cast<kernel_key>(kernel), grid, block, dynamic_shared_bytes);
  const bool clustered = cluster.x * cluster.y * cluster.z != 1;
  if (clustered) validate_cluster(kernel_name, grid, cluster);
#if KILN_GPU_REAL
  if (clustered) {
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = dynamic_shared_bytes;
    config.stream = stream;
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeClusterDimension;
    attribute.val.clusterDim.x = cluster.x;
    attribute.val.clusterDim.y = cluster.y;
    attribute.val.clusterDim.z = cluster.z;
    config.attrs = &attribute;
    config.numAttrs = 1;
    const cudaError_t launched = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
    if (launched != cudaSuccess)
      throw Error(std::string("kiln::gpu::launch_cluster(") + kernel_name + ") failed: " + cudaGetErrorName(launched) +
                  ": " + cudaGetErrorString(launched));
  } else {
    kernel<<<grid, block, dynamic_shared_bytes, stream>>>(std::forward<Args>(args)...);
  }
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw Error(std::string("kiln::gpu::launch(") + kernel_name + ") failed: " + cudaGetErrorName(status) + ": " +
                cudaGetErrorString(status));
#else
  // Kernel parameters are copied once here, as CUDA copies them at launch (or at capture, into the
  // graph's node); every thread then receives its own copy, as on the GPU.
  struct Closure {
    void (*kernel)(Params...);
    std::tuple<std::remove_cvref_t<Params>...> parameters;
  };
  emu::launch_or_capture(
      kernel_name,
      std::make_shared<const Closure>(
          Closure{kernel, std::tuple<std::remove_cvref_t<Params>...>(std::forward<Args>(args)...)}),
      [](const void* data) {
        const Closure& c = *static_cast<const Closure*>(data);
        std::apply(c.kernel, c.parameters);
      },
      grid, block, dynamic_shared_bytes, stream, cluster);
#endif
}
}  // namespace detail

template <class... Params, class... Args>
void launch(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t dynamic_shared_bytes,
            stream_handle stream, Args&&... args) {
  detail::launch_in_clusters(kernel_name, kernel, grid, block, dim3(1, 1, 1), dynamic_shared_bytes, stream,
                             std::forward<Args>(args)...);
}
// The same in thread-block clusters of `cluster` blocks (sm_90 and later; kiln/gpu/cluster.hpp): the
// grid a whole number of clusters, at most 8 blocks each. The emulator runs a cluster's blocks
// together (fibers on one scheduler, or OS threads at once); checking builds check their accesses
// across blocks (docs/emulator.md, "Thread-block clusters").
template <class... Params, class... Args>
void launch_cluster(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block, dim3 cluster,
                    std::size_t dynamic_shared_bytes, stream_handle stream, Args&&... args) {
  detail::launch_in_clusters(kernel_name, kernel, grid, block, cluster, dynamic_shared_bytes, stream,
                             std::forward<Args>(args)...);
}

}  // namespace kiln::gpu

#define KILN_LAUNCH(kernel, grid, block, dynamic_shared_bytes, stream, ...) \
  ::kiln::gpu::launch(#kernel, kernel, grid, block, dynamic_shared_bytes, stream __VA_OPT__(, ) __VA_ARGS__)
#define KILN_LAUNCH_CLUSTER(kernel, grid, block, cluster, dynamic_shared_bytes, stream, ...) \
  ::kiln::gpu::launch_cluster(#kernel, kernel, grid, block, cluster, dynamic_shared_bytes,   \
                              stream __VA_OPT__(, ) __VA_ARGS__)
