#pragma once
// kiln-train's data: the training and validation images (folders, a preset, or a split), each
// fully decoded once before training (fail fast), and the memory the run will need.
#include <kiln/io/dataset.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "../common/memory_budget.hpp"
#include "config.hpp"

namespace kiln::programs {

inline constexpr const char* kTrainProgram = "kiln-train";

struct ImageSize {
  int width = 0, height = 0, channels = 0;
};

struct DataSets {
  io::ImageFolderDataset train, val;
  std::string val_origin;
  std::map<std::filesystem::path, ImageSize> sizes;  // every image, fully decoded once
};

// The images of `c` (--data/--preset, --val/--val-split), every one decoded and checked against
// the crop and the memory budget. Bad images are printed one per line and stop the run.
DataSets find_data(const TrainConfig& c, const MemoryBudget& budget);

// The run's memory, estimated before the loader, the validation set and the network allocate it:
// `arena` (the network's plan for a training batch), parameters with gradients and optimizer
// moments, the loader's cache of every image (8-bit RGB at most --loader-max-side long), the
// validation crops, and the largest image decoded at full size.
void check_training_memory(const TrainConfig& c, const DataSets& data, const MemoryBudget& budget, std::uint64_t arena,
                           long long parameter_count);

}  // namespace kiln::programs
