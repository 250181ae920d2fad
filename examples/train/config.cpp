// kiln-train's settings as JSON (one list of keys, both ways) and their checks.
#include "config.hpp"

#include <nlohmann/json.hpp>

#include "../common/numbers.hpp"

namespace kiln::programs {

// Every setting a checkpoint keeps, with its JSON key. Not kept: stop_at_step and the hidden
// test options, which belong to one invocation.
template <class Config, class F>
void config_fields(Config& c, F&& f) {
  f("data", c.data);
  f("data_repeat", c.data_repeat);
  f("preset", c.preset);
  f("val", c.val);
  f("val_split", c.val_split);
  f("crop", c.crop);
  f("batch", c.batch);
  f("epochs", c.epochs);
  f("steps_per_epoch", c.steps_per_epoch);
  f("time_budget", c.time_budget);
  f("lr", c.lr);
  f("lr_end_fraction", c.lr_end_fraction);
  f("schedule", c.schedule);
  f("step_gamma", c.step_gamma);
  f("step_epochs", c.step_epochs);
  f("optimizer", c.optimizer);
  f("weight_decay", c.weight_decay);
  f("momentum", c.momentum);
  f("loss", c.loss);
  f("huber_delta", c.huber_delta);
  f("model", c.model);
  f("device", c.device);
  f("precision", c.precision);
  f("threads", c.threads);
  f("seed", c.seed);
  f("out", c.out);
  f("val_every", c.val_every);
  f("val_crops", c.val_crops);
  f("samples", c.samples);
  f("sample_size", c.sample_size);
  f("scales", c.scales);
  f("flip", c.flip);
  f("loader_max_side", c.loader_max_side);
  f("workers", c.workers);
  f("checkpoint_every", c.checkpoint_every);
  f("sync_bn", c.sync_bn);
}

void to_json(nlohmann::json& j, const TrainConfig& c) {
  j = nlohmann::json::object();
  config_fields(c, [&](const char* key, const auto& field) { j[key] = field; });
}

void from_json(const nlohmann::json& j, TrainConfig& c) {
  config_fields(c, [&](const char* key, auto& field) {
    if (j.contains(key)) j.at(key).get_to(field);
  });
}

std::string config_problem(const TrainConfig& c) {
  const double max = 1.7e308;
  const struct {
    const char* option;
    double value, lo, hi;
    bool integer, lo_open;
  } checks[] = {{"--val-split", c.val_split, 0, 0.9, false, false},
                {"--crop", double(c.crop), 16, 4096, true, false},
                {"--batch", double(c.batch), 1, 4096, true, false},
                {"--epochs", double(c.epochs), 1, 1000000, true, false},
                {"--steps-per-epoch", double(c.steps_per_epoch), 1, 100000000, true, false},
                {"--lr", c.lr, 0, max, false, true},
                {"--lr-end-fraction", c.lr_end_fraction, 0, 1, false, false},
                {"--step-gamma", c.step_gamma, 0, max, false, true},
                {"--step-epochs", double(c.step_epochs), 1, 1000000, true, false},
                {"--weight-decay", c.weight_decay, -max, max, false, false},
                {"--momentum", c.momentum, 0, 1, false, false},
                {"--huber-delta", c.huber_delta, 0, max, false, true},
                {"--threads", double(c.threads), 0, 4096, true, false},
                {"--val-every", double(c.val_every), 1, 1000000, true, false},
                {"--val-crops", double(c.val_crops), 1, 1000, true, false},
                {"--samples", double(c.samples), 0, 100, true, false},
                {"--sample-size", double(c.sample_size), 16, 2048, true, false},
                {"--loader-max-side", double(c.loader_max_side), 16, 1 << 20, true, false},
                {"--workers", double(c.workers), 0, 64, true, false},
                {"--checkpoint-every", double(c.checkpoint_every), 0, 100000000, true, false},
                {"--loss-every", double(c.loss_every), 1, 256, true, false}};
  for (const auto& k : checks) {
    const std::string problem = number_problem(number_text(k.value), k.lo, k.hi, k.integer, k.lo_open);
    if (!problem.empty()) return std::string(k.option) + ": " + problem;
  }
  if (!c.data_repeat.empty() && c.data_repeat.size() != c.data.size())
    return "--data-repeat: " + std::to_string(c.data_repeat.size()) + " numbers for " + std::to_string(c.data.size()) +
           " --data folders; give one per folder";
  for (const int r : c.data_repeat) {
    const std::string problem = number_problem(number_text(double(r)), 1, 1000, true, false);
    if (!problem.empty()) return std::string("--data-repeat: ") + problem;
  }
  if (c.scales.empty()) return "--scales: no scale given";
  for (const float s : c.scales) {
    const std::string problem = number_problem(number_text(s), 0, max, false, true);
    if (!problem.empty()) return std::string("--scales: ") + problem;
  }
  auto one_of = [](const std::string& v, std::initializer_list<const char*> allowed) {
    for (const char* a : allowed)
      if (v == a) return true;
    return false;
  };
  if (!one_of(c.schedule, {"exp", "step", "cosine", "constant"}))
    return "--schedule: '" + c.schedule + "' is not exp, step, cosine or constant";
  if (!one_of(c.optimizer, {"adam", "adamw", "sgd"}))
    return "--optimizer: '" + c.optimizer + "' is not adam, adamw or sgd";
  if (!one_of(c.loss, {"mse", "l1", "huber", "classify"}))
    return "--loss: '" + c.loss + "' is not mse, l1, huber or classify";
  if (!one_of(c.model, {"small", "base"})) return "--model: '" + c.model + "' is not small or base";
  if (!one_of(c.precision, {"fp32", "tf32", "bf16"}))
    return "--precision: '" + c.precision + "' is not fp32, tf32 or bf16";
  if (!one_of(c.cuda_graph, {"on", "off"})) return "--cuda-graph: '" + c.cuda_graph + "' is not on or off";
  if (!c.preset.empty() && !one_of(c.preset, {"default", "street"}))
    return "--preset: '" + c.preset + "' is not default or street";
  return {};
}

}  // namespace kiln::programs
