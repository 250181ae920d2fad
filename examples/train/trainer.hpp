#pragma once
// ModelTrainer for one (Model, Device) pair: the network, its optimizer and its loss. Included
// only by the generated translation unit of that pair (examples/CMakeLists.txt), which defines
//   std::unique_ptr<ModelTrainer> make_trainer_<name>() { return std::make_unique<TrainerFor<Model>>(); }
// A unit for the Cuda device includes <kiln/cuda.hpp> first; it gets the device step of
// cuda_step.hpp (device-side check, losses read every N steps, CUDA graph).
#include "../common/models.hpp"
#include <kiln/io/checkpoint.hpp>
#include <kiln/color/lab_tensor.hpp>

#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <utility>
#include <variant>
#include <vector>

#include "../common/checkpoint_model.hpp"
#include "../common/infer.hpp"
#include "../common/memory_budget.hpp"
#include "colour_objective.hpp"
#include "model_trainer.hpp"
#include "step_engine.hpp"

namespace kiln::programs {

template <class Device>
using AnyOptimizer = std::variant<Adam<Device>, AdamW<Device>, SGD<Device>>;

template <class Device>
std::unique_ptr<AnyOptimizer<Device>> make_optimizer(const TrainConfig& c, std::vector<ParameterSlot<Device>> slots) {
  const float lr = float(c.lr);
  if (c.optimizer == "adam") {
    AdamOptions o;
    o.lr = lr;
    if (c.weight_decay >= 0) o.weight_decay = float(c.weight_decay);
    return std::make_unique<AnyOptimizer<Device>>(std::in_place_type<Adam<Device>>, std::move(slots), o);
  }
  if (c.optimizer == "adamw") {
    AdamWOptions o;
    o.lr = lr;
    if (c.weight_decay >= 0) o.weight_decay = float(c.weight_decay);
    return std::make_unique<AnyOptimizer<Device>>(std::in_place_type<AdamW<Device>>, std::move(slots), o);
  }
  if (c.optimizer == "sgd") {
    SgdOptions o;
    o.lr = lr;
    o.momentum = float(c.momentum);
    if (c.weight_decay >= 0) o.weight_decay = float(c.weight_decay);
    return std::make_unique<AnyOptimizer<Device>>(std::in_place_type<SGD<Device>>, std::move(slots), o);
  }
  throw usage_error("--optimizer", "unknown optimizer '" + c.optimizer + "' (adam, adamw or sgd)");
}

template <class Model>
class TrainerFor final : public ModelTrainer {
 public:
  using Device = typename Model::device;
  using Net = Network<Model>;

  std::string_view name() const override { return model_name<Model>(); }
  std::string type_name() const override { return io::model_name<Model>(); }
  int width() const override { return Model::width; }
  int depth() const override { return Model::depth; }
  long long parameter_count() const override { return (long long)Model::parameter_count; }
  int out_channels() const override { return Model::out_channels; }
  bool on_cpu() const override { return std::is_same_v<Device, Cpu>; }
  bool synchronised_batchnorm() const override { return kiln::HasSynchronisedBatchNorm<Device>; }

  std::uint64_t arena_bytes(int batch, int crop) override {
    auto net = std::make_unique<Net>();
    return programs::arena_bytes(*net, Shape::nchw(batch, 1, crop, crop), Mode::train);
  }
  ReplicaGroup& connect(World* world) override {
    replicas_ = make_replicas<Device>(world);
    return *replicas_;
  }
  void build(const TrainConfig& c) override {
    config_ = c;
    net_ = std::make_unique<Net>();
    Rng init(c.seed);
    net_->reset_parameters(init);
    slots_ = collect_parameters(*net_);  // names, weights, gradients
    opt_ = make_optimizer<Device>(c, slots_);
  }
  void set_objective(const TrainConfig& c, ColourHead head) override {
    loss_ = std::make_unique<ColourObjective<Model>>(c.loss, float(c.huber_delta), std::move(head));
    // The Cuda device in one process: the device step (cuda_step.hpp); else the host-checked step.
    if constexpr (!std::is_same_v<Device, Cpu>)
      if (replicas_ == nullptr || replicas_->size() == 1)
        engine_ =
            make_device_step(StepPartsOf<Model, Net, AnyOptimizer<Device>>{*net_, slots_, *opt_, *loss_}, config_);
  }
  const ColourHead& head() const override { return loss_->head(); }
  void share_state(std::size_t bucket_bytes) override {
    std::vector<Tensor<float, Device>*> state, grads;
    net_->visit(
        [&](StateRef<Device> ref) {
          if (ref.value) state.push_back(ref.value);
        },
        "");
    for (const auto& s : slots_) grads.push_back(s.grad);
    replicas_->broadcast(state);
    replicas_->use_gradients(grads, bucket_bytes);
  }

