#pragma once
// The communicator concept: how the replicas of a data-parallel run talk. A communicator
// is one process's handle on a group of `size()` processes, numbered 0 .. size() - 1.
// Every operation is collective: all processes of the group call it, in the same order,
// with tensors of the same shapes (else it blocks or fails, as in MPI and NCCL).
//
//   rank(), size()
//   all_reduce(tensors, op)        each tensor becomes the element-wise sum (or mean) of
//                                  that tensor over the group, identically on every rank
//   start_all_reduce(tensors, op)  the same, started: returns a Pending whose wait()
//                                  finishes it (the tensors must not be touched until then)
//   all_reduce(doubles, op)        host numbers: sum, mean or max
//   broadcast(tensors, root)       every rank's tensors become root's
//   barrier()
//
// Implementations: LocalCommunicator (one process, kiln/dist/local.hpp), MpiCommunicator
// (Cpu tensors, kiln/dist/mpi.hpp, KILN_MPI), NcclCommunicator (Cuda tensors, NCCL
// bootstrapped through MPI, kiln/dist/nccl.hpp, KILN_NCCL). Nothing else in kiln includes
// kiln/dist/: the layers cooperate through the hooks of kiln/nn/replicas.hpp.
#include <concepts>
#include <span>

#include "kiln/core/tensor.hpp"

namespace kiln::dist {

enum class ReduceOp { sum, mean, max };

template <class Device>
using TensorList = std::span<Tensor<float, Device>* const>;

template <class C>
concept Communicator = requires(C& c, TensorList<typename C::device> tensors, std::span<double> host, ReduceOp op,
                                int root) {
  typename C::device;
  { c.rank() } -> std::convertible_to<int>;
  { c.size() } -> std::convertible_to<int>;
  c.all_reduce(tensors, op);
  c.all_reduce(host, op);
  c.broadcast(tensors, root);
  c.barrier();
  { c.start_all_reduce(tensors, op) } -> std::move_constructible;
  c.start_all_reduce(tensors, op).wait();
};

}  // namespace kiln::dist
