#pragma once
// What main() decided, and the training run it starts: the non-template interface between
// kiln-train's command line and its training loop (session.cpp).
#include <chrono>
#include <cstddef>
#include <string>

#include "../common/devices.hpp"
#include "../common/memory_budget.hpp"
#include "config.hpp"
#include "world.hpp"

namespace kiln::programs {

struct RunRequest {
  TrainConfig config;
  DeviceKind device = DeviceKind::cpu;
  std::string resume;        // checkpoint to continue from ("" = fresh run)
  double time_budget_s = 0;  // 0 = none
  bool overwrite = false;    // --overwrite: a fresh run may replace another run's files in OUT
  MemoryBudget budget;
  World* world = nullptr;  // the ranks of an mpirun launch (world.hpp); null: one process
  std::size_t bucket_bytes = kDefaultBucketBytes;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

// Trains config.model (with the classification head for --loss classify) on `device`; returns
// the exit code. Errors are thrown (ProgramError) or already printed (AlreadyReported).
int run_training(RunRequest req);

}  // namespace kiln::programs
