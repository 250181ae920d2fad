#pragma once
// Whole-network benchmarks: one training step (forward in train mode, MSE,
// zero_grad, backward, Adam step) and one inference (Network::infer: the eval
// plan) of UNetSmall and UNetBase, at batch 16 x 64^2, 8 x 128^2 and 1 x 256^2.
//
// Each benchmark builds the network (inference builds no optimizer and no
// target), runs KILN_BENCH_WARMUP untimed steps (default 2: the first plans the
// arena), then KILN_BENCH_STEPS timed steps (default
// Timing<Device>::default_steps), each timed on its own (host clock, device
// synchronised). Counters: median_ms and min_ms of one step, images_per_s =
// batch / median, params = the constexpr parameter_count, arena_MiB, and
// peak_rss_MiB = the process's peak resident memory so far (VmHWM): run one
// benchmark per process (--benchmark_filter) for that config's own peak.
// Names: train_step/<dev>/<Model>/N16_H64, inference/<dev>/<Model>/N1_H640_W1024
// (N batch, H height, W width; no W: square). KILN_BENCH_STEP_CONFIGS=
// "N16_H64,N1_H640_W1024" picks other batch sizes / image sizes. A StepScope, where given, is
// made at the start of each of the benchmarks and held until its end (the Cuda step benchmark's
// math mode: dev "cuda_tf32", "cuda_bf16").
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kiln/models/unet.hpp"
#include "kiln/core/error.hpp"
#include "kiln/nn/loss.hpp"
#include "kiln/nn/network.hpp"
#include "kiln/optim/adam.hpp"

namespace kiln::bench {

template <class Device>
struct StepTiming;  // default_steps, sync(), configure(Benchmark*)

// Peak resident memory of this process so far, MiB: VmHWM from /proc/self/status.
// Not getrusage's ru_maxrss: Linux carries the high-water mark of the process
// image replaced by exec into ru_maxrss, so a benchmark started from a big
// parent (a Python script with PyTorch loaded) would report the parent's peak.
// Falls back to ru_maxrss where /proc is missing.
inline double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;  // "VmHWM:   1234 kB"
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
}

// Batch n of h x w images.
struct StepConfig {
  int n, h, w;
};
inline std::string config_tag(const StepConfig& c) {
  return "N" + std::to_string(c.n) + "_H" + std::to_string(c.h) + (c.w == c.h ? "" : "_W" + std::to_string(c.w));
}

template <class Model>
void step_benchmark(benchmark::State& state, StepConfig cfg, bool train) {
  using Device = typename Model::device;
  manual_seed(1);
  auto net = std::make_unique<Network<Model>>();
  const auto x = random_tensor<Device>(Shape::nchw(cfg.n, Model::in_channels, cfg.h, cfg.w), 11);
  // Training only: inference holds no optimizer state and no target.
  std::optional<Tensor<float, Device>> target;
  std::optional<Adam<Device>> adam;
  if (train) {
    target.emplace(random_tensor<Device>(Shape::nchw(cfg.n, Model::out_channels, cfg.h, cfg.w), 12, -0.5f, 0.5f));
    adam.emplace(collect_parameters(*net));
  }
  MSELoss<Device> loss;
  float last_loss = 0;
  auto run = [&] {
    if (train) {
      const auto& y = net->forward(x, Mode::train);
      last_loss = loss.forward(y, *target);
      net->zero_grad();
      net->backward(loss.backward());
      adam->step();
    } else {
      net->infer(x);
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
  state.counters["images_per_s"] = cfg.n / median;
  state.counters["params"] = static_cast<double>(Model::parameter_count);
  state.counters["arena_MiB"] = static_cast<double>(net->arena().capacity()) / (1024.0 * 1024.0);
  state.counters["peak_rss_MiB"] = peak_rss_mib();
  if (train && !(last_loss > 0 && last_loss < 1e30))
    state.SkipWithError("the training loss is not finite and positive");
}

// "N16_H64" (square) or "N1_H640_W1024" -> the config; kiln::Error naming the
// entry if it is anything else (sizes must be positive).
inline StepConfig parse_step_config(const std::string& tag) {
  int n = 0, h = 0, w = 0, used = 0;
  const int got = std::sscanf(tag.c_str(), "N%d_H%d%n_W%d%n", &n, &h, &used, &w, &used);
  const bool whole = got >= 2 && used == static_cast<int>(tag.size());
  if (!whole || n <= 0 || h <= 0 || (got == 3 && w <= 0))
    fail("KILN_BENCH_STEP_CONFIGS: '", tag,
         "' is not a config: write N<batch>_H<height> (square) or N<batch>_H<height>_W<width>, sizes > 0, "
         "e.g. N16_H64,N1_H640_W1024");
  return {n, h, got == 3 ? w : h};
}

// KILN_BENCH_STEP_CONFIGS="N16_H64,N8_H128" replaces the default list (also in
// smoke mode, whose default is one tiny square config).
inline std::vector<StepConfig> step_configs() {
  std::vector<StepConfig> configs;
  if (const char* env = std::getenv("KILN_BENCH_STEP_CONFIGS")) {
    const std::string list = env;
    for (std::size_t pos = 0; pos <= list.size();) {
      std::size_t end = list.find(',', pos);
      if (end == std::string::npos) end = list.size();
      if (end > pos) configs.push_back(parse_step_config(list.substr(pos, end - pos)));
      pos = end + 1;
    }
  }
  if (configs.empty())
    configs = smoke() ? std::vector<StepConfig>{{2, 16, 16}}
                      : std::vector<StepConfig>{{16, 64, 64}, {8, 128, 128}, {1, 256, 256}};
  return configs;
}

// What a benchmark holds while it runs (e.g. a math-mode scope); empty: nothing.
using StepScope = std::function<std::shared_ptr<void>()>;

template <class Model>
void register_model_steps(const std::string& dev, const std::string& model, const StepScope& scope = {},
                          bool inference = true) {
  using Device = typename Model::device;
  const int steps = smoke() ? 1 : env_int("KILN_BENCH_STEPS", StepTiming<Device>::default_steps);
  for (const auto& cfg : step_configs()) {
    const std::string shape = config_tag(cfg);
    for (bool train : {true, false}) {
      if (!train && !inference) continue;
      const std::string name = std::string(train ? "train_step/" : "inference/") + dev + "/" + model + "/" + shape;
      auto* b = benchmark::RegisterBenchmark(name.c_str(), [cfg, train, scope](benchmark::State& state) {
        const std::shared_ptr<void> held = scope ? scope() : nullptr;
        step_benchmark<Model>(state, cfg, train);
      });
      b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(std::max(1, steps));
    }
  }
}

// inference false: the training steps only.
template <class Device>
void register_step_benchmarks(const std::string& dev, const StepScope& scope = {}, bool inference = true) {
  if (smoke()) {
    register_model_steps<UNetSmall<Device>>(dev, "UNetSmall", scope, inference);
    return;
  }
  register_model_steps<UNetSmall<Device>>(dev, "UNetSmall", scope, inference);
  register_model_steps<UNetBase<Device>>(dev, "UNetBase", scope, inference);
}

}  // namespace kiln::bench
