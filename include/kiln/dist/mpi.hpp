#pragma once
// MPI for Cpu tensors: MpiSession starts and ends MPI in a program, MpiCommunicator is the
// Communicator (kiln/dist/communicator.hpp) over MPI_COMM_WORLD. Needs <mpi.h> and the MPI
// library (CMake: -DKILN_MPI=ON, link kiln::mpi). A tensor list travels as one packed
// buffer: one MPI call per list, whatever the number of tensors.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/core/error.hpp"
#include "kiln/dist/communicator.hpp"

namespace kiln::dist {

namespace detail {

inline void mpi_check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw Error(std::string("MPI: ") + what + " failed: " + std::string(text, std::size_t(len)));
}

inline MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::max ? MPI_MAX : MPI_SUM; }

inline std::size_t total_numel(TensorList<Cpu> tensors) {
  std::size_t n = 0;
  for (const auto* t : tensors) n += t->numel();
  return n;
}
inline void pack(TensorList<Cpu> tensors, float* out) {
  for (const auto* t : tensors) {
    if (t->numel()) std::memcpy(out, t->data(), t->bytes());
    out += t->numel();
  }
}
// Copies back, divided by `divide` (1: a sum or max).
inline void unpack(const float* in, TensorList<Cpu> tensors, float divide) {
  for (auto* t : tensors) {
    float* d = t->data();
    if (divide == 1.0f) {
      if (t->numel()) std::memcpy(d, in, t->bytes());
    } else {
      for (std::size_t i = 0; i < t->numel(); ++i) d[i] = in[i] / divide;
    }
    in += t->numel();
  }
}

}  // namespace detail

// MPI_Init_thread (FUNNELED: only the thread that made the session calls MPI) unless MPI is
// already running; MPI_Finalize at the end if this session started it.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv) {
    int up = 0;
    MPI_Initialized(&up);
    if (up) return;
    int provided = 0;
    detail::mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  ~MpiSession() {
    int down = 0;
    MPI_Finalized(&down);
    if (owner_ && !down) MPI_Finalize();
  }

 private:
  bool owner_ = false;
};

// Ends every process of the job (a rank that failed must not leave the others waiting in a
// collective): MPI_Abort on MPI_COMM_WORLD. Does not return.
[[noreturn]] inline void mpi_abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();
}

class MpiCommunicator {
 public:
  using device = Cpu;

  // A started all-reduce: the packed buffer travels with it (its heap block does not move
  // when the Pending does).
  class Pending {
   public:
    Pending() = default;
    Pending(Pending&& o) noexcept { *this = std::move(o); }
    Pending& operator=(Pending&& o) noexcept {
      std::swap(request_, o.request_), std::swap(buffer_, o.buffer_), std::swap(tensors_, o.tensors_);
      std::swap(divide_, o.divide_);
      return *this;
    }
    ~Pending() {
      if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
    }
    // Whether it has finished (MPI_Test: also lets MPI make progress on it).
    bool done() {
      int flag = 1;
      if (request_ != MPI_REQUEST_NULL) detail::mpi_check(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE), "MPI_Test");
      return flag != 0;
    }
    void wait() {
      if (request_ != MPI_REQUEST_NULL) detail::mpi_check(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Wait");
      if (!tensors_.empty()) detail::unpack(buffer_.data(), tensors_, divide_);
      tensors_.clear();
    }

   private:
    friend class MpiCommunicator;
    MPI_Request request_ = MPI_REQUEST_NULL;
    std::vector<float> buffer_;
    std::vector<Tensor<float, Cpu>*> tensors_;
    float divide_ = 1.0f;
  };

  MpiCommunicator() {
    detail::mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  ~MpiCommunicator() {
    int down = 0;
    MPI_Finalized(&down);
    if (!down) MPI_Comm_free(&comm_);
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm comm() const { return comm_; }

  void all_reduce(TensorList<Cpu> tensors, ReduceOp op) {
    const std::size_t n = detail::total_numel(tensors);
    buffer_.resize(n);
    detail::pack(tensors, buffer_.data());
    for (std::size_t at = 0; at < n; at += std::size_t(INT_MAX)) {  // MPI counts are int
      const int count = int(std::min<std::size_t>(n - at, std::size_t(INT_MAX)));
      detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, buffer_.data() + at, count, MPI_FLOAT, detail::mpi_op(op), comm_),
                        "MPI_Allreduce");
    }
    detail::unpack(buffer_.data(), tensors, op == ReduceOp::mean ? float(size_) : 1.0f);
  }

  Pending start_all_reduce(TensorList<Cpu> tensors, ReduceOp op) {
    Pending p;
    const std::size_t n = detail::total_numel(tensors);
    KILN_CHECK(n <= std::size_t(INT_MAX), "MpiCommunicator::start_all_reduce: ", n,
               " values in one list, more than an MPI count can hold: use smaller buckets");
    p.buffer_.resize(n);
    detail::pack(tensors, p.buffer_.data());
    p.tensors_.assign(tensors.begin(), tensors.end());
    p.divide_ = op == ReduceOp::mean ? float(size_) : 1.0f;
    detail::mpi_check(
        MPI_Iallreduce(MPI_IN_PLACE, p.buffer_.data(), int(n), MPI_FLOAT, detail::mpi_op(op), comm_, &p.request_),
        "MPI_Iallreduce");
    return p;
  }

  void all_reduce(std::span<double> values, ReduceOp op) {
    KILN_CHECK(values.size() <= std::size_t(INT_MAX), "MpiCommunicator::all_reduce: too many values");
    detail::mpi_check(
        MPI_Allreduce(MPI_IN_PLACE, values.data(), int(values.size()), MPI_DOUBLE, detail::mpi_op(op), comm_),
        "MPI_Allreduce");
    if (op == ReduceOp::mean)
      for (double& v : values) v /= size_;
  }

  void broadcast(TensorList<Cpu> tensors, int root) {
    KILN_CHECK(root >= 0 && root < size_, "MpiCommunicator::broadcast: root ", root, " is not a rank of ", size_);
    const std::size_t n = detail::total_numel(tensors);
    buffer_.resize(n);
    if (rank_ == root) detail::pack(tensors, buffer_.data());
    for (std::size_t at = 0; at < n; at += std::size_t(INT_MAX)) {
      const int count = int(std::min<std::size_t>(n - at, std::size_t(INT_MAX)));
      detail::mpi_check(MPI_Bcast(buffer_.data() + at, count, MPI_FLOAT, root, comm_), "MPI_Bcast");
    }
    if (rank_ != root) detail::unpack(buffer_.data(), tensors, 1.0f);
  }

  void barrier() { detail::mpi_check(MPI_Barrier(comm_), "MPI_Barrier"); }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<float> buffer_;
};

}  // namespace kiln::dist
