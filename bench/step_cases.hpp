#pragma once
// Whole-network benchmarks: one training step (forward in train mode, MSE,
// zero_grad, backward, Adam step) and one inference (forward in eval mode) of
// UNetSmall and UNetBase, at batch 16 x 64^2, 8 x 128^2 and 1 x 256^2.
//
// Each benchmark builds the network, runs KILN_BENCH_WARMUP untimed steps
// (default 2: the first plans the arena), then KILN_BENCH_STEPS timed steps
// (default Timing<Device>::default_steps), each timed on its own (host clock,
// device synchronised). Counters: median_ms and min_ms of one step,
// images_per_s = batch / median, params = the constexpr parameter_count.
// Names: train_step/<dev>/<Model>/N16_H64, inference/<dev>/<Model>/N16_H64.
// KILN_BENCH_STEP_CONFIGS="N16_H64,N2_H32" picks other batch sizes / image sizes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kiln/models/unet.hpp"
#include "kiln/nn/loss.hpp"
#include "kiln/nn/network.hpp"
#include "kiln/optim/adam.hpp"

namespace kiln::bench {

template <class Device>
struct StepTiming;  // default_steps, sync(), configure(Benchmark*)

template <class Model>
void step_benchmark(benchmark::State& state, int n, int h, bool train) {
  using Device = typename Model::device;
  manual_seed(1);
  auto net = std::make_unique<Network<Model>>();
  const auto x = random_tensor<Device>(Shape::nchw(n, Model::in_channels, h, h), 11);
  const auto target = random_tensor<Device>(Shape::nchw(n, Model::out_channels, h, h), 12, -0.5f, 0.5f);
  MSELoss<Device> loss;
  Adam<Device> adam(collect_parameters(*net));
  float last_loss = 0;
  auto run = [&] {
    if (train) {
      const auto& y = net->forward(x, Mode::train);
      last_loss = loss.forward(y, target);
      net->zero_grad();
      net->backward(loss.backward());
      adam.step();
    } else {
      net->forward(x, Mode::eval);
    }
    StepTiming<Device>::sync();
  };
  const int warmup = smoke() ? 1 : env_int("KILN_BENCH_WARMUP", 2);
  for (int i = 0; i < warmup; ++i) run();
  std::vector<double> times;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(dt);
    times.push_back(dt);
  }
  if (times.empty()) return;
  std::sort(times.begin(), times.end());
  const std::size_t m = times.size();
  const double median = m % 2 ? times[m / 2] : 0.5 * (times[m / 2 - 1] + times[m / 2]);
  state.counters["median_ms"] = median * 1e3;
  state.counters["min_ms"] = times.front() * 1e3;
  state.counters["images_per_s"] = n / median;
  state.counters["params"] = static_cast<double>(Model::parameter_count);
  state.counters["arena_MiB"] = static_cast<double>(net->arena().capacity()) / (1024.0 * 1024.0);
  if (train && !(last_loss > 0 && last_loss < 1e30))
    state.SkipWithError("the training loss is not finite and positive");
}

struct StepConfig {
  int n, h;
};
// KILN_BENCH_STEP_CONFIGS="N16_H64,N8_H128" replaces the default list.
inline std::vector<StepConfig> step_configs() {
  if (smoke()) return {{2, 16}};
  std::vector<StepConfig> configs;
  if (const char* env = std::getenv("KILN_BENCH_STEP_CONFIGS")) {
    std::string list = env;
    for (std::size_t pos = 0; pos < list.size();) {
      std::size_t end = list.find(',', pos);
      if (end == std::string::npos) end = list.size();
      int n = 0, h = 0;
      if (std::sscanf(list.substr(pos, end - pos).c_str(), "N%d_H%d", &n, &h) == 2 && n > 0 && h > 0)
        configs.push_back({n, h});
      pos = end + 1;
    }
  }
  if (configs.empty()) configs = {{16, 64}, {8, 128}, {1, 256}};
  return configs;
}

template <class Model>
void register_model_steps(const std::string& dev, const std::string& model) {
  using Device = typename Model::device;
  const int steps = smoke() ? 1 : env_int("KILN_BENCH_STEPS", StepTiming<Device>::default_steps);
  for (const auto& cfg : step_configs()) {
    const std::string shape = "N" + std::to_string(cfg.n) + "_H" + std::to_string(cfg.h);
    for (bool train : {true, false}) {
      const std::string name = std::string(train ? "train_step/" : "inference/") + dev + "/" + model + "/" + shape;
      auto* b = benchmark::RegisterBenchmark(
          name.c_str(), [cfg, train](benchmark::State& state) { step_benchmark<Model>(state, cfg.n, cfg.h, train); });
      b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(std::max(1, steps));
    }
  }
}

template <class Device>
void register_step_benchmarks(const std::string& dev) {
  if (smoke()) {
    register_model_steps<UNetSmall<Device>>(dev, "UNetSmall");
    return;
  }
  register_model_steps<UNetSmall<Device>>(dev, "UNetSmall");
  register_model_steps<UNetBase<Device>>(dev, "UNetBase");
}

}  // namespace kiln::bench
