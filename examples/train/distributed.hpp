#pragma once
// kiln-train's data parallelism: `mpirun -np N kiln-train ...` runs N ranks that each train on
// their own share of every global batch (N x --batch crops) and average their gradients.
// World is this process's place in the launch (read from the launcher's environment, MPI
// started only when there is a launch); Replicas<Device> is what the training loop calls:
// broadcast the starting state, all-reduce gradient buckets during backward, agree on small
// numbers, synchronise BatchNorm. Without MPI in the build, or without a launcher, it is one
// rank and nothing is communicated. See docs/distributed.md.
#include "../common/models.hpp"  // first: it brings <kiln/cuda.hpp> before the other kiln headers
#include <kiln/dist/environment.hpp>
#include <kiln/dist/gradient_buckets.hpp>
#include <kiln/dist/local.hpp>
#include <kiln/dist/sync_batchnorm.hpp>
#ifdef KILN_WITH_MPI
#include <kiln/dist/mpi.hpp>
#endif
#if defined(KILN_WITH_NCCL) && defined(__CUDACC__)
#include <kiln/dist/nccl.hpp>
#define KILN_TRAIN_HAVE_NCCL 1
#else
#define KILN_TRAIN_HAVE_NCCL 0
#endif

#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../common/cli.hpp"

namespace kiln::programs {

// What the training loop needs from the group of ranks, whatever carries it.
template <class Device>
class Replicas {
 public:
  virtual ~Replicas() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool root() const { return rank() == 0; }
  // Every rank's tensors become rank 0's.
  virtual void broadcast(const std::vector<Tensor<float, Device>*>& tensors) = 0;
  // Small host numbers (flags, the loss) reduced over the ranks.
  virtual void all_reduce(std::span<double> values, dist::ReduceOp op) = 0;
  // Gradient averaging in buckets of `bucket_bytes`, started during backward.
  virtual void use_gradients(const std::vector<Tensor<float, Device>*>& grads, std::size_t bucket_bytes) = 0;
  virtual void begin_backward() = 0;
  virtual void finish_backward() = 0;
  virtual std::size_t bucket_count() const = 0;
  // BatchNorm with the global batch's statistics while training (SyncBatchNorm).
  virtual void synchronise_batchnorm() = 0;
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

// This process in the launch. Made first thing in main() (MPI_Init wants argc/argv).
class World {
 public:
  World(int* argc, char*** argv) : launch_(dist::launch_info()) {
    if (launch_.size <= 1) return;
#ifdef KILN_WITH_MPI
    session_.emplace(argc, argv);
    mpi_.emplace();
    if (mpi_->rank() != launch_.rank || mpi_->size() != launch_.size)
      throw ProgramError("", "the launcher (" + launch_.launcher + ") says rank " + std::to_string(launch_.rank) +
                                 " of " + std::to_string(launch_.size) + ", MPI says rank " +
                                 std::to_string(mpi_->rank()) + " of " + std::to_string(mpi_->size()));
#else
    (void)argc, (void)argv;
    throw ProgramError("", "started as rank " + std::to_string(launch_.rank) + " of " + std::to_string(launch_.size) +
                               " by " + launch_.launcher +
                               ", but this kiln-train was built without MPI: rebuild with -DKILN_MPI=ON "
                               "(apt-get install libopenmpi-dev openmpi-bin), or run one process");
#endif
  }

  int rank() const { return launch_.rank; }
  int size() const { return launch_.size; }
  bool root() const { return launch_.rank == 0; }
  const dist::LaunchInfo& launch() const { return launch_; }

  // "rank 1 of 2: " on a multi-rank run, else "".
  std::string prefix() const {
    return size() > 1 ? "rank " + std::to_string(rank()) + " of " + std::to_string(size()) + ": " : "";
  }

  // A rank that fails ends every rank (the others would wait for it in the next all-reduce).
  [[noreturn]] void fail(int code) {
    std::fflush(stdout);
    std::fflush(stderr);
#ifdef KILN_WITH_MPI
    if (mpi_) dist::mpi_abort(code);
#endif
    std::exit(code);
  }

  template <class Device>
  std::unique_ptr<Replicas<Device>> replicas() {
    if (size() == 1) return one_process<Device>();
#ifdef KILN_WITH_MPI
    if constexpr (std::is_same_v<Device, Cpu>) {
      return std::make_unique<ReplicasOver<Cpu, dist::MpiCommunicator>>(*mpi_);
    } else {
#if KILN_TRAIN_HAVE_NCCL
      if (!nccl_) {
        dist::NcclCommunicator::select_local_gpu(launch_.local_rank);
        nccl_.emplace(*mpi_);
      }
      return std::make_unique<ReplicasOver<Cuda, dist::NcclCommunicator>>(*nccl_);
#else
      throw ProgramError("--device", "cuda on " + std::to_string(size()) +
                                         " ranks needs NCCL: build kiln-train with nvcc and -DKILN_NCCL=ON, or train "
                                         "with --device cpu");
#endif
    }
#else
    throw ProgramError("", "this kiln-train was built without MPI");
#endif
  }

 private:
  dist::LaunchInfo launch_;
#ifdef KILN_WITH_MPI
  std::optional<dist::MpiSession> session_;
  std::optional<dist::MpiCommunicator> mpi_;
#endif
#if KILN_TRAIN_HAVE_NCCL
  std::optional<dist::NcclCommunicator> nccl_;
#endif
};

// The hidden test option --debug-fail-rank R@STEP[:error]: rank R dies (SIGKILL, like a crash)
// or throws an error at global step STEP.
struct RankFailure {
  int rank = -1;
  long long step = 0;
  bool kill = true;
};
inline std::optional<RankFailure> parse_rank_failure(const std::string& text) {
  if (text.empty()) return std::nullopt;
  RankFailure f;
  char kind[16] = "";
  if (std::sscanf(text.c_str(), "%d@%lld:%15s", &f.rank, &f.step, kind) < 2 || f.rank < 0 || f.step < 1)
    throw std::runtime_error("'" + text + "' is not RANK@STEP or RANK@STEP:error");
  if (std::string(kind) == "error")
    f.kill = false;
  else if (*kind)
    throw std::runtime_error("'" + text + "': the kind after ':' can only be 'error'");
  return f;
}
inline void maybe_fail(const std::optional<RankFailure>& f, int rank, long long step) {
  if (!f || f->rank != rank || f->step != step) return;
  if (f->kill) {
    std::fflush(stdout);
    std::raise(SIGKILL);
  }
  throw ProgramError("", "failing on purpose at global step " + std::to_string(step) + " (--debug-fail-rank)");
}

// Where a rank other than 0 sends its progress line: nowhere.
inline FILE* null_stream() {
  static FILE* f = std::fopen("/dev/null", "w");
  return f ? f : stderr;
}

}  // namespace kiln::programs
