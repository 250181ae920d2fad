#pragma once
// The CPU convolution and BatchNorm entry points (conv2d.hpp, batchnorm.hpp) are inline, so every
// translation unit that runs those layers compiles their kernels again (about 3 CPU-s at -O3). A
// program of many units may compile them once instead: define KILN_CPU_SEPARATE in all its units
// and, in exactly one of them, also KILN_CPU_IMPLEMENTATION before including kiln (kiln's own
// tests, programs and benchmarks do: kiln_cpu_once in CMakeLists.txt). All of them need the same
// flags (-march above all). Without the macro the library is header-only as before.
#if defined(KILN_CPU_SEPARATE) && !defined(KILN_CPU_IMPLEMENTATION)
#define KILN_CPU_ENTRY_DEFINITIONS 0  // declared only: defined in the KILN_CPU_IMPLEMENTATION unit
#else
#define KILN_CPU_ENTRY_DEFINITIONS 1
#endif
#if defined(KILN_CPU_SEPARATE)
#define KILN_CPU_ENTRY
#else
#define KILN_CPU_ENTRY inline
#endif
