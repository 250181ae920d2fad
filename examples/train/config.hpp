#pragma once
// kiln-train's settings: the command line, and the JSON copy kept in every checkpoint (so
// --resume continues with the same settings unless the command line says otherwise).
#include <nlohmann/json.hpp>

#include "../common/options.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::programs {

struct TrainConfig {
  std::vector<std::string> data;   // training folders
  std::string preset;              // default | street ("" = none)
  std::vector<std::string> val;    // validation folders
  double val_split = 0;            // fraction of the training images (by image) when no --val
  int crop = 64;
  int batch = 16;
  int epochs = 30;
  int steps_per_epoch = 100;
  std::string time_budget;         // "" = none, else "10m", "90s", ...
  double lr = 1e-3;
  double lr_end_fraction = 0.05;
  std::string schedule = "exp";    // exp | step | cosine | constant
  double step_gamma = 0.1;         // step schedule
  int step_epochs = 10;            // step schedule
  std::string optimizer = "adam";  // adam | adamw | sgd
  double weight_decay = -1;        // < 0: the optimizer's default (0 Adam, 0.01 AdamW, 0 SGD)
  double momentum = 0.9;           // sgd
  std::string loss = "mse";        // mse | l1 | huber | classify (ab bins, Zhang et al. 2016)
  double huber_delta = 1.0;
  std::string model = "small";     // small | base
  std::string device = "auto";     // auto | cpu | cuda
  int threads = 0;                 // 0 = OpenMP's default
  std::uint64_t seed = 1;
  std::string out = "out/train";
  int val_every = 1;
  int val_crops = 4;               // crops per validation image
  int samples = 6;                 // rows in samples.png
  int sample_size = 192;           // width of a sample cell (height 3/4 of it)
  std::vector<float> scales = {1.0f, 0.75f, 0.5f};
  bool flip = true;
  int loader_max_side = 512;
  int workers = 1;
  int checkpoint_every = 0;        // > 0: also save OUT/latest.safetensors every N steps (mid-epoch)
  long long stop_at_step = 0;      // > 0: stop (and save, as on Ctrl-C) when the global step reaches it
  std::string debug_inject_nan;    // hidden test option, KIND:NAME@STEP (numeric_guard.hpp); not saved
  bool sync_bn = false;            // data parallel: BatchNorm statistics over the global batch (distributed.hpp)
  std::string debug_fail_rank;     // hidden test option, RANK@STEP[:error] (distributed.hpp); not saved
};

inline void to_json(nlohmann::json& j, const TrainConfig& c) {
  j = nlohmann::json{{"data", c.data},
                     {"preset", c.preset},
                     {"val", c.val},
                     {"val_split", c.val_split},
                     {"crop", c.crop},
                     {"batch", c.batch},
                     {"epochs", c.epochs},
                     {"steps_per_epoch", c.steps_per_epoch},
                     {"time_budget", c.time_budget},
                     {"lr", c.lr},
                     {"lr_end_fraction", c.lr_end_fraction},
                     {"schedule", c.schedule},
                     {"step_gamma", c.step_gamma},
                     {"step_epochs", c.step_epochs},
                     {"optimizer", c.optimizer},
                     {"weight_decay", c.weight_decay},
                     {"momentum", c.momentum},
                     {"loss", c.loss},
                     {"huber_delta", c.huber_delta},
                     {"model", c.model},
                     {"device", c.device},
                     {"threads", c.threads},
                     {"seed", c.seed},
                     {"out", c.out},
                     {"val_every", c.val_every},
                     {"val_crops", c.val_crops},
                     {"samples", c.samples},
                     {"sample_size", c.sample_size},
                     {"scales", c.scales},
                     {"flip", c.flip},
                     {"loader_max_side", c.loader_max_side},
                     {"workers", c.workers},
                     {"checkpoint_every", c.checkpoint_every},
                     {"sync_bn", c.sync_bn}};
}

// Missing keys keep their defaults (checkpoints from older versions).
inline void from_json(const nlohmann::json& j, TrainConfig& c) {
  auto get = [&](const char* key, auto& field) {
    if (j.contains(key)) j.at(key).get_to(field);
  };
  get("data", c.data);
  get("preset", c.preset);
  get("val", c.val);
  get("val_split", c.val_split);
  get("crop", c.crop);
  get("batch", c.batch);
  get("epochs", c.epochs);
  get("steps_per_epoch", c.steps_per_epoch);
  get("time_budget", c.time_budget);
  get("lr", c.lr);
  get("lr_end_fraction", c.lr_end_fraction);
  get("schedule", c.schedule);
  get("step_gamma", c.step_gamma);
  get("step_epochs", c.step_epochs);
  get("optimizer", c.optimizer);
  get("weight_decay", c.weight_decay);
  get("momentum", c.momentum);
  get("loss", c.loss);
  get("huber_delta", c.huber_delta);
  get("model", c.model);
  get("device", c.device);
  get("threads", c.threads);
  get("seed", c.seed);
  get("out", c.out);
  get("val_every", c.val_every);
  get("val_crops", c.val_crops);
  get("samples", c.samples);
  get("sample_size", c.sample_size);
  get("scales", c.scales);
  get("flip", c.flip);
  get("loader_max_side", c.loader_max_side);
  get("workers", c.workers);
  get("checkpoint_every", c.checkpoint_every);
  get("sync_bn", c.sync_bn);
}

// "" when every setting is one the command line accepts, else the first that is not, as
// "--lr: 'nan' is not a finite number". A resumed run's settings come from the checkpoint, which
// may be damaged or edited: they get the same checks as the command line.
inline std::string config_problem(const TrainConfig& c) {
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
                {"--checkpoint-every", double(c.checkpoint_every), 0, 100000000, true, false}};
  for (const auto& k : checks) {
    const std::string problem = number_problem(number_text(k.value), k.lo, k.hi, k.integer, k.lo_open);
    if (!problem.empty()) return std::string(k.option) + ": " + problem;
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
  if (!one_of(c.schedule, {"exp", "step", "cosine", "constant"})) return "--schedule: '" + c.schedule + "' is not exp, step, cosine or constant";
  if (!one_of(c.optimizer, {"adam", "adamw", "sgd"})) return "--optimizer: '" + c.optimizer + "' is not adam, adamw or sgd";
  if (!one_of(c.loss, {"mse", "l1", "huber", "classify"})) return "--loss: '" + c.loss + "' is not mse, l1, huber or classify";
  if (!one_of(c.model, {"small", "base"})) return "--model: '" + c.model + "' is not small or base";
  if (!c.preset.empty() && !one_of(c.preset, {"default", "street"})) return "--preset: '" + c.preset + "' is not default or street";
  return {};
}

}  // namespace kiln::programs
