#pragma once
// The model sizes the programs ship and the devices they run on, without any kiln header: the
// programs' non-template code decides here, once, which (model, device) pair to run, and only
// the translation unit of that pair instantiates it (models.hpp).
// The Cuda device is built only when asked for (KILN_PROGRAMS_CUDA_DEVICE, examples/CMakeLists.txt):
// on a GPU when the programs are compiled by nvcc, else on kiln's CPU emulator.
#include <string>
#include <string_view>

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

// The classification head's channel count (a type-level choice): up to this many ab bins of the
// training data's gamut (Zhang et al. 2016 use 313 bins of size 10).
inline constexpr int kColourClasses = 313;

enum class DeviceKind { cpu, cuda };

// True when this build has the Cuda device (devices.cpp).
bool cuda_device_built();
// True when a real GPU can be used by this build.
bool real_gpu_available();
// "auto" | "cpu" | "cuda" -> the device to use; prints a warning when cuda means the emulator,
// and refuses cuda (a usage error) in a build without it.
DeviceKind resolve_device(std::string_view name, std::string_view program);
// "cpu", "cuda (NVIDIA H100 ...)", "cuda (kiln CPU emulator ...)".
std::string device_description(DeviceKind d);

}  // namespace kiln::programs
