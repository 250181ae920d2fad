// The one unit that defines the CPU kernels' entry points and code-path tables for kiln's own
// targets (kiln_cpu_once in CMakeLists.txt; the others only declare them: kiln/cpu/separate.hpp).
#define KILN_CPU_IMPLEMENTATION
#include "kiln/color/cpu/colour_classes.hpp"
#include "kiln/cpu/activation.hpp"
#include "kiln/cpu/batchnorm.hpp"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/cpu/conv2d_strided.hpp"
#include "kiln/cpu/elementwise.hpp"
#include "kiln/cpu/gemm.hpp"
#include "kiln/cpu/loss.hpp"
#include "kiln/cpu/optim.hpp"
#include "kiln/cpu/pooling.hpp"
#include "kiln/cpu/softmax_xent.hpp"
#include "kiln/cpu/upsample.hpp"
