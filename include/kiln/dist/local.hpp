#pragma once
// LocalCommunicator<Device>: a group of one process, so that data-parallel code runs
// unchanged without MPI. Sum, mean and max of one value are that value; broadcast and
// barrier have nothing to do.
#include "kiln/dist/communicator.hpp"

namespace kiln::dist {

template <class Device>
class LocalCommunicator {
 public:
  using device = Device;
  struct Pending {
    void wait() {}
    bool done() { return true; }
  };

  int rank() const { return 0; }
  int size() const { return 1; }
  void all_reduce(TensorList<Device>, ReduceOp) {}
  void all_reduce(std::span<double>, ReduceOp) {}
  Pending start_all_reduce(TensorList<Device>, ReduceOp) { return {}; }
  void broadcast(TensorList<Device>, int root) {
    KILN_CHECK(root == 0, "LocalCommunicator::broadcast: root ", root, " is not a rank of a one-process group");
  }
  void barrier() {}
};

}  // namespace kiln::dist
