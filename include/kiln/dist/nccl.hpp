#pragma once
// NCCL for Cuda tensors: NcclCommunicator is the Communicator (kiln/dist/communicator.hpp)
// for GPU data parallelism, one GPU per process. Bootstrapped through MPI as llm.c does:
// rank 0 makes the ncclUniqueId, MPI_Bcast hands it to every rank, ncclCommInitRank joins
// them. Host numbers, barrier and start-up stay on MPI. Needs nvcc (kiln's Cuda tensors are
// real device memory only then), <nccl.h> and libnccl (shipped with the CUDA toolkit),
// and MPI (CMake: -DKILN_NCCL=ON, link kiln::nccl).
//
// Collectives run on their own stream, ordered after the work already queued on
// kiln::cuda::current_stream() (an event), and the compute stream waits for them before
// anything queued after wait() (another event): all-reduce overlaps the backward kernels.
#ifndef __CUDACC__
#error "kiln/dist/nccl.hpp needs nvcc: without it kiln's Cuda tensors live in the CPU emulator, which NCCL cannot reach"
#endif
#include <cuda_runtime.h>
#include <nccl.h>

#include <string>
#include <utility>

#include "kiln/cuda/memory.hpp"  // Tensor<float, Cuda>, kiln::cuda::current_stream()
#include "kiln/dist/mpi.hpp"

namespace kiln::dist {

namespace detail {
inline void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw Error(std::string("NCCL: ") + what + " failed: " + ncclGetErrorString(r));
}
inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(e));
}
}  // namespace detail

class NcclCommunicator {
 public:
  using device = Cuda;

  class Pending {
   public:
    Pending() = default;
    Pending(Pending&& o) noexcept : done_(std::exchange(o.done_, nullptr)) {}
    Pending& operator=(Pending&& o) noexcept {
      std::swap(done_, o.done_);
      return *this;
    }
    ~Pending() {
      if (done_) cudaEventDestroy(done_);
    }
    bool done() { return !done_ || cudaEventQuery(done_) == cudaSuccess; }
    // The compute stream waits for the collective (the host does not).
    void wait() {
      if (!done_) return;
      detail::cuda_check(cudaStreamWaitEvent(kiln::cuda::current_stream(), done_, 0), "cudaStreamWaitEvent");
      cudaEventDestroy(std::exchange(done_, nullptr));
    }

   private:
    friend class NcclCommunicator;
    cudaEvent_t done_ = nullptr;
  };

  // Every rank calls this after MPI is up and its GPU is chosen (select_local_gpu()).
  explicit NcclCommunicator(MpiCommunicator& mpi) : mpi_(mpi) {
    ncclUniqueId id;
    if (mpi.rank() == 0) detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    detail::mpi_check(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, mpi.comm()), "MPI_Bcast of the NCCL id");
    detail::nccl_check(ncclCommInitRank(&comm_, mpi.size(), id, mpi.rank()), "ncclCommInitRank");
    detail::cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  ~NcclCommunicator() {
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  // One GPU per process: the local rank's, among the GPUs this node shows.
  static int select_local_gpu(int local_rank) {
    int count = 0;
    detail::cuda_check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    KILN_CHECK(count > 0, "NcclCommunicator: no GPU is visible to this process");
    const int gpu = local_rank % count;
    detail::cuda_check(cudaSetDevice(gpu), "cudaSetDevice");
    return gpu;
  }

  int rank() const { return mpi_.rank(); }
  int size() const { return mpi_.size(); }

  Pending start_all_reduce(TensorList<Cuda> tensors, ReduceOp op) {
    after_compute();
    detail::nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (auto* t : tensors)
      if (t->numel())
        detail::nccl_check(ncclAllReduce(t->data(), t->data(), t->numel(), ncclFloat, nccl_op(op), comm_, stream_),
                           "ncclAllReduce");
    detail::nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    Pending p;
    detail::cuda_check(cudaEventCreateWithFlags(&p.done_, cudaEventDisableTiming), "cudaEventCreate");
    detail::cuda_check(cudaEventRecord(p.done_, stream_), "cudaEventRecord");
    return p;
  }
  void all_reduce(TensorList<Cuda> tensors, ReduceOp op) { start_all_reduce(tensors, op).wait(); }

  void broadcast(TensorList<Cuda> tensors, int root) {
    KILN_CHECK(root >= 0 && root < size(), "NcclCommunicator::broadcast: root ", root, " is not a rank of ", size());
    after_compute();
    detail::nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (auto* t : tensors)
      if (t->numel())
        detail::nccl_check(ncclBroadcast(t->data(), t->data(), t->numel(), ncclFloat, root, comm_, stream_),
                           "ncclBroadcast");
    detail::nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    detail::cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  void all_reduce(std::span<double> values, ReduceOp op) { mpi_.all_reduce(values, op); }
  void barrier() {
    detail::cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    mpi_.barrier();
  }

 private:
  static ncclRedOp_t nccl_op(ReduceOp op) {
    switch (op) {
      case ReduceOp::sum:
        return ncclSum;
      case ReduceOp::mean:
        return ncclAvg;
      case ReduceOp::max:
        return ncclMax;
    }
    return ncclSum;
  }
  // The NCCL stream starts after everything queued on the compute stream so far.
  void after_compute() {
    cudaEvent_t ready;
    detail::cuda_check(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    detail::cuda_check(cudaEventRecord(ready, kiln::cuda::current_stream()), "cudaEventRecord");
    detail::cuda_check(cudaStreamWaitEvent(stream_, ready, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);  // released once the wait is done
  }

  MpiCommunicator& mpi_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace kiln::dist
