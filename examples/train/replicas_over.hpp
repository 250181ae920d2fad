#pragma once
// Replicas<Device> over a kiln/dist communicator, and World's MPI state: for world.cpp (Cpu)
// and world_cuda.cpp (Cuda, NCCL under nvcc) only.
#include <kiln/dist/gradient_buckets.hpp>
#include <kiln/dist/local.hpp>
#include <kiln/dist/sync_batchnorm.hpp>
#ifdef KILN_WITH_MPI
#include <kiln/dist/mpi.hpp>
#endif

#include <memory>
#include <optional>

#include "world.hpp"

namespace kiln::programs {

struct World::Mpi {
#ifdef KILN_WITH_MPI
  Mpi(int* argc, char*** argv) : session(argc, argv) {}
  dist::MpiSession session;
  dist::MpiCommunicator comm;
  // world_cuda.cpp's NCCL communicator (its type exists under nvcc only); destroyed before MPI.
  std::shared_ptr<void> nccl;
#endif
};

template <class Device, class Comm>
class ReplicasOver final : public Replicas<Device> {
 public:
  explicit ReplicasOver(Comm& comm) : comm_(comm) {}
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  void broadcast(const std::vector<Tensor<float, Device>*>& tensors) override {
    comm_.broadcast(dist::TensorList<Device>(tensors), 0);
  }
  void all_reduce(std::span<double> values, dist::ReduceOp op) override { comm_.all_reduce(values, op); }
  void use_gradients(const std::vector<Tensor<float, Device>*>& grads, std::size_t bucket_bytes) override {
    buckets_.emplace(comm_, grads, bucket_bytes);
  }
  void begin_backward() override {
    if (buckets_) buckets_->begin();
  }
  void finish_backward() override {
    if (buckets_) buckets_->finish();
  }
  std::size_t bucket_count() const override { return buckets_ ? buckets_->bucket_count() : 0; }
  void synchronise_batchnorm() override {
    if (comm_.size() > 1) sync_bn_.emplace(comm_);
  }

 private:
  Comm& comm_;
  std::optional<dist::GradientBuckets<Comm>> buckets_;
  std::optional<dist::SyncBatchNormScope<Comm>> sync_bn_;
};

template <class Device>
std::unique_ptr<Replicas<Device>> one_process() {
  static dist::LocalCommunicator<Device> one;
  return std::make_unique<ReplicasOver<Device, dist::LocalCommunicator<Device>>>(one);
}

}  // namespace kiln::programs
