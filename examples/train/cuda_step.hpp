#pragma once
// kiln-train's step on the Cuda device (one process): no host round trip inside a step.
//   * the batch goes into pinned host memory and up with asynchronous copies on kiln's stream;
//   * the loss stays on the device; kiln::cuda::StepMonitor checks every gradient and the loss on
//     the device each step and keeps the losses; the host reads them every --loss-every steps
//     (and before every save), through pinned memory and an event;
//   * from the first bad step on, the optimizer kernels skip their update (update guard), so the
//     weights the trainer's messages describe are those of the last good step;
//   * with --cuda-graph on, the step after a warm-up step is captured once as a CUDA graph and
//     replayed: the learning rate and Adam's bias corrections are staged in device memory from
//     pinned memory by a copy inside the graph (kiln/cuda/step_scalars.hpp). An eval forward
//     (validation, samples) re-plans the network's memory: the next step runs eagerly again and
//     the one after is captured anew. Host-side state the captured step advances (BatchNorm's
//     num_batches_tracked) is advanced by the same amount at each replay.
// Included at the end of trainer.hpp by the Cuda units (after <kiln/cuda.hpp>).
#include <kiln/cuda/step_monitor.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "step_engine.hpp"

namespace kiln::programs {

template <class Parts>
class CudaStep final : public StepEngine {
 public:
  using T = Tensor<float, Cuda>;

  CudaStep(Parts parts, const TrainConfig& c)
      : p_(parts), graph_wanted_(c.cuda_graph != "off"),
        read_every_(std::min(c.loss_every, kiln::cuda::StepMonitor::max_steps_per_read)) {
    kiln::cuda::set_math_mode(kiln::cuda::parse_math_mode(c.precision));
    kiln::cuda::set_stream(stream_);  // every launch and copy of the library goes on it
    std::vector<const T*> grads;
    for (const auto& s : p_.slots) grads.push_back(s.grad);
    monitor_ = std::make_unique<kiln::cuda::StepMonitor>(std::move(grads));
    p_.net.visit(
        [&](StateRef<Cuda> ref) {
          if (ref.counter) counters_.push_back(ref.counter);
        },
        "");
    kiln::cuda::set_update_guard(monitor_->update_flag());
  }
  ~CudaStep() override {
    kiln::cuda::set_update_guard(nullptr);
    try {
      stream_.synchronize();
    } catch (...) {
    }
    kiln::cuda::set_stream(nullptr);
  }

  void step(const io::Batch& batch, const NanInjection* inject) override {
    upload(batch);
    if (inject != nullptr || !graph_wanted_ || !warm_) {
      // Eager: launch by launch (the first step plans memory and grows the scratch buffers, which
      // a capture must not do; an injected NaN is written between two launches).
      if (inject != nullptr && inject->kind == NanInjection::Kind::weight) programs::inject_nan(p_.slots, *inject);
      queue_step(inject);
      warm_ = true;
      return;
    }
    if (!graph_.ready()) {
      stream_.synchronize();  // the pinned buffers are not read by earlier copies any more
      // Host-side counters the captured step advances (BatchNorm's num_batches_tracked): a replay
      // runs no host code, so each later replay advances them by what the capture did.
      const std::vector<std::int64_t> before = counter_values();
      graph_.capture(stream_, [&] { queue_step(nullptr); });
      const std::vector<std::int64_t> after = counter_values();
      counter_steps_.assign(after.size(), 0);
      for (std::size_t i = 0; i < after.size(); ++i) counter_steps_[i] = after[i] - before[i];
      ++captures_;
    } else {
      kiln::cuda::HostPass pass;  // this step's learning rate and bias corrections into pinned memory
      update();
      for (std::size_t i = 0; i < counters_.size(); ++i) *counters_[i] += counter_steps_[i];
    }
    graph_.launch(stream_);
    monitor_->replayed();
  }

