// World (MPI started for a multi-rank launch) and the Cpu replicas.
#include "replicas_over.hpp"

#include <csignal>
#include <cstdio>
#include <stdexcept>

#include "../common/cli.hpp"

namespace kiln::programs {

World::World(int* argc, char*** argv) : launch_(dist::launch_info()) {
  if (launch_.size <= 1) return;
#ifdef KILN_WITH_MPI
  mpi_ = std::make_unique<Mpi>(argc, argv);
  if (mpi_->comm.rank() != launch_.rank || mpi_->comm.size() != launch_.size)
    throw ProgramError("", "the launcher (" + launch_.launcher + ") says rank " + std::to_string(launch_.rank) +
                               " of " + std::to_string(launch_.size) + ", MPI says rank " +
                               std::to_string(mpi_->comm.rank()) + " of " + std::to_string(mpi_->comm.size()));
#else
  (void)argc, (void)argv;
  throw ProgramError("", "started as rank " + std::to_string(launch_.rank) + " of " + std::to_string(launch_.size) +
                             " by " + launch_.launcher +
                             ", but this kiln-train was built without MPI: rebuild with -DKILN_MPI=ON "
                             "(apt-get install libopenmpi-dev openmpi-bin), or run one process");
#endif
}

World::~World() = default;

void World::fail(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef KILN_WITH_MPI
  if (mpi_) dist::mpi_abort(code);
#endif
  std::exit(code);
}

template <>
std::unique_ptr<Replicas<Cpu>> make_replicas<Cpu>(World* world) {
  if (!world || world->size() == 1) return one_process<Cpu>();
#ifdef KILN_WITH_MPI
  return std::make_unique<ReplicasOver<Cpu, dist::MpiCommunicator>>(world->mpi()->comm);
#else
  throw ProgramError("", "this kiln-train was built without MPI");
#endif
}

std::optional<RankFailure> parse_rank_failure(const std::string& text) {
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

void maybe_fail(const std::optional<RankFailure>& f, int rank, long long step) {
  if (!f || f->rank != rank || f->step != step) return;
  if (f->kill) {
    std::fflush(stdout);
    std::raise(SIGKILL);
  }
  throw ProgramError("", "failing on purpose at global step " + std::to_string(step) + " (--debug-fail-rank)");
}

FILE* null_stream() {
  static FILE* f = std::fopen("/dev/null", "w");
  return f ? f : stderr;
}

}  // namespace kiln::programs
