#pragma once
// KILN_HD marks the scalar functions that a CUDA kernel and the CPU both call: `__host__
// __device__` under nvcc, nothing for a host compiler (where the emulator runs kernels as
// ordinary functions).
#ifndef KILN_HD
#if defined(__CUDACC__)
#define KILN_HD __host__ __device__
#else
#define KILN_HD
#endif
#endif
