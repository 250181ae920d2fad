#pragma once
// The training step of a device that queues its work (the Cuda device in one process): the step
// is queued, not waited for, and read every steps_per_read() steps. trainer.hpp holds one when the
// device has it; cuda_step.hpp makes it for the Cuda device.
#include <kiln/color/loader.hpp>
#include <kiln/optim/parameters.hpp>

#include <memory>
#include <string>
#include <vector>

#include "numeric_guard.hpp"

namespace kiln::programs {

class StepEngine {
 public:
  virtual ~StepEngine() = default;
  // Queues one step: zero_grad, upload, forward, loss, backward, check, optimizer update; with
  // `inject` (--debug-inject-nan at this step) that step runs eagerly with the NaN written in.
  virtual void step(const io::Batch& batch, const NanInjection* inject) = 0;
  virtual StepResults read() = 0;
  virtual int steps_per_read() const = 0;
  virtual std::string description() const = 0;
  // The network's memory was re-planned (an eval forward): the next step must not replay a graph
  // captured before.
  virtual void invalidate() = 0;
};

template <class Model>
class ColourObjective;

// What a device step works on (owned by the trainer).
template <class Model, class Net, class Optimizer>
struct StepPartsOf {
  Net& net;
  std::vector<ParameterSlot<typename Model::device>>& slots;
  Optimizer& optimizer;
  ColourObjective<Model>& loss;
};

struct TrainConfig;

// Defined in cuda_step.hpp (Cuda units only).
template <class Parts>
std::unique_ptr<StepEngine> make_device_step(Parts parts, const TrainConfig& c);

}  // namespace kiln::programs
