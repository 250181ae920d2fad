#pragma once
// kiln-train's settings: the command line, and the JSON copy kept in every checkpoint (so
// --resume continues with the same settings unless the command line says otherwise).
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::programs {

struct TrainConfig {
  std::vector<std::string> data;  // training folders
  std::vector<int> data_repeat;   // times each --data folder's images enter an epoch (empty: once each)
  std::string preset;             // default | street ("" = none)
  std::vector<std::string> val;   // validation folders
  double val_split = 0;           // fraction of the training images (by image) when no --val
  int crop = 64;
  int batch = 16;
  int epochs = 30;
  int steps_per_epoch = 100;
  std::string time_budget;  // "" = none, else "10m", "90s", ...
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
  std::string precision = "fp32";  // fp32 | tf32 | bf16: the convolutions' math mode on cuda, simulated on cpu
  std::string cuda_graph = "on";   // on | off: cuda, one process: each step replayed from a CUDA graph; not saved
  int loss_every = 16;             // cuda: the losses and the device's NaN check are read every N steps; not saved
  int threads = 0;                 // 0 = OpenMP's default
  std::uint64_t seed = 1;
  std::string out = "out/train";
  int val_every = 1;
  int val_crops = 4;      // crops per validation image
  int samples = 6;        // rows in samples.png
  int sample_size = 192;  // width of a sample cell (height 3/4 of it)
  std::vector<float> scales = {1.0f, 0.75f, 0.5f};
  bool flip = true;
  int loader_max_side = 512;
  int workers = 1;
  int checkpoint_every = 0;      // > 0: also save OUT/latest.safetensors every N steps (mid-epoch)
  long long stop_at_step = 0;    // > 0: stop (and save, as on Ctrl-C) when the global step reaches it
  std::string debug_inject_nan;  // hidden test option, KIND:NAME@STEP (numeric_guard.hpp); not saved
  bool sync_bn = false;          // data parallel: BatchNorm statistics over the global batch (world.hpp)
  std::string debug_fail_rank;   // hidden test option, RANK@STEP[:error] (world.hpp); not saved
};

// The JSON copy (every key of config_fields in config.cpp): to_json for checkpoints, from_json
// for --resume (missing keys keep their defaults: checkpoints from older versions).
void to_json(nlohmann::json& j, const TrainConfig& c);
void from_json(const nlohmann::json& j, TrainConfig& c);

// "" when every setting is one the command line accepts, else the first that is not, as
// "--lr: 'nan' is not a finite number". A resumed run's settings come from the checkpoint, which
// may be damaged or edited: they get the same checks as the command line.
std::string config_problem(const TrainConfig& c);

}  // namespace kiln::programs
