// The one unit that defines the CPU convolution and BatchNorm entry points for kiln's own targets
// (kiln_cpu_once in CMakeLists.txt; the others only declare them: kiln/cpu/separate.hpp).
#define KILN_CPU_IMPLEMENTATION
#include "kiln/cpu/batchnorm.hpp"
#include "kiln/cpu/conv2d.hpp"
