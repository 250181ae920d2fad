#pragma once
// kiln with the Cuda device: the whole library (<kiln/kiln.hpp>) plus Backend<Cuda>, whose
// hand-written kernels (kernels/*.cuh) run on a GPU when this is compiled by nvcc and on kiln's
// CPU emulator otherwise (see docs/kernels.md). Layers take the device as a template argument:
//   kiln::Conv2d<3, 16, 3, kiln::Cuda> conv;   kiln::UNet<1, 2, 32, 4, kiln::Cuda> net;
// Tensors move between devices explicitly: kiln::to<kiln::Cuda>(cpu_tensor), t.to_vector().
// With -DKILN_WITH_CUDNN under nvcc, <kiln/cuda/cudnn.hpp> adds the cuDNN reference (kiln::cudnn).
#define KILN_CUDA_DEVICE_INCLUDED 1  // (examples/train/trainer.hpp adds the Cuda step when set)
#include "kiln/cuda/memory.hpp"
#include "kiln/cuda/backend.hpp"
#include "kiln/kiln.hpp"
