#pragma once
// The emulator's traffic counters (kernels/kiln/gpu/emu_profile.hpp) of a training step, per kernel:
// shared by kiln_emu_profile (the tables of docs/kernels.md) and test_traffic_targets.cpp (issue 20
// item 5's targets, checked in CI). Checking build only (KILN_EMU_CHECK).
//   profile_training_step(...)  one step of forward, loss, backward, optimizer with every launch logged
//   short_name(launched)        "k::add_kernel<4>" -> "add_kernel<4>"
//   KernelTraffic               a kernel's counters summed over its launches, and the figures of them
//   kernel_kind(name, traffic)  tensor-core, other convolution, or memory-bound
#include <string>

#include "kiln/core/mode.hpp"
#include "kiln/gpu/gpu.hpp"

static_assert(KILN_EMU_CHECK, "step_traffic.hpp reads the checking build's counters");

namespace kiln_step_traffic {

namespace emu = kiln::gpu::emu;

// "k::conv2d_forward_kernel<3>" -> "conv2d_forward_kernel<3>".
inline std::string short_name(const std::string& launched) {
  const std::size_t template_start = launched.find('<');
  const std::size_t colon = launched.rfind("::", template_start);
  return colon == std::string::npos ? launched : launched.substr(colon + 2);
}

inline bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

// Forward, loss, backward and optimizer step, twice (the first step plans and creates the
// optimizer state); the profile log then holds the second step's launches.
template <class Net, class Optimizer, class Loss, class Tensor>
void profile_training_step(Net& net, Optimizer& opt, Loss& loss, const Tensor& x, const Tensor& target) {
  for (int step = 0; step < 2; ++step) {
    emu::profile_log().clear();
    net.zero_grad();
    loss.forward(net.forward(x, kiln::Mode::train), target);
    net.backward(loss.backward());
    opt.step();
  }
}

struct KernelTraffic {
  int launches = 0;
  double flops = 0, request_distinct = 0, gld_req = 0, gld_sec = 0, gld_bytes = 0, gst_req = 0, gst_sec = 0,
         gst_bytes = 0, sld_req = 0, sld_wf = 0, sst_req = 0, sst_wf = 0, distinct = 0, tensor_flops = 0, hmma = 0,
         frag_req = 0, frag_wf = 0, frag_conflict_free_wf = 0, sst_conflict_free_wf = 0;

  void add(const emu::LaunchProfile& p) {
    ++launches;
    flops += p.flops;
    request_distinct += p.global_load.distinct_bytes + p.global_store.distinct_bytes;
    gld_req += p.global_load.requests, gld_sec += p.global_load.units, gld_bytes += p.global_load.bytes;
    gst_req += p.global_store.requests, gst_sec += p.global_store.units, gst_bytes += p.global_store.bytes;
    sld_req += p.shared_load.requests, sld_wf += p.shared_load.units;
    sst_req += p.shared_store.requests, sst_wf += p.shared_store.units;
    sst_conflict_free_wf += p.shared_store.conflict_free_units;
    frag_req += p.fragment_load.requests, frag_wf += p.fragment_load.units;
    frag_conflict_free_wf += p.fragment_load.conflict_free_units;
    distinct += p.global_distinct_bytes;
    tensor_flops += p.tensor_flops;
    hmma += p.hmma;
  }
  // The bytes the lanes asked for, distinct within each warp-level request / 32 x the sectors those
  // requests touched: 1 when no sector carries bytes nobody asked for.
  double coalescing() const { return gld_sec + gst_sec > 0 ? request_distinct / (32.0 * (gld_sec + gst_sec)) : 1.0; }
  // The global bytes the warps' requests moved (sectors x 32), loads and stores.
  double sector_bytes() const { return 32.0 * (gld_sec + gst_sec); }
  // Fragment loads from shared memory (wmma, ldmatrix) at the conflict-free wavefront count.
  bool fragment_loads_conflict_free() const { return frag_wf <= frag_conflict_free_wf; }
  // Shared-memory stores (cp.async writes included) at the conflict-free wavefront count.
  bool shared_stores_conflict_free() const { return sst_wf <= sst_conflict_free_wf; }
};

enum class KernelKind {
  tensor_core,   // ran HMMA instructions (the mma.sync / wmma convolutions): fragment loads checked
  convolution,   // the other convolution main loops (direct, implicit GEMM, SIMT): compute-bound
  memory_bound,  // everything else: element-wise, pooling, BatchNorm, reductions, losses, optimizers,
                 // the convolutions' packing, layout copies, split-K reductions and bias gradients
};

inline KernelKind kernel_kind(const std::string& name, const KernelTraffic& t) {
  if (t.hmma > 0) return KernelKind::tensor_core;
  const bool data_movement =
      contains(name, "pack_weights") || contains(name, "nhwc") || contains(name, "reduce") || contains(name, "bias");
  if (name.rfind("conv2d_", 0) == 0 && !data_movement) return KernelKind::convolution;
  return KernelKind::memory_bound;
}

}  // namespace kiln_step_traffic
