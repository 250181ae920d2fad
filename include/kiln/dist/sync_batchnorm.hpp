#pragma once
// SyncBatchNorm: while a SyncBatchNormScope lives, every BatchNorm2d of this process
// normalises in training with the statistics of the global batch, summed across the
// communicator's ranks (kiln::replica_sum, kiln/nn/replicas.hpp). Like
// torch.nn.SyncBatchNorm; the default without it is per-rank statistics (DDP's default).
// Forward and backward are collective: every rank must run the same layers.
#include "kiln/dist/communicator.hpp"
#include "kiln/nn/replicas.hpp"

namespace kiln::dist {

template <Communicator Comm>
class SyncBatchNormScope {
 public:
  explicit SyncBatchNormScope(Comm& comm) : previous_(replica_sum()) {
    replica_sum() = [&comm](std::span<double> values) { comm.all_reduce(values, ReduceOp::sum); };
  }
  SyncBatchNormScope(const SyncBatchNormScope&) = delete;
  SyncBatchNormScope& operator=(const SyncBatchNormScope&) = delete;
  ~SyncBatchNormScope() { replica_sum() = previous_; }

 private:
  ReplicaSum previous_;
};

}  // namespace kiln::dist
