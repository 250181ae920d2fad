#pragma once
// Memory-traffic counters per launch, in checking builds (KILN_EMU_CHECK) with profiling on
// (KILN_EMU_PROFILE=1 or set_profile(true)); read them with profile_log().
//
// Every instrumented load/store of a kernel (emu_check.hpp) is recorded per thread with the
// instruction that made it (its return address). At every barrier and at the block's end the
// records of each warp are grouped into warp-level requests: the k-th execution of an
// instruction by each lane of the warp is one request, as the lanes of a converged warp execute
// it together on a GPU. Per request:
//   * global memory: the distinct 32-byte sectors the lanes touch (a fully coalesced 4-byte
//     access by 32 lanes is 4 sectors), and the bytes the lanes asked for (in all, and distinct
//     within the request: coalescing = distinct bytes / (32 x sectors));
//   * shared memory: wavefronts = the largest number of distinct 4-byte words any of the 32
//     banks must deliver (bank = word % 32; lanes reading the same word are a broadcast), so a
//     conflict-free request is 1 wavefront and an n-way conflict n, with the real lane mapping;
//     a request's conflict-free figure is ceil(distinct words / 32) (4 for an ldmatrix.x4).
// Tensor-core operations (wmma.hpp, mma.hpp) report the per-lane accesses of nvcc's code for them
// (fragment loads and stores, ldmatrix rows) and count their HMMA instructions and FLOPs; cp.async
// reports its shared-memory write at issue (emu_check.hpp); a float4 that clang's x86 build split
// into four 4-byte accesses counts as the one 16-byte request nvcc issues (profile_block_flush).
// Large grids are sampled: at most KILN_EMU_PROFILE_BLOCKS blocks (default 64, evenly spaced) are
// recorded and the request counts are scaled to the whole grid. The distinct global bytes of the
// launch (each 32-byte sector counted once, what DRAM must move at least if the cache held
// everything) are counted over every block. With set_profile_sampled_only(true) (a traffic table
// for large shapes, where the results do not matter) the other blocks do not run at all, and the
// distinct bytes are extrapolated: sectors seen by several sampled blocks count as shared by all
// blocks, the rest as private to a block (A + blocks x P, with A and P solved from the union of the
// sampled blocks' sectors and the sum of each block's own).
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL && KILN_EMU_CHECK

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "kiln/gpu/emu_allocations.hpp"
#include "kiln/gpu/emu_state.hpp"

