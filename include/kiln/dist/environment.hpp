#pragma once
// Where this process stands in a launch, read from the environment the launcher sets:
// Open MPI's mpirun (OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK), MPICH and Intel MPI (PMI_RANK,
// PMI_SIZE), PMIx launchers (PMIX_RANK), Slurm's srun (SLURM_PROCID, SLURM_NTASKS). A
// process started without a launcher is rank 0 of 1. Read before MPI_Init, so a program
// knows whether to start MPI at all.
#include <cstdlib>
#include <string>

namespace kiln::dist {

struct LaunchInfo {
  int rank = 0, size = 1, local_rank = 0;
  std::string launcher;  // "" (none), "Open MPI", "PMI", "PMIx", "Slurm"
  bool launched() const { return !launcher.empty(); }
};

inline LaunchInfo launch_info() {
  auto number = [](const char* name, int fallback) {
    const char* v = std::getenv(name);
    if (!v || !*v) return fallback;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    return *end == '\0' && n >= 0 && n < (1L << 30) ? int(n) : fallback;
  };
  auto has = [](const char* name) { return std::getenv(name) != nullptr; };
  LaunchInfo info;
  if (has("OMPI_COMM_WORLD_RANK")) {
    info = {number("OMPI_COMM_WORLD_RANK", 0), number("OMPI_COMM_WORLD_SIZE", 1),
            number("OMPI_COMM_WORLD_LOCAL_RANK", 0), "Open MPI"};
  } else if (has("PMI_RANK")) {
    info = {number("PMI_RANK", 0), number("PMI_SIZE", 1), number("MPI_LOCALRANKID", 0), "PMI"};
  } else if (has("PMIX_RANK")) {
    info = {number("PMIX_RANK", 0), number("PMIX_SIZE", number("OMPI_COMM_WORLD_SIZE", 1)),
            number("PMIX_LOCAL_RANK", 0), "PMIx"};
  } else if (has("SLURM_PROCID") && has("SLURM_NTASKS") && number("SLURM_NTASKS", 1) > 1) {
    info = {number("SLURM_PROCID", 0), number("SLURM_NTASKS", 1), number("SLURM_LOCALID", 0), "Slurm"};
  }
  if (info.size < 1) info.size = 1;
  return info;
}

}  // namespace kiln::dist
