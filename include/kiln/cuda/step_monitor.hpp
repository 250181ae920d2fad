#pragma once
// kiln::cuda::StepMonitor: a training step's loss and numerical check kept on the device, read by
// the host every few steps (kernels/step_guard.cuh). Each step, record(loss) queues one pass over
// the gradients (NaN / infinity counts per tensor) and a one-thread kernel that stores the loss and
// marks the first bad step; the optimizer kernels read the mark as their update guard
// (kiln::cuda::set_update_guard(monitor.update_flag())) and skip every update from that step on,
// so the weights keep their last good values until the host looks. read() copies the status to
// pinned memory, waits for that copy only (an event), and resets the window. record() can be
// captured into a CUDA graph (kiln/gpu/graph.hpp); read() cannot.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kiln/core/error.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/cuda/memory.hpp"
#include "kiln/gpu/gpu.hpp"

#include "step_guard.cuh"

namespace kiln::cuda {

class StepMonitor {
 public:
  // What read() found: the losses of the steps since the last read, in order, and the first step
  // whose loss or gradients were not finite (its index in `losses`, or -1).
  struct TensorFinding {
    std::size_t tensor = 0;  // index into the gradients given to the constructor
    std::uint32_t bad = 0;   // how many values were NaN or infinite
    std::uint64_t first_index = 0;
    const char* first_value = "NaN";  // "NaN", "inf" or "-inf"
  };
  struct Readout {
    std::vector<float> losses;
    int bad_step = -1;
    bool bad_loss = false;
    std::vector<TensorFinding> tensors;  // the bad step's non-finite gradients, in the constructor's order
  };

  static constexpr int max_steps_per_read = kernels::step_guard_max_steps;

  explicit StepMonitor(std::vector<const Tensor<float, Cuda>*> gradients) : gradients_(std::move(gradients)) {
    const std::size_t t = gradients_.size();
    offsets_[0] = round_up(sizeof(kernels::StepGuardStatus));
    offsets_[1] = offsets_[0] + round_up(t * sizeof(unsigned));
    offsets_[2] = offsets_[1] + round_up(t * sizeof(unsigned long long));
    offsets_[3] = offsets_[2] + round_up(t * sizeof(unsigned));
    bytes_ = offsets_[3] + round_up(t * sizeof(unsigned long long));
    device_ = static_cast<unsigned char*>(DeviceMemory<Cuda>::allocate(bytes_));
    host_ = kiln::gpu::PinnedBuffer(bytes_);
    reset_all();
  }
  ~StepMonitor() { DeviceMemory<Cuda>::deallocate(device_); }
  StepMonitor(const StepMonitor&) = delete;
  StepMonitor& operator=(const StepMonitor&) = delete;

  // The device flag for kiln::cuda::set_update_guard: non-zero once a step of the window was bad.
  const unsigned* update_flag() const { return &view().status->bad; }

  // Queues the step's check on the current stream: the gradients, then the loss (1-element tensor).
  void record(const Tensor<float, Cuda>& loss) {
    KILN_CHECK(loss.numel() == 1, "StepMonitor::record: the loss must be one value, got ", loss.shape().str());
    const kernels::StepGuardView v = view();
    std::size_t next = 0;
    while (next < gradients_.size()) {
      kernels::NonFiniteList list{};
      list.first_tensor = static_cast<int>(next);
      std::int64_t total = 0;
      for (; next < gradients_.size() && list.count < kernels::step_guard_list_tensors; ++next) {
        list.data[list.count] = gradients_[next]->empty() ? nullptr : gradients_[next]->data();
        list.start[list.count] = total;
        total += static_cast<std::int64_t>(gradients_[next]->numel());
        ++list.count;
      }
      list.start[list.count] = total;
      if (total == 0) continue;
      const auto g = kernels::grid_stride(total);
      kiln::gpu::launch("nonfinite_count_kernel<float>", &kernels::nonfinite_count_kernel<float>, dim3(g.blocks),
                        dim3(g.threads), 0, current_stream(), list, v.count, v.first);
    }
    kiln::gpu::launch("step_record_kernel<float>", &kernels::step_record_kernel<float>, dim3(1), dim3(1), 0,
                      current_stream(), v, loss.data());
    if (!kiln::gpu::is_capturing(current_stream())) ++recorded_;
  }
  // A replay of a captured graph that holds one record(): one more step to read.
  void replayed() { ++recorded_; }

  // Steps recorded since the last read (host count).
  int pending() const { return recorded_; }

  // The window's losses and finding; waits for the steps queued so far, then starts a new window.
  Readout read() {
    KILN_CHECK(recorded_ <= max_steps_per_read, "StepMonitor: ", recorded_,
               " steps recorded since the last read; at most ", max_steps_per_read, " are kept");
    kiln::gpu::memcpy_async(host_.data(), device_, bytes_, kiln::gpu::CopyKind::device_to_host, current_stream());
    copied_.record(current_stream());
    copied_.synchronize();  // the only wait: for the steps queued before this copy
    const auto* s = host_.as<kernels::StepGuardStatus>();
    Readout r;
    const int steps = static_cast<int>(s->steps);
    KILN_CHECK(steps == recorded_, "StepMonitor: the device recorded ", steps, " steps, the host queued ", recorded_);
    r.losses.assign(s->losses, s->losses + steps);
    if (s->bad != 0u) {
      r.bad_step = static_cast<int>(s->bad) - 1;
      r.bad_loss = s->bad_loss != 0u;
      const auto* counts = reinterpret_cast<const unsigned*>(host_.as<unsigned char>() + offsets_[2]);
      const auto* firsts = reinterpret_cast<const unsigned long long*>(host_.as<unsigned char>() + offsets_[3]);
      for (std::size_t t = 0; t < gradients_.size(); ++t) {
        if (counts[t] == 0u) continue;
        static const char* const kinds[] = {"NaN", "inf", "-inf", "NaN"};
        r.tensors.push_back({t, counts[t], firsts[t] >> 2, kinds[firsts[t] & 3u]});
      }
    }
    // A new window: the header only (the per-step counters are cleared by each step's record).
    kiln::gpu::memset_async(device_, 0, sizeof(kernels::StepGuardStatus), current_stream());
    recorded_ = 0;
    return r;
  }

 private:
  static std::size_t round_up(std::size_t bytes) { return (bytes + 255) / 256 * 256; }
  kernels::StepGuardView view() const {
    return kernels::StepGuardView{reinterpret_cast<kernels::StepGuardStatus*>(device_),
                                  reinterpret_cast<unsigned*>(device_ + offsets_[0]),
                                  reinterpret_cast<unsigned long long*>(device_ + offsets_[1]),
                                  reinterpret_cast<unsigned*>(device_ + offsets_[2]),
                                  reinterpret_cast<unsigned long long*>(device_ + offsets_[3]),
                                  static_cast<int>(gradients_.size())};
  }
  void reset_all() {
    kiln::gpu::memset_async(device_, 0, bytes_, current_stream());
    // first[] = no_bad_value (all bits set)
    kiln::gpu::memset_async(device_ + offsets_[1], 0xff, offsets_[2] - offsets_[1], current_stream());
  }

  std::vector<const Tensor<float, Cuda>*> gradients_;
  std::size_t offsets_[4] = {};
  std::size_t bytes_ = 0;
  unsigned char* device_ = nullptr;
  kiln::gpu::PinnedBuffer host_;
  kiln::gpu::Event copied_;
  int recorded_ = 0;
};

}  // namespace kiln::cuda
