#pragma once
// The model sizes the programs ship and the devices they run on. Both programs decide once,
// at the top, and call a template instantiated for that (Model, Device) pair:
//   with_model("small", DeviceKind::cpu, [&]<class Model>(std::type_identity<Model>) { ... });
// Only small/base x cpu/cuda are instantiated (compile time stays reasonable).
// Include this header before any other kiln header: under nvcc <kiln/cuda.hpp> must come first.
#if __has_include(<kiln/cuda.hpp>)
#include <kiln/cuda.hpp>
#define KILN_PROGRAMS_HAVE_CUDA 1
#else
#define KILN_PROGRAMS_HAVE_CUDA 0
#endif
#include <kiln/kiln.hpp>
#include <kiln/models/unet.hpp>
#if __has_include(<kiln/gpu/device.hpp>)
#include <kiln/gpu/device.hpp>
#define KILN_PROGRAMS_HAVE_GPU_QUERY 1
#else
#define KILN_PROGRAMS_HAVE_GPU_QUERY 0
#endif

#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "cli.hpp"

namespace kiln::programs {

struct ModelInfo {
  std::string_view name;
  int width, depth;
};
inline constexpr ModelInfo kModels[] = {{"small", 16, 4}, {"base", 32, 4}};

inline const ModelInfo* find_model(std::string_view name) {
  for (const ModelInfo& m : kModels)
    if (m.name == name) return &m;
  return nullptr;
}
// The model name for a width/depth pair (from a checkpoint), or "" if the programs have none.
inline std::string_view model_name_for(int width, int depth) {
  for (const ModelInfo& m : kModels)
    if (m.width == width && m.depth == depth) return m.name;
  return {};
}

template <class Model>
std::string_view model_name() {
  return model_name_for(Model::width, Model::depth);
}

enum class DeviceKind { cpu, cuda };

inline constexpr bool cuda_compiled_in = KILN_PROGRAMS_HAVE_CUDA != 0;

// True when a real GPU can be used by this build.
inline bool real_gpu_available() {
#if KILN_PROGRAMS_HAVE_CUDA && KILN_PROGRAMS_HAVE_GPU_QUERY
  return !kiln::gpu::emulated && kiln::gpu::device_available();
#else
  return false;
#endif
}

// "auto" | "cpu" | "cuda" -> the device to use; prints a warning when cuda means the emulator.
inline DeviceKind resolve_device(std::string_view name, std::string_view program) {
  if (name == "cpu") return DeviceKind::cpu;
  if (name == "auto") return real_gpu_available() ? DeviceKind::cuda : DeviceKind::cpu;
  if (name == "cuda") {
    if (!cuda_compiled_in)
      throw usage_error("--device cuda", "this build of kiln has no CUDA device (<kiln/cuda.hpp> was not found)");
    if (!real_gpu_available())
      print_warning(program,
                    "--device cuda: no GPU in this build or on this machine: running the CUDA kernels on kiln's CPU "
                    "emulator, which is very slow (use --device cpu for real work)");
    return DeviceKind::cuda;
  }
  throw usage_error("--device", "unknown device '" + std::string(name) + "' (auto, cpu or cuda)");
}

inline std::string device_description(DeviceKind d) {
  if (d == DeviceKind::cpu) return "cpu";
#if KILN_PROGRAMS_HAVE_CUDA && KILN_PROGRAMS_HAVE_GPU_QUERY
  return "cuda (" + kiln::gpu::device_name() + ")";
#else
  return "cuda";
#endif
}

template <class Device>
using SmallModel = UNetSmall<Device>;
template <class Device>
using BaseModel = UNetBase<Device>;

// The classification head's channel count (a type-level choice): up to this many ab bins of the
// training data's gamut (Zhang et al. 2016 use 313 bins of size 10).
inline constexpr int kColourClasses = 313;
template <class Device>
using SmallClassifier = UNet<1, kColourClasses, 16, 4, Device>;
template <class Device>
using BaseClassifier = UNet<1, kColourClasses, 32, 4, Device>;

// Calls f(std::type_identity<Model>{}) for the model named `name` on device `d`; returns its result.
// classify: the model with kColourClasses outputs (class logits) instead of 2 (ab).
template <class F>
decltype(auto) with_model(std::string_view name, DeviceKind d, F&& f, bool classify = false) {
  if (d == DeviceKind::cuda) {
#if KILN_PROGRAMS_HAVE_CUDA
    if (name == "small") return classify ? f(std::type_identity<SmallClassifier<Cuda>>{}) : f(std::type_identity<SmallModel<Cuda>>{});
    if (name == "base") return classify ? f(std::type_identity<BaseClassifier<Cuda>>{}) : f(std::type_identity<BaseModel<Cuda>>{});
#else
    throw usage_error("--device cuda", "this build of kiln has no CUDA device");
#endif
  } else {
    if (name == "small") return classify ? f(std::type_identity<SmallClassifier<Cpu>>{}) : f(std::type_identity<SmallModel<Cpu>>{});
    if (name == "base") return classify ? f(std::type_identity<BaseClassifier<Cpu>>{}) : f(std::type_identity<BaseModel<Cpu>>{});
  }
  throw usage_error("--model", "unknown model '" + std::string(name) + "' (small or base)");
}

// A CPU tensor on Device (no copy for the CPU).
template <class Device>
Tensor<float, Device> to_device(const Tensor<float, Cpu>& t) {
  if constexpr (std::is_same_v<Device, Cpu>)
    return t;
  else
    return kiln::to<Device>(t);
}
template <class Device>
Tensor<float, Cpu> to_host(const Tensor<float, Device>& t) {
  if constexpr (std::is_same_v<Device, Cpu>)
    return t;
  else
    return kiln::to<Cpu>(t);
}

}  // namespace kiln::programs
