#pragma once
// The order in which the emulator runs the threads of a block: forward (linear-id order, the
// default), reverse, or random from a seed. Under `random`, every sweep of the scheduler runs the
// block's threads in a fresh permutation, and in checking builds (KILN_EMU_CHECK) a thread also
// yields at random shared/global loads and stores. The permutations of a block depend only on the
// seed and the block's index (not on what ran before), so a seed reproduces a failing launch on
// its own (the launch's error message names it). Choose it with KILN_EMU_SCHEDULE=forward | reverse |
// random | random:SEED (random alone is seed 1), or set_schedule / set_schedule_seed.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kiln/gpu/error.hpp"

namespace kiln::gpu::emu {

enum class Schedule { forward, reverse, random };

struct ScheduleSetting {
  std::atomic<Schedule> schedule{Schedule::forward};
  std::atomic<std::uint64_t> seed{1};
};

// Reads KILN_EMU_SCHEDULE once.
KILN_EMU_ENTRY void read_schedule_environment(ScheduleSetting& s);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void read_schedule_environment(ScheduleSetting& s) {
  const char* text = std::getenv("KILN_EMU_SCHEDULE");
  if (text == nullptr || *text == '\0' || std::strcmp(text, "forward") == 0) return;
  if (std::strcmp(text, "reverse") == 0) {
    s.schedule = Schedule::reverse;
    return;
  }
  if (std::strncmp(text, "random", 6) == 0 && (text[6] == '\0' || text[6] == ':')) {
    s.schedule = Schedule::random;
    if (text[6] == ':') {
      char* end = nullptr;
      s.seed = std::strtoull(text + 7, &end, 10);
      if (end == text + 7 || *end != '\0')
        throw Error("KILN_EMU_SCHEDULE=random:SEED needs a decimal seed, not '" + std::string(text + 7) + "'");
    }
    return;
  }
  throw Error("KILN_EMU_SCHEDULE must be 'forward', 'reverse', 'random' or 'random:SEED', not '" + std::string(text) +
              "'");
}
#endif

inline ScheduleSetting& schedule_setting() {
  static ScheduleSetting setting;
  static const bool read = (read_schedule_environment(setting), true);
  (void)read;
  return setting;
}

// The order in which fibers of a block are run (tests use it to shake out races).
inline void set_schedule(Schedule schedule) { schedule_setting().schedule.store(schedule); }
inline Schedule schedule() { return schedule_setting().schedule.load(); }
inline void set_schedule_seed(std::uint64_t seed) { schedule_setting().seed.store(seed); }
inline std::uint64_t schedule_seed() { return schedule_setting().seed.load(); }

// "forward", "reverse" or "random:SEED": what to put in KILN_EMU_SCHEDULE to rerun this schedule.
KILN_EMU_ENTRY std::string schedule_text();
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string schedule_text() {
  switch (schedule()) {
    case Schedule::forward:
      return "forward";
    case Schedule::reverse:
      return "reverse";
    default:
      return "random:" + std::to_string(schedule_seed());
  }
}
#endif

// splitmix64: a tiny, good-enough generator for schedules.
inline std::uint64_t next_random(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The generator state of one block.
inline std::uint64_t block_schedule_state(std::uint64_t linear_block) {
  std::uint64_t state = schedule_seed();
  state ^= next_random(state) + linear_block * 0x9e3779b97f4a7c15ull;
  next_random(state);
  return state;
}

}  // namespace kiln::gpu::emu

#endif  // !KILN_GPU_REAL