  void save(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) override {
    std::visit([&](auto& o) { io::save_checkpoint(path, *net_, metadata, o); }, *opt_);
  }
  io::CheckpointInfo load(const std::string& path) override {
    return std::visit([&](auto& o) { return io::load_checkpoint(path, *net_, o, colorization_checks()); }, *opt_);
  }
  long long optimizer_steps() const override {
    return std::visit([](auto& o) { return (long long)o.step_count(); }, *opt_);
  }
  void set_optimizer_steps(long long steps) override {
    std::visit([&](auto& o) { o.set_step_count(steps); }, *opt_);
  }

  void set_lr(float lr) override {
    std::visit([&](auto& o) { o.set_lr(lr); }, *opt_);
  }
  void train_step(const io::Batch& batch, long long step) override {
    const NanInjection* inject = injection_ && injection_->step == step ? &*injection_ : nullptr;
    if (engine_) {
      engine_->step(batch, inject);
      return;
    }
    // On the host's schedule: each step is read before the next (steps_per_read() == 1).
    net_->zero_grad();
    replicas_->begin_backward();
    if (inject && inject->kind == NanInjection::Kind::weight) programs::inject_nan(slots_, *inject);
    // Kept until the next step: the layers and the loss read their inputs again in backward.
    x_ = to_device<Device>(batch.L);
    target_ = to_device<Device>(batch.ab);
    const float l = loss_->forward(net_->forward(x_, Mode::train), target_);
    host_.losses.push_back(l);
    const bool first_bad = host_.bad_step < 0;
    if (!std::isfinite(l)) {  // no backward: the weights stay those of the last good step
      if (first_bad) host_.bad_step = int(host_.losses.size()) - 1, host_.bad_loss = true;
      return;
    }
    net_->backward(loss_->backward());
    replicas_->finish_backward();  // every rank now holds the gradients averaged over the global batch
    if (inject && inject->kind == NanInjection::Kind::grad) programs::inject_nan(slots_, *inject);
    // Before the optimizer step: a non-finite gradient would reach every weight it updates.
    const auto guard_start = std::chrono::steady_clock::now();
    auto bad = programs::first_non_finite_gradient(slots_);
    guard_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - guard_start).count();
    if (bad || !first_bad) {
      if (first_bad) host_.bad_step = int(host_.losses.size()) - 1, host_.gradient = std::move(bad);
      return;
    }
    std::visit([](auto& o) { o.step(); }, *opt_);
  }
  StepResults read_steps() override {
    if (engine_) return engine_->read();
    return std::exchange(host_, StepResults{});
  }
  int steps_per_read() const override { return engine_ ? engine_->steps_per_read() : 1; }
  std::string step_description() const override {
    return engine_ ? engine_->description() : "checked on the host after every step";
  }
  double guard_seconds() const override { return guard_seconds_; }

  std::optional<NonFiniteReport> first_non_finite_weight() override {
    return programs::first_non_finite_weight(slots_);
  }
  void set_nan_injection(std::optional<NanInjection> injection) override {
    if (injection) {  // checked now: a name the model lacks is an error before training starts
      bool found = false;
      for (const auto& s : slots_) found = found || s.name == injection->name;
      if (!found)
        throw std::invalid_argument("--debug-inject-nan: the model has no parameter '" + injection->name + "'");
    }
    injection_ = std::move(injection);
  }

  Tensor<float, Cpu> predict_ab(const Tensor<float, Cpu>& L) override {
    if (engine_) engine_->invalidate();  // an eval forward re-plans the network's memory
    return loss_->head().to_ab(to_host<Device>(net_->forward(to_device<Device>(L), Mode::eval)));
  }
  Colorized colorize(const io::Image& image) override {
    if (engine_) engine_->invalidate();
    const ColourHead& head = loss_->head();
    return programs::colorize(*net_, image, InferSize{0, 0, 0},
                              [&](const Tensor<float, Cpu>& y) { return head.to_ab(y); });
  }

 private:
  std::unique_ptr<Replicas<Device>> replicas_;
  std::unique_ptr<Net> net_;
  std::vector<ParameterSlot<Device>> slots_;
  std::unique_ptr<AnyOptimizer<Device>> opt_;
  std::unique_ptr<ColourObjective<Model>> loss_;
  Tensor<float, Device> x_, target_;  // the step's batch on the device
  TrainConfig config_;
  std::unique_ptr<StepEngine> engine_;  // the Cuda device's step (cuda_step.hpp), or none
  StepResults host_;                    // the host-checked steps since the last read
  std::optional<NanInjection> injection_;
  double guard_seconds_ = 0;
};

}  // namespace kiln::programs

#if KILN_CUDA_DEVICE_INCLUDED
#include "cuda_step.hpp"
#endif
