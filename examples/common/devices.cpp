// Which devices this build of a program has. Compiled with KILN_PROGRAMS_CUDA_DEVICE=0 or 1, and
// by nvcc when the programs are (KILN_PROGRAMS_CUDA), so that a GPU can be found.
#include "devices.hpp"

#if KILN_PROGRAMS_CUDA_DEVICE
#include <kiln/gpu/device.hpp>
#endif

#include "cli.hpp"

namespace kiln::programs {

bool cuda_device_built() { return KILN_PROGRAMS_CUDA_DEVICE != 0; }

bool real_gpu_available() {
#if KILN_PROGRAMS_CUDA_DEVICE
  return !kiln::gpu::emulated && kiln::gpu::device_available();
#else
  return false;
#endif
}

DeviceKind resolve_device(std::string_view name, std::string_view program) {
  if (name == "cpu") return DeviceKind::cpu;
  if (name == "auto") return real_gpu_available() ? DeviceKind::cuda : DeviceKind::cpu;
  if (name == "cuda") {
    if (!cuda_device_built())
      throw usage_error("--device cuda",
                        "this " + std::string(program) +
                            " was built without the Cuda device: configure kiln with "
                            "-DKILN_PROGRAMS_CUDA_DEVICE=ON (kiln's CPU emulator of CUDA, for "
                            "testing) or -DKILN_PROGRAMS_CUDA=ON (nvcc, for a GPU), or use --device cpu");
#if KILN_PROGRAMS_CUDA_DEVICE
    // An nvcc build has no emulator to fall back on: say so before the first allocation fails.
    if (!kiln::gpu::emulated && !kiln::gpu::device_available())
      throw usage_error("--device cuda", "this " + std::string(program) +
                                             " was built for a GPU (nvcc), but no CUDA device or driver is usable "
                                             "here; use --device cpu, or run it on a machine with an NVIDIA GPU");
#endif
    if (!real_gpu_available())
      print_warning(program,
                    "--device cuda: no GPU in this build or on this machine: running the CUDA kernels on kiln's CPU "
                    "emulator, which is very slow (use --device cpu for real work)");
    return DeviceKind::cuda;
  }
  throw usage_error("--device", "unknown device '" + std::string(name) + "' (auto, cpu or cuda)");
}

std::string device_description(DeviceKind d) {
  if (d == DeviceKind::cpu) return "cpu";
#if KILN_PROGRAMS_CUDA_DEVICE
  return "cuda (" + kiln::gpu::device_name() + ")";
#else
  return "cuda";
#endif
}

}  // namespace kiln::programs