namespace kiln::gpu::emu {

struct TrafficCounts {
  double requests = 0;             // warp-level instructions
  double units = 0;                // global: 32-byte sectors; shared: wavefronts
  double bytes = 0;                // bytes the lanes asked for
  double distinct_bytes = 0;       // of those, distinct within each request (lanes reading one word count once)
  double conflict_free_units = 0;  // shared: the wavefronts without bank conflicts, ceil(distinct words / 32)
};

struct LaunchProfile {
  std::string kernel;
  dim3 grid, block;
  std::size_t dynamic_shared_bytes = 0;
  std::uint64_t blocks = 0, sampled_blocks = 0;
  TrafficCounts global_load, global_store, shared_load, shared_store;
  TrafficCounts fragment_load;       // the shared loads of wmma fragments and ldmatrix rows (also in shared_load)
  double global_distinct_bytes = 0;  // distinct 32-byte sectors touched x 32
  double flops = 0;                  // declared by the caller (profile_log().back().flops = ...)
  double tensor_flops = 0;           // counted: 2*M*N*K of every warp-level mma (padding included)
  double hmma = 0;                   // counted: the HMMA instructions nvcc emits for them
};

inline std::atomic<bool>& profile_setting() {
  static std::atomic<bool> on{[] {
    const char* text = std::getenv("KILN_EMU_PROFILE");
    return text != nullptr && std::strcmp(text, "1") == 0;
  }()};
  return on;
}
inline void set_profile(bool on) { profile_setting().store(on); }
inline bool profiling() { return profile_setting().load(); }

inline std::atomic<bool>& profile_sampled_only_setting() {
  static std::atomic<bool> on{false};
  return on;
}
inline void set_profile_sampled_only(bool on) { profile_sampled_only_setting().store(on); }

inline unsigned profile_max_blocks() {
  static const unsigned count = [] {
    const char* text = std::getenv("KILN_EMU_PROFILE_BLOCKS");
    const long value = text ? std::atol(text) : 64;
    return static_cast<unsigned>(value > 0 ? value : 64);
  }();
  return count;
}

inline std::vector<LaunchProfile>& profile_log() {
  static std::vector<LaunchProfile> log;
  return log;
}

struct AccessRecord {
  std::uintptr_t site = 0, address = 0;
  std::uint8_t size = 0;
  bool store = false, shared = false;
};

struct ProfileState {
  bool launch_active = false, block_sampled = false, sampled_only = false;
  std::uint64_t launch_stamp = 0, sample_stride = 1;
  std::uint64_t unit_blocks = 1;                   // blocks per sampled unit: 1, or a cluster's
  std::vector<std::vector<AccessRecord>> records;  // per thread of the block (of the cluster: by rank, then thread)
  std::vector<std::uintptr_t> block_sectors;       // global sectors the sampled block touched
  double sum_block_distinct_sectors = 0;           // over the sampled blocks
};

inline ProfileState& profile_state() {
  static ProfileState state;
  return state;
}

inline void profile_launch_begin(const KernelInvocation& k, std::uint64_t block_count) {
  ProfileState& p = profile_state();
  p.launch_active = profiling();
  if (!p.launch_active) return;
  ++p.launch_stamp;
  p.unit_blocks = std::uint64_t{k.cluster.x} * k.cluster.y * k.cluster.z;
  const std::uint64_t units = block_count / p.unit_blocks;  // blocks, or clusters: sampled whole
  p.sample_stride = (units + profile_max_blocks() - 1) / profile_max_blocks();
  p.sampled_only = profile_sampled_only_setting().load();
  p.sum_block_distinct_sectors = 0;
  LaunchProfile entry;
  entry.kernel = k.name;
  entry.grid = k.grid;
  entry.block = k.block;
  entry.dynamic_shared_bytes = k.dynamic_shared_bytes;
  entry.blocks = block_count;
  profile_log().push_back(std::move(entry));
}

// In sampled-only mode the runner skips the blocks (or clusters: `unit`) that are not recorded.
inline bool profile_skips_block(std::uint64_t unit) {
  const ProfileState& p = profile_state();
  return p.launch_active && p.sampled_only && unit % p.sample_stride != 0;
}

// A run of `count` blocks (one, or a cluster's by rank), the launch's unit number `unit`.
inline void profile_blocks_begin(BlockContext* const* bs, unsigned count, std::uint64_t unit) {
  ProfileState& p = profile_state();
  p.block_sampled = p.launch_active && unit % p.sample_stride == 0;
  if (!p.block_sampled) return;
  profile_log().back().sampled_blocks += count;
  const std::size_t threads = std::size_t{count} * bs[0]->thread_count;
  if (p.records.size() < threads) p.records.resize(threads);
  for (auto& r : p.records) r.clear();
  p.block_sectors.clear();
}
// The record list of thread t (a cluster's threads by rank, then linear id).
inline std::size_t record_index(const EmulatedThread& t) {
  return std::size_t{t.block->cluster_rank} * t.block->thread_count + t.linear_id;
}

inline void profile_global_touch(Allocation& a, std::uintptr_t address, unsigned size) {
  ProfileState& p = profile_state();
  if (!p.launch_active) return;
  if (a.touched_launch != p.launch_stamp) {
    a.touched_sectors.assign((a.end - a.begin + 31) / 32 / 64 + 1, 0);
    a.touched_launch = p.launch_stamp;
  }
  for (std::uintptr_t s = (address - a.begin) / 32; s <= (address + size - 1 - a.begin) / 32; ++s)
    a.touched_sectors[s / 64] |= std::uint64_t{1} << (s % 64);
  if (p.block_sampled)
    for (std::uintptr_t s = address / 32; s <= (address + size - 1) / 32; ++s) p.block_sectors.push_back(s);
}

inline void profile_record(const EmulatedThread& t, std::uintptr_t site, std::uintptr_t address, unsigned size,
                           bool store, bool shared) {
  ProfileState& p = profile_state();
  if (!p.block_sampled) return;
  p.records[record_index(t)].push_back({site, address, static_cast<std::uint8_t>(size), store, shared});
}

// One warp-level tensor-core operation (called by one lane of the warp): `hmma` SASS HMMA
// instructions doing `flops` floating-point operations.
inline void profile_tensor_op(double hmma, double flops) {
  const ProfileState& p = profile_state();
  if (!p.block_sampled) return;
  LaunchProfile& entry = profile_log().back();
  entry.hmma += hmma;
  entry.tensor_flops += flops;
}

// A warpgroup tensor-core operation's operand read from shared memory (wgmma.hpp), the share of one
// warp (called by one lane of it): one request of `bytes`, conflict-free (the canonical layouts'
// 16-byte rows in 128-byte wavefronts), also counted as a fragment load.
inline void profile_shared_operand_read(double bytes) {
  const ProfileState& p = profile_state();
  if (!p.block_sampled) return;
  LaunchProfile& entry = profile_log().back();
  for (TrafficCounts* c : {&entry.shared_load, &entry.fragment_load}) {
    c->requests += 1;
    c->units += bytes / 128;
    c->bytes += bytes;
    c->distinct_bytes += bytes;
    c->conflict_free_units += bytes / 128;
  }
}

// One warp-level request: the lanes' accesses of one execution of one instruction.
inline void count_request(const std::vector<std::pair<std::uintptr_t, unsigned>>& lanes, bool shared,
                          TrafficCounts& c) {
  c.requests += 1;
  std::vector<std::uintptr_t> units;
  std::vector<std::pair<std::uintptr_t, unsigned>> ranges(lanes);
  std::sort(ranges.begin(), ranges.end());
  std::uintptr_t covered_to = 0;
  for (const auto& [address, size] : ranges) {
    const std::uintptr_t end = address + size;
    if (end > covered_to) c.distinct_bytes += static_cast<double>(end - std::max(address, covered_to));
    covered_to = std::max(covered_to, end);
  }
  for (const auto& [address, size] : lanes) {
    c.bytes += size;
    const unsigned shift = shared ? 2 : 5;  // 4-byte words in banks, or 32-byte sectors
    for (std::uintptr_t u = address >> shift; u <= (address + size - 1) >> shift; ++u) units.push_back(u);
  }
  std::sort(units.begin(), units.end());
  units.erase(std::unique(units.begin(), units.end()), units.end());
  if (!shared) {
    c.units += static_cast<double>(units.size());
    return;
  }
  std::array<unsigned, 32> per_bank{};
  for (std::uintptr_t word : units) ++per_bank[word % 32];
  c.units += *std::max_element(per_bank.begin(), per_bank.end());
  c.conflict_free_units += static_cast<double>((units.size() + 31) / 32);
}

// Groups the recorded accesses of every warp into requests and counts them.
inline void profile_block_flush(const BlockContext& b) {
  ProfileState& p = profile_state();
  if (!p.block_sampled) return;
  LaunchProfile& entry = profile_log().back();
  struct Keyed {
    std::uintptr_t site;
    std::uint32_t occurrence;
    bool store, shared;
    std::uintptr_t address;
    unsigned size;
  };
  std::vector<Keyed> keyed;
  std::array<std::vector<Keyed>, 32> per_lane;
  std::unordered_map<std::uintptr_t, std::uint32_t> occurrences;
  // For split_vector_runs: per (site, occurrence), the lanes that executed it and those whose run starts there.
  struct RunVotes {
    unsigned executed = 0, starting = 0;
    std::uintptr_t sites[4] = {};
    bool consistent = true;
  };
  std::unordered_map<std::uintptr_t, RunVotes> votes;
  auto key_of = [](const Keyed& k) { return k.site * 0x9e3779b97f4a7c15ull ^ k.occurrence; };
  auto starts_run = [](const std::vector<Keyed>& r, std::size_t j) {
    if (j + 4 > r.size() || r[j].size != 4 || r[j].address % 16 != 0) return false;
    for (std::size_t m = 1; m < 4; ++m)
      if (r[j + m].size != 4 || r[j + m].address != r[j].address + 4 * m || r[j + m].store != r[j].store ||
          r[j + m].shared != r[j].shared || r[j + m].site == r[j + m - 1].site)
        return false;
    return true;
  };
  const std::size_t base = std::size_t{b.cluster_rank} * b.thread_count;  // (a cluster's block: its records)
  for (unsigned warp = 0; warp * 32 < b.thread_count; ++warp) {
    keyed.clear();
    votes.clear();
    const unsigned lanes_in_warp = std::min(32u, b.thread_count - warp * 32);
    for (unsigned lane = 0; lane < lanes_in_warp; ++lane) {
      occurrences.clear();
      per_lane[lane].clear();
      for (const AccessRecord& r : p.records[base + warp * 32 + lane])
        per_lane[lane].push_back({r.site, occurrences[r.site]++, r.store, r.shared, r.address, r.size});
      p.records[base + warp * 32 + lane].clear();
      for (std::size_t j = 0; j < per_lane[lane].size(); ++j) {
        RunVotes& v = votes[key_of(per_lane[lane][j])];
        ++v.executed;
        if (!starts_run(per_lane[lane], j)) continue;
        const bool first = v.starting++ == 0;
        for (std::size_t m = 0; m < 4; ++m) {
          if (first)
            v.sites[m] = per_lane[lane][j + m].site;
          else if (v.sites[m] != per_lane[lane][j + m].site)
            v.consistent = false;
        }
      }
    }
    // Split vector accesses: clang's x86 build turns a 16-byte vector access (a float4) into four
    // 4-byte ones from four instructions, where nvcc issues one LDS.128 / LDG.128 / STS.128. A run
    // of four such records of a lane (consecutive, contiguous, an aligned 16-byte block, different
    // instructions, same space and direction) is one 16-byte access at its first instruction, if
    // every lane that executed that instruction made the same run (scalar code that happens to read
    // 4 neighbours in some lanes only stays as it is).
    for (unsigned lane = 0; lane < lanes_in_warp; ++lane) {
      const std::vector<Keyed>& r = per_lane[lane];
      for (std::size_t j = 0; j < r.size(); ++j) {
        if (r[j].size == 0) continue;  // an execution without an access (a zero-fill cp.async's read)
        const auto v = votes.find(key_of(r[j]));
        if (starts_run(r, j) && v->second.consistent && v->second.starting == v->second.executed) {
          keyed.push_back(r[j]);
          keyed.back().size = 16;
          j += 3;
        } else {
          keyed.push_back(r[j]);
        }
      }
    }
    std::sort(keyed.begin(), keyed.end(), [](const Keyed& x, const Keyed& y) {
      return x.site != y.site               ? x.site < y.site
             : x.occurrence != y.occurrence ? x.occurrence < y.occurrence
                                            : x.store < y.store;
    });
    std::vector<std::pair<std::uintptr_t, unsigned>> lanes;
    for (std::size_t i = 0; i < keyed.size();) {
      std::size_t j = i;
      lanes.clear();
      while (j < keyed.size() && keyed[j].site == keyed[i].site && keyed[j].occurrence == keyed[i].occurrence &&
             keyed[j].store == keyed[i].store) {
        lanes.emplace_back(keyed[j].address, keyed[j].size);
        ++j;
      }
      const Keyed& k = keyed[i];
      TrafficCounts& c = k.shared ? (k.store ? entry.shared_store : entry.shared_load)
                                  : (k.store ? entry.global_store : entry.global_load);
      count_request(lanes, k.shared, c);
      // wmma.hpp and mma.hpp tag their fragment accesses' sites with the top bit.
      if (k.shared && !k.store && (k.site >> 63) != 0) count_request(lanes, true, entry.fragment_load);
      i = j;
    }
  }
}

inline void profile_blocks_end(BlockContext* const* bs, unsigned count) {
  for (unsigned r = 0; r < count; ++r) profile_block_flush(*bs[r]);
  ProfileState& p = profile_state();
  if (!p.block_sampled) return;
  std::sort(p.block_sectors.begin(), p.block_sectors.end());
  p.sum_block_distinct_sectors +=
      static_cast<double>(std::unique(p.block_sectors.begin(), p.block_sectors.end()) - p.block_sectors.begin());
}

// Scales the sampled counts to the grid and adds up the distinct global sectors.
inline void profile_launch_end() {
  ProfileState& p = profile_state();
  if (!p.launch_active) return;
  p.launch_active = p.block_sampled = false;
  LaunchProfile& entry = profile_log().back();
  if (entry.sampled_blocks > 0) {
    const double scale = static_cast<double>(entry.blocks) / static_cast<double>(entry.sampled_blocks);
    for (TrafficCounts* c :
         {&entry.global_load, &entry.global_store, &entry.shared_load, &entry.shared_store, &entry.fragment_load}) {
      c->requests *= scale;
      c->units *= scale;
      c->bytes *= scale;
      c->distinct_bytes *= scale;
      c->conflict_free_units *= scale;
    }
    entry.hmma *= scale;
    entry.tensor_flops *= scale;
  }
  std::uint64_t sectors = 0;
  for (auto& [begin, a] : allocation_registry().by_begin)
    if (a.touched_launch == p.launch_stamp)
      for (std::uint64_t word : a.touched_sectors) sectors += static_cast<std::uint64_t>(std::popcount(word));
  double distinct = static_cast<double>(sectors);
  // (in units: blocks, or clusters, whose sectors were summed whole)
  const double sampled = static_cast<double>(entry.sampled_blocks / p.unit_blocks);
  const double units = static_cast<double>(entry.blocks / p.unit_blocks);
  if (p.sampled_only && sampled > 1 && sampled < units) {
    const double shared = std::clamp((p.sum_block_distinct_sectors - distinct) / (sampled - 1), 0.0, distinct);
    distinct = shared + units * (distinct - shared) / sampled;
  }
  entry.global_distinct_bytes = 32.0 * distinct;
}

}  // namespace kiln::gpu::emu

#endif  // !KILN_GPU_REAL && KILN_EMU_CHECK
