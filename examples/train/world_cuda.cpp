// The Cuda replicas: one process, or NCCL (bootstrapped through MPI) when kiln-train is compiled
// by nvcc with KILN_NCCL. Built only with the Cuda device (KILN_PROGRAMS_CUDA_DEVICE).
#include <kiln/cuda.hpp>  // first: under nvcc it must precede the other kiln headers
#if defined(KILN_WITH_NCCL) && defined(__CUDACC__)
#include <kiln/dist/nccl.hpp>
#define KILN_TRAIN_HAVE_NCCL 1
#else
#define KILN_TRAIN_HAVE_NCCL 0
#endif

#include "../common/cli.hpp"
#include "replicas_over.hpp"

namespace kiln::programs {

template <>
std::unique_ptr<Replicas<Cuda>> make_replicas<Cuda>(World* world) {
  if (!world || world->size() == 1) return one_process<Cuda>();
#if KILN_TRAIN_HAVE_NCCL
  World::Mpi& mpi = *world->mpi();
  if (!mpi.nccl) {
    dist::NcclCommunicator::select_local_gpu(world->launch().local_rank);
    mpi.nccl = std::make_shared<dist::NcclCommunicator>(mpi.comm);
  }
  return std::make_unique<ReplicasOver<Cuda, dist::NcclCommunicator>>(
      *static_cast<dist::NcclCommunicator*>(mpi.nccl.get()));
#else
  throw ProgramError("--device", "cuda on " + std::to_string(world->size()) +
                                     " ranks needs NCCL: build kiln-train with nvcc and -DKILN_NCCL=ON, or train "
                                     "with --device cpu");
#endif
}

}  // namespace kiln::programs
