#pragma once
// kiln-train's data parallelism: `mpirun -np N kiln-train ...` runs N ranks that each train on
// their own share of every global batch (N x --batch crops) and average their gradients.
// World is this process's place in the launch (read from the launcher's environment, MPI
// started only when there is a launch); ReplicaGroup is what the training loop calls (agree on
// small numbers, gradient buckets around backward, BatchNorm over the global batch), and
// Replicas<Device> adds what the model's side needs (broadcast the starting state, the gradient
// buckets' tensors). Without MPI in the build, or without a launcher, it is one rank and nothing
// is communicated. See docs/distributed.md.
#include <kiln/core/device.hpp>
#include <kiln/dist/communicator.hpp>
#include <kiln/dist/environment.hpp>

#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace kiln::programs {

// What the training loop needs from the group of ranks, whatever carries it.
class ReplicaGroup {
 public:
  virtual ~ReplicaGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool root() const { return rank() == 0; }
  // Small host numbers (flags, the loss) reduced over the ranks.
  virtual void all_reduce(std::span<double> values, dist::ReduceOp op) = 0;
  // Around backward: the gradient buckets started during it, then finished.
  virtual void begin_backward() = 0;
  virtual void finish_backward() = 0;
  virtual std::size_t bucket_count() const = 0;
  // BatchNorm with the global batch's statistics while training (SyncBatchNorm).
  virtual void synchronise_batchnorm() = 0;
};

// ... and what the network's side adds, for its device's tensors.
template <class Device>
class Replicas : public ReplicaGroup {
 public:
  // Every rank's tensors become rank 0's.
  virtual void broadcast(const std::vector<Tensor<float, Device>*>& tensors) = 0;
  // Gradient averaging in buckets of `bucket_bytes`, started during backward.
  virtual void use_gradients(const std::vector<Tensor<float, Device>*>& grads, std::size_t bucket_bytes) = 0;
};

// dist::GradientBuckets' default (kiln/dist/gradient_buckets.hpp): --bucket-mb 4.
inline constexpr std::size_t kDefaultBucketBytes = std::size_t(4) << 20;

// This process in the launch. Made first thing in main() (MPI_Init wants argc/argv).
class World {
 public:
  World(int* argc, char*** argv);
  ~World();

  int rank() const { return launch_.rank; }
  int size() const { return launch_.size; }
  bool root() const { return launch_.rank == 0; }
  const dist::LaunchInfo& launch() const { return launch_; }

  // "rank 1 of 2: " on a multi-rank run, else "".
  std::string prefix() const {
    return size() > 1 ? "rank " + std::to_string(rank()) + " of " + std::to_string(size()) + ": " : "";
  }

  // A rank that fails ends every rank (the others would wait for it in the next all-reduce).
  [[noreturn]] void fail(int code);

  // MPI's session and communicator (world.cpp; null without a multi-rank launch).
  struct Mpi;
  Mpi* mpi() { return mpi_.get(); }

 private:
  dist::LaunchInfo launch_;
  std::unique_ptr<Mpi> mpi_;
};

// The ranks for Device's tensors (one process when `world` is null or has one rank). The Cpu
// one is in world.cpp, the Cuda one in world_cuda.cpp (built with the Cuda device only).
template <class Device>
std::unique_ptr<Replicas<Device>> make_replicas(World* world);
template <>
std::unique_ptr<Replicas<Cpu>> make_replicas<Cpu>(World* world);
template <>
std::unique_ptr<Replicas<Cuda>> make_replicas<Cuda>(World* world);

// The hidden test option --debug-fail-rank R@STEP[:error]: rank R dies (SIGKILL, like a crash)
// or throws an error at global step STEP.
struct RankFailure {
  int rank = -1;
  long long step = 0;
  bool kill = true;
};
std::optional<RankFailure> parse_rank_failure(const std::string& text);
void maybe_fail(const std::optional<RankFailure>& f, int rank, long long step);

// Where a rank other than 0 sends its progress line: nowhere.
FILE* null_stream();

}  // namespace kiln::programs
