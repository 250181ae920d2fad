#pragma once
// The TF32 forward's plan: which kernel convolves a shape fs (a forward's, or the input gradient's
// transposed one, mma_conv::transposed), on which block tile, in how many split-K slices, and the
// workspace that needs. Two families read the same packed weights (mma_conv's packing, the same k
// order) and the same split-K layout (partial tiles, then a counter per tile, zeroed by the packing):
//   * mma.sync (conv2d_mma.cuh): 128 x 64, 128 x 128 or the tall 256 x 64 tiles, mma_conv's plan;
//   * wgmma (conv2d_wgmma.cuh, sm_90a only): 128 x 128, 128 x 256 or (split) 64 x 128 tiles,
//     where the model (tests/emucheck/predict.py) says it is faster: 3 x 3 filters with 128 or
//     more output channels (docs/kernels.md, "wgmma in the backend": with fewer its 128-wide tiles
//     are mostly padding; a 128-row tile in 2 slices needs 32 k steps per slice, or its last block,
//     adding the partial tiles alone, costs more than the shared-memory bandwidth wgmma saves).
// The plan depends on the device (kiln::gpu::wgmma::runs_here) and on a preference (model, either
// family alone), so a workspace is sized for either family (workspace_floats(fs)) and the input
// gradient's packing kept from the forward sits past the larger of the two (dgrad_offset): the same
// workspace serves any device.
#include <algorithm>
#include <atomic>
#include <cstdint>

#include "conv2d_mma.cuh"
#include "conv2d_wgmma.cuh"
#include "kiln/core/conv_shape.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda::kernels::tf32_forward {

struct Plan {
  bool wgmma = false;  // conv2d_wgmma_forward_kernel, else the mma.sync kernels
  int bn = 64;         // block tile: rows x bn
  int rows = mma_conv::bm;
  int splits = 1;  // split-K slices
  bool operator==(const Plan&) const = default;
};

inline Plan mma_plan(const ConvShape& fs) {
  return {false, mma_conv::block_n(fs), mma_conv::block_m(fs), mma_conv::splits(fs)};
}
// wgmma: 128 x 256 or 128 x 128 tiles (wgmma_conv::block_n), or the short 64 x 128 tiles where 128-row
// ones would split into more than 2 slices (3 x 3): twice the tiles, so about half the slices of half
// the bytes, a quarter of the tail the tile's last block adds alone (by predict.py, at 64² crops the
// deep levels' forwards 61-70 % of the TF32 peak against 12-61 % on 128-row tiles; with 2 slices the
// 128-row tiles stay ahead: their warpgroups share a B stage).
inline Plan wgmma_plan(const ConvShape& fs) {
  const int bn = wgmma_conv::block_n(fs);
  const int rows = bn == 128 && fs.k == 3 && wgmma_conv::splits(fs, bn) > 2 ? wgmma_conv::short_bm : wgmma_conv::bm;
  return {true, bn, rows, wgmma_conv::splits(fs, bn, rows)};
}

// Whether the wgmma kernel takes fs in the backend: 3 x 3 filters (its 1 x 1 variants lose to mma.sync
// on every U-Net shape by the model, so the backend does not instantiate them) with Cin >= 16.
inline bool wgmma_takes(const ConvShape& fs) { return fs.k == 3 && wgmma_conv::supports(fs); }
// k steps per slice below which a 128-row wgmma tile's split-K tail outweighs its faster main loop.
inline constexpr int wgmma_min_slice_steps = 32;
// Whether the model prefers wgmma for fs (on a device that runs it); the same on every device.
inline bool wgmma_preferred(const ConvShape& fs) {
  if (!wgmma_takes(fs) || fs.c_out < 128) return false;
  const Plan p = wgmma_plan(fs);
  return p.splits == 1 || p.rows == wgmma_conv::short_bm || mma_conv::k_steps(fs) / p.splits >= wgmma_min_slice_steps;
}

