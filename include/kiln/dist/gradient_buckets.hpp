#pragma once
// GradientBuckets: data-parallel gradient averaging that overlaps the backward pass, as
// PyTorch's DistributedDataParallel does. The gradients are grouped, in reverse order of
// the parameters (the order backward completes them), into buckets of about
// `bucket_bytes`; while it lives, the object listens on kiln::gradient_ready_hook
// (kiln/nn/replicas.hpp), and the moment a bucket's last gradient is complete it starts
// that bucket's all-reduce (mean) while backward goes on. finish() starts whatever has not
// started and waits for all: then every rank holds the same averaged gradients.
//
//   GradientBuckets buckets(comm, grads);   // grads: the gradient tensors, in visit order
//   net.zero_grad(); buckets.begin();
//   loss ... net.backward(dy);
//   buckets.finish();                        // before the optimizer step
//
// With one rank nothing is communicated and no hook is installed.
#include <algorithm>
#include <cstddef>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kiln/dist/communicator.hpp"
#include "kiln/nn/layer.hpp"
#include "kiln/nn/replicas.hpp"

namespace kiln::dist {

template <Communicator Comm>
class GradientBuckets {
  using Device = typename Comm::device;
  using T = Tensor<float, Device>;
  using Pending = decltype(std::declval<Comm&>().start_all_reduce(TensorList<Device>{}, ReduceOp::mean));

 public:
  static constexpr std::size_t default_bucket_bytes = std::size_t(4) << 20;

  GradientBuckets(Comm& comm, const std::vector<T*>& grads, std::size_t bucket_bytes = default_bucket_bytes)
      : comm_(comm) {
    KILN_CHECK(bucket_bytes > 0, "GradientBuckets: the bucket size must be positive");
    std::size_t bytes = 0;
    for (auto it = grads.rbegin(); it != grads.rend(); ++it) {
      if (buckets_.empty() || bytes >= bucket_bytes) {
        buckets_.emplace_back();
        bytes = 0;
      }
      buckets_.back().tensors.push_back(*it);
      bucket_of_[*it] = buckets_.size() - 1;
      bytes += (*it)->bytes();
    }
    if (comm_.size() > 1) gradient_ready_hook<Device>() = [this](T& grad) { ready(grad); };
  }
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;
  ~GradientBuckets() {
    if (comm_.size() > 1) gradient_ready_hook<Device>() = nullptr;
  }

  // Before each backward pass.
  void begin() {
    for (Bucket& b : buckets_) b.ready = 0, b.pending.reset();
    started_early_ = 0;
  }

  // After backward: every gradient is the mean over the ranks.
  void finish() {
    if (comm_.size() == 1) return;
    for (Bucket& b : buckets_)
      if (!b.pending) b.pending.emplace(comm_.start_all_reduce(TensorList<Device>(b.tensors), ReduceOp::mean));
    for (Bucket& b : buckets_) b.pending->wait();
    for (Bucket& b : buckets_) b.pending.reset();
  }

  std::size_t bucket_count() const { return buckets_.size(); }
  // Buckets whose all-reduce the last backward pass started before finish().
  std::size_t started_during_backward() const { return started_early_; }

 private:
  struct Bucket {
    std::vector<T*> tensors;
    std::size_t ready = 0;
    std::optional<Pending> pending;
  };

  void ready(T& grad) {
    const auto it = bucket_of_.find(&grad);
    if (it == bucket_of_.end()) return;  // another network's parameter
    Bucket& b = buckets_[it->second];
    if (++b.ready == b.tensors.size() && !b.pending) {
      b.pending.emplace(comm_.start_all_reduce(TensorList<Device>(b.tensors), ReduceOp::mean));
      ++started_early_;
    }
    // Let the library move the buckets already in flight (MPI progresses inside its calls).
    for (Bucket& other : buckets_)
      if (other.pending) (void)other.pending->done();
  }

  Comm& comm_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const T*, std::size_t> bucket_of_;
  std::size_t started_early_ = 0;
};

// Every parameter and buffer (running statistics) of `net` becomes rank root's: the common
// starting point of a data-parallel run. Counters (num_batches_tracked) are left alone.
template <Communicator Comm, class Net>
void broadcast_state(Comm& comm, Net& net, int root = 0) {
  using Device = typename Comm::device;
  std::vector<Tensor<float, Device>*> state;
  net.visit(
      [&](StateRef<Device> ref) {
        if (ref.value) state.push_back(ref.value);
      },
      "");
  comm.broadcast(TensorList<Device>(state), root);
}

}  // namespace kiln::dist