  StepResults read() override {
    const kiln::cuda::StepMonitor::Readout r = monitor_->read();
    StepResults s;
    s.losses = r.losses;
    s.bad_step = r.bad_step;
    s.bad_loss = r.bad_loss;
    if (!r.tensors.empty()) {
      // The last in forward order is the first layer backward reached (as first_non_finite_gradient).
      const auto& f = r.tensors.back();
      NonFiniteReport report;
      report.name = p_.slots[f.tensor].name;
      report.bad = f.bad;
      report.total = p_.slots[f.tensor].grad->numel();
      report.first_value = f.first_value;
      report.count = r.tensors.size();
      s.gradient = report;
    }
    return s;
  }
  int steps_per_read() const override { return read_every_; }
  std::string description() const override {
    return std::string(graph_wanted_ ? "CUDA graph" : "eager launches") + ", " +
           kiln::cuda::math_mode_name(kiln::cuda::math_mode()) + ", losses and the device's NaN/Inf check read every " +
           std::to_string(read_every_) + " steps";
  }
  void invalidate() override {
    graph_.reset();
    warm_ = false;
  }

 private:
  // The batch into pinned memory (once the previous step's upload has run), then queued up.
  void upload(const io::Batch& batch) {
    const std::size_t xb = batch.L.numel() * sizeof(float), tb = batch.ab.numel() * sizeof(float);
    if (!(x_.shape() == batch.L.shape()) || !(t_.shape() == batch.ab.shape())) {
      stream_.synchronize();
      x_ = T(batch.L.shape());
      t_ = T(batch.ab.shape());
      x_host_ = kiln::gpu::PinnedBuffer(xb);
      t_host_ = kiln::gpu::PinnedBuffer(tb);
      graph_.reset();
      warm_ = false;
      upload_pending_ = false;
    }
    if (upload_pending_) uploaded_.synchronize();
    std::memcpy(x_host_.data(), batch.L.data(), xb);
    std::memcpy(t_host_.data(), batch.ab.data(), tb);
    upload_pending_ = true;
  }
  // One step's work on the stream (run eagerly, or captured).
  void queue_step(const NanInjection* inject) {
    p_.net.zero_grad();
    kiln::gpu::memcpy_async(x_.data(), x_host_.data(), x_host_.bytes(), kiln::gpu::CopyKind::host_to_device, stream_);
    kiln::gpu::memcpy_async(t_.data(), t_host_.data(), t_host_.bytes(), kiln::gpu::CopyKind::host_to_device, stream_);
    uploaded_.record(stream_);
    const T& loss = p_.loss.forward_on_device(p_.net.forward(x_, Mode::train), t_);
    p_.net.backward(p_.loss.backward());
    if (inject != nullptr && inject->kind == NanInjection::Kind::grad) programs::inject_nan(p_.slots, *inject);
    monitor_->record(loss);
    update();
  }
  std::vector<std::int64_t> counter_values() const {
    std::vector<std::int64_t> v;
    for (const std::int64_t* c : counters_) v.push_back(*c);
    return v;
  }
  void update() {
    std::visit([](auto& o) { o.step(); }, p_.optimizer);
  }

  Parts p_;
  kiln::gpu::Stream stream_;
  bool graph_wanted_;
  int read_every_;
  std::unique_ptr<kiln::cuda::StepMonitor> monitor_;
  kiln::gpu::Graph graph_;
  bool warm_ = false;
  long long captures_ = 0;
  std::vector<std::int64_t*> counters_;
  std::vector<std::int64_t> counter_steps_;
  T x_, t_;
  kiln::gpu::PinnedBuffer x_host_, t_host_;
  kiln::gpu::Event uploaded_;
  bool upload_pending_ = false;
};

template <class Parts>
std::unique_ptr<StepEngine> make_device_step(Parts parts, const TrainConfig& c) {
  return std::make_unique<CudaStep<Parts>>(parts, c);
}

}  // namespace kiln::programs
