#pragma once
// Every failure of kiln's GPU layer (CUDA error, bad launch configuration, a bug the emulator caught
// in a kernel) is reported by throwing this; library code never calls exit().
#include <stdexcept>
#include <string>

namespace kiln::gpu {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace kiln::gpu
