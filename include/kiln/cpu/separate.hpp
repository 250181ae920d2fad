#pragma once
// The CPU kernels the layers call (kiln/cpu/*.hpp: convolutions, BatchNorm, pooling, upsampling,
// activations, element-wise ops, losses, softmax cross-entropy, optimizers, the GEMM; kiln/color/cpu/:
// the colour-class encodings) are inline, so every translation unit that runs a network compiles
// them again, at its own flags. A program of many units may compile them once instead: define
// KILN_CPU_SEPARATE in all its units and, in exactly one of them, also KILN_CPU_IMPLEMENTATION
// before including kiln (kiln's own tests, programs and benchmarks do: kiln_cpu_once in
// CMakeLists.txt). The other units then only declare the entry points and the per-code-path
// tables (ConvKernels, GemmKernels), and instantiate none of the kernels' templates: they may be
// compiled with less optimisation without slowing the kernels. All of them need the same -march
// (the baseline code path, kiln/cpu/isa.hpp). Without the macro the library is header-only.
//   KILN_CPU_ENTRY_DEFINITIONS  1 where the entry points are defined (header-only, or the one unit)
//   KILN_CPU_ENTRY              how they are defined: inline, or not in the one unit
//   KILN_CPU_TABLE              the tables: inline constexpr, or extern const (defined in the one unit)
#if defined(KILN_CPU_SEPARATE) && !defined(KILN_CPU_IMPLEMENTATION)
#define KILN_CPU_ENTRY_DEFINITIONS 0  // declared only: defined in the KILN_CPU_IMPLEMENTATION unit
#else
#define KILN_CPU_ENTRY_DEFINITIONS 1
#endif
#if defined(KILN_CPU_SEPARATE)
#define KILN_CPU_ENTRY
#define KILN_CPU_TABLE extern const
#else
#define KILN_CPU_ENTRY inline
#define KILN_CPU_TABLE inline constexpr
#endif
