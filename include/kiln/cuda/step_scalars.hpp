#pragma once
// Per-step scalars of Backend<Cuda>'s launchers (the optimizers' learning rate and bias
// corrections), kept in device memory so that a training step captured into a CUDA graph
// (kiln/gpu/graph.hpp) does not bake one step's values into its kernel arguments.
//
// ScalarSlot<Args>::stage(a) writes `a` into a pinned host buffer and queues an asynchronous copy
// to the slot's device buffer (captured into the graph when the stream is being captured); the
// kernels read the device copy. Staging the value already staged is free (no copy), except that a
// capture always gets its own copy. Before the pinned buffer is written again, the host waits for
// the event recorded after the last copy that reads it (on a GPU: the copy of the previous step,
// which has started long before; in the emulator nothing waits).
//
// Capturing a step runs its host code once: that stages the captured step's own values (so the
// step captured is launched as is). Synchronize the stream before capturing: the capture writes
// the pinned buffers without waiting (no waits during a capture). Replaying a later step: the host
// must stage that step's values without queueing the kernels again. In a HostPass, Backend<Cuda>
// runs its launchers' host code only: values are staged into the pinned buffers, nothing is
// queued. So a trainer replays one step as
//   { kiln::cuda::HostPass pass; optimizer.step(); }  graph.launch(stream);
//
// UpdateGuard: a device flag (0 = update, non-zero = skip) that the optimizer kernels read: set by
// a device-side check of the step (a non-finite loss or gradient), it keeps the weights at the last
// good state until the host reads the flag (set_update_guard; null: never skip).
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <typeindex>
#include <utility>

#include "kiln/cuda/memory.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cuda {

namespace detail {
inline bool& host_pass_flag() {
  thread_local bool flag = false;
  return flag;
}
inline const unsigned*& update_guard_slot() {
  static const unsigned* flag = nullptr;
  return flag;
}
}  // namespace detail

// Whether Backend<Cuda> launchers run their host code only (see above).
inline bool in_host_pass() { return detail::host_pass_flag(); }

class HostPass {
 public:
  HostPass() : previous_(std::exchange(detail::host_pass_flag(), true)) {}
  ~HostPass() { detail::host_pass_flag() = previous_; }
  HostPass(const HostPass&) = delete;
  HostPass& operator=(const HostPass&) = delete;

 private:
  bool previous_;
};

// The device flag the optimizer kernels read before updating (null: always update).
inline const unsigned* update_guard() { return detail::update_guard_slot(); }
inline void set_update_guard(const unsigned* device_flag) { detail::update_guard_slot() = device_flag; }

template <class Args>
class ScalarSlot {
 public:
  ScalarSlot() : host_(sizeof(Args)), device_(DeviceMemory<Cuda>::allocate(sizeof(Args))) {}
  ~ScalarSlot() { DeviceMemory<Cuda>::deallocate(device_); }
  ScalarSlot(const ScalarSlot&) = delete;
  ScalarSlot& operator=(const ScalarSlot&) = delete;

  // The device copy of `a`, in stream order on `stream` (see the header comment).
  const Args* stage(const Args& a, kiln::gpu::stream_handle stream) {
    const bool capturing = kiln::gpu::is_capturing(stream);
    const std::uint64_t generation = kiln::gpu::capture_generation();
    if (staged_ && generation == generation_ && capturing == staged_while_capturing_ &&
        std::memcmp(&last_, &a, sizeof(Args)) == 0)
      return static_cast<const Args*>(device_);
    if (pending_ && !capturing) copied_.synchronize();  // the last copy out of the pinned buffer has run
    std::memcpy(host_.data(), &a, sizeof(Args));
    if (!in_host_pass()) {
      kiln::gpu::memcpy_async(device_, host_.data(), sizeof(Args), kiln::gpu::CopyKind::host_to_device, stream);
      copied_.record(stream);
    }
    // In a host pass the graph's copy reads the buffer at its next replay.
    pending_ = true;
    std::memcpy(&last_, &a, sizeof(Args));
    staged_ = true;
    generation_ = generation;
    staged_while_capturing_ = capturing;
    return static_cast<const Args*>(device_);
  }

 private:
  kiln::gpu::PinnedBuffer host_;
  void* device_;
  kiln::gpu::Event copied_;
  Args last_{};
  bool staged_ = false, pending_ = false, staged_while_capturing_ = false;
  std::uint64_t generation_ = 0;
};

// The slot for Args on `stream`, made on first use (before any capture: the first step runs
// eagerly) and kept until the process ends, like Backend<Cuda>'s reduction scratch.
template <class Args>
ScalarSlot<Args>& scalar_slot(kiln::gpu::stream_handle stream) {
  static std::mutex mutex;
  static auto* slots = new std::map<kiln::gpu::stream_handle, std::unique_ptr<ScalarSlot<Args>>>;
  std::lock_guard lock(mutex);
  auto& slot = (*slots)[stream];
  if (!slot) slot = std::make_unique<ScalarSlot<Args>>();
  return *slot;
}

}  // namespace kiln::cuda
