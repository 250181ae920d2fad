#pragma once
// What kiln-train writes and reads back, each described once: the metrics line of an epoch
// (OUT/metrics.jsonl) and the training state a checkpoint carries beside its tensors (the
// kiln.train.* metadata). Each is one list of (key, field) pairs in records.cpp, used both to
// write and to read, so a key is spelled in one place.
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln::io {
struct CheckpointInfo;
}

namespace kiln::programs {

// One line of OUT/metrics.jsonl: an epoch's end (or a run's, when stopped mid-epoch).
struct EpochRecord {
  double epoch = 0;
  long long step = 0;
  double lr = 0, train_loss = NAN;
  double val_mse = NAN, val_psnr = NAN, cf_pred = NAN, cf_true = NAN, base_mse = NAN, base_psnr = NAN;
  double seconds = 0, images_per_s = 0;
};

std::string metrics_line(const EpochRecord& r);
// The lines of a metrics file that parse (others are skipped); missing numbers read as NaN.
std::vector<EpochRecord> read_metrics(const std::filesystem::path& file);
// Rewrites the metrics file atomically with `records`.
void write_metrics(const std::filesystem::path& file, const std::vector<EpochRecord>& records);
void append_metrics(const std::filesystem::path& file, const EpochRecord& r);
// OUT/loss.png: the training loss, and the validation MSE beside the grey baseline.
void plot_metrics(const std::filesystem::path& png, const std::vector<EpochRecord>& records,
                  const std::string& loss_name);

// Everything a checkpoint holds about the run beyond tensors: the loop's position and counters
// (read back by --resume) and what the run was (model, settings; written for readers).
struct TrainState {
  // Described, not read back (the model and settings are checked and merged in main.cpp).
  std::string model;  // small | base
  int width = 0, depth = 0;
  std::string config;            // TrainConfig as JSON
  std::string schedule;          // the learning-rate schedule as JSON
  double baseline_mse_ab = NAN;  // the grey baseline on the validation crops
  // The loop's position and counters, restored on --resume.
  int epoch = 0;          // completed epochs
  int step_in_epoch = 0;  // steps done in the current epoch
  long long step = 0;     // global steps
  double schedule_position = 0;
  double best_val = INFINITY;
  double best_epoch = -1;
  double seconds = 0;  // wall time of all runs so far
  long long images = 0;
  double epoch_loss_sum = 0;
  long long epoch_loss_count = 0;
  double epoch_seconds = 0;  // training seconds in the current epoch (for images/s)
  long long epoch_images = 0;
  double ema_value = 0, ema_weight = 0;  // the progress line's smoothed loss
  long long optimizer_steps = 0;
  std::string loader_state;  // io::LoaderState::to_string()
};

// Adds the kiln.train.* keys of `s` to a checkpoint's metadata.
void write_state(const TrainState& s, std::map<std::string, std::string>& metadata);
// The state of a checkpoint kiln-train wrote. Every number is checked (a damaged or hand-edited
// value must not become a negative step or a NaN schedule position): a ProgramError naming
// `info`'s file, "cannot resume: its metadata kiln.train.step is '-3', not a non-negative number ...".
TrainState read_state(const io::CheckpointInfo& info);
// The same from plain metadata, or nothing when a key is missing or damaged (read_state says which).
std::optional<TrainState> peek_state(const std::map<std::string, std::string>& metadata);

// "%.17g": a double that reads back exactly.
std::string exact(double v);

}  // namespace kiln::programs