// Which family the plans take on a device that runs both: the model's choice (the default),
// mma.sync only, or wgmma wherever it takes the shape (tests and benchmarks compare them). Process
// wide; change it between steps, not between a training forward and its backward (the input
// gradient's kept packing zeroed the split-K counters of the forward's plan).
enum class Preference { model, mma_sync, wgmma };
inline std::atomic<Preference>& preference_slot() {
  static std::atomic<Preference> slot{Preference::model};
  return slot;
}
inline Preference preference() { return preference_slot().load(std::memory_order_relaxed); }
inline void set_preference(Preference p) { preference_slot().store(p, std::memory_order_relaxed); }
// Sets a preference for a scope, restoring the one before.
class PreferenceScope {
 public:
  explicit PreferenceScope(Preference p) : before_(preference()) { set_preference(p); }
  ~PreferenceScope() { set_preference(before_); }
  PreferenceScope(const PreferenceScope&) = delete;
  PreferenceScope& operator=(const PreferenceScope&) = delete;

 private:
  Preference before_;
};

// Whether the plan takes wgmma for fs where the device runs it, by the preference.
inline bool wgmma_chosen(const ConvShape& fs) {
  switch (preference()) {
    case Preference::mma_sync:
      return false;
    case Preference::wgmma:
      return wgmma_takes(fs);
    default:
      return wgmma_preferred(fs);
  }
}
// The plan on a device that runs wgmma (wgmma_runs) or not.
inline Plan plan(const ConvShape& fs, bool wgmma_runs) {
  return wgmma_runs && wgmma_chosen(fs) ? wgmma_plan(fs) : mma_plan(fs);
}
// ... on the current device (its wgmma self-test runs once, on the first shape that would take it).
inline Plan plan(const ConvShape& fs) { return plan(fs, wgmma_chosen(fs) && kiln::gpu::wgmma::runs_here()); }

// The workspace of plan p: the packed weights, then with S > 1 slices the partial tiles and the counters.
inline std::int64_t workspace_floats(const ConvShape& fs, const Plan& p) {
  return mma_conv::workspace_floats(fs, p.splits, p.bn, p.rows);
}
// ... enough for the plan of any device and preference.
inline std::int64_t workspace_floats(const ConvShape& fs) {
  const std::int64_t mma = workspace_floats(fs, mma_plan(fs));
  return wgmma_takes(fs) ? std::max(mma, workspace_floats(fs, wgmma_plan(fs))) : mma;
}
// p with one slice where `available` floats cannot hold its partial tiles (a workspace planned without;
// wgmma then on 128-row tiles, the short ones being for split tiles).
inline Plan fitted(const ConvShape& fs, Plan p, std::int64_t available) {
  if (p.splits > 1 && available < workspace_floats(fs, p)) {
    p.splits = 1;
    if (p.wgmma) p.rows = wgmma_conv::bm;
  }
  return p;
}
// The split-K counters plan p's packing zeroes in `work`, and how many (none for one slice).
inline unsigned* counters(const ConvShape& fs, float* work, const Plan& p) {
  return mma_conv::counters(fs, work, p.splits, p.bn, p.rows);
}
inline int counter_count(const ConvShape& fs, const Plan& p) {
  return mma_conv::counter_count(fs, p.splits, p.bn, p.rows);
}

// A training workspace that keeps the input gradient's packing from the forward: the forward's
// region (workspace_floats(s), any device's plan), then from a 16-byte boundary at dgrad_offset(s)
// the input gradient's (the same for transposed(s)). The forward packs both regions' weights in one
// launch (conv2d_mma_pack_weights_both_kernel, zeroing both plans' counters); the backward's input
// gradient runs on the second region without packing. Nothing else writes it in between: the
// weight gradient, which puts its partial sums over both regions, runs after it.
inline std::int64_t dgrad_offset(const ConvShape& s) { return (workspace_floats(s) + 3) / 4 * 4; }
inline std::int64_t kept_workspace_floats(const ConvShape& s) {
  return dgrad_offset(s) + workspace_floats(mma_conv::transposed(s));
}

}  // namespace kiln::cuda::kernels::tf32_forward
