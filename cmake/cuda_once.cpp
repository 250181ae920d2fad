// The one unit that compiles the convolution kernels Backend<Cuda> launches on the emulator, for
// kiln's own targets (kiln_cuda_once in CMakeLists.txt; the others only declare them:
// kiln/cuda/separate.hpp).
#define KILN_CUDA_IMPLEMENTATION
#include "kiln/cuda/separate.hpp"
