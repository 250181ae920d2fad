#pragma once
// kiln-train's training run for one (Model, Device) pair: data, network, optimizer, schedule,
// the loop, validation, checkpoints, pictures. main.cpp parses the command line and calls
// train<Model>() once, for the model and device chosen at run time.
#include "../common/models.hpp"  // first: it brings <kiln/cuda.hpp> before the other kiln headers
#include <kiln/io/checkpoint.hpp>
#include <kiln/io/dataset.hpp>
#include <kiln/io/image.hpp>
#include <kiln/color/lab_tensor.hpp>
#include <kiln/color/loader.hpp>
#include <kiln/io/read_file.hpp>
#include <kiln/kiln.hpp>
#include <kiln/color/metrics.hpp>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "../common/checkpoint_model.hpp"
#include "../common/cli.hpp"
#include "../common/grid.hpp"
#include "../common/image_complete.hpp"
#include "../common/memory_budget.hpp"
#include "../common/paths.hpp"
#include "../common/infer.hpp"
#include "../common/plot.hpp"
#include "../common/progress.hpp"
#include "../common/signals.hpp"
#include "colour_objective.hpp"
#include "config.hpp"
#include "distributed.hpp"
#include "numeric_guard.hpp"

namespace kiln::programs {

inline constexpr const char* kTrainProgram = "kiln-train";
namespace fs = std::filesystem;

// What main() decided beyond the config.
struct RunRequest {
  TrainConfig config;
  DeviceKind device = DeviceKind::cpu;
  std::string resume;                   // checkpoint to continue from ("" = fresh run)
  double time_budget_s = 0;             // 0 = none
  bool overwrite = false;               // --overwrite: a fresh run may replace another run's files in OUT
  MemoryBudget budget;
  World* world = nullptr;               // the ranks of an mpirun launch (distributed.hpp); null: one process
  std::size_t bucket_bytes = dist::GradientBuckets<dist::LocalCommunicator<Cpu>>::default_bucket_bytes;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

// ---------------------------------------------------------------------------------- data

// The folder that holds the presets' photos: $KILN_DATA_DIR, ./data/photos, or the source tree's.
inline fs::path preset_root() {
  if (const char* env = std::getenv("KILN_DATA_DIR"); env && *env) return env;
  if (fs::is_directory("data/photos")) return "data/photos";
#ifdef KILN_SOURCE_DIR
  if (fs::is_directory(fs::path(KILN_SOURCE_DIR) / "data/photos")) return fs::path(KILN_SOURCE_DIR) / "data/photos";
#endif
  return "data/photos";
}

inline io::ImageFolderDataset scan_folders(const std::vector<std::string>& folders) {
  std::vector<fs::path> files;
  for (const std::string& folder : folders) {
    try {
      const io::ImageFolderDataset d{fs::path(folder)};
      for (const std::string& skipped : d.skipped()) print_warning(kTrainProgram, "skipping " + skipped);
      files.insert(files.end(), d.files().begin(), d.files().end());
    } catch (const std::exception& e) {
      // The io message ends "... found under '<folder>'": said with the folder first instead.
      if (std::string(e.what()).rfind("no images", 0) == 0)
        throw ProgramError(folder, "the folder holds no images (png, jpg, jpeg, bmp or tga; searched recursively)");
      throw file_error(folder, e);
    }
  }
  return io::ImageFolderDataset::from_files(std::move(files));
}

// The size of every image, found by decoding it fully (fail fast: an image whose header is fine
// but whose data is cut would otherwise stop training when the loader first reaches it, epochs
// later). Each decode is checked against the memory budget first. Prints one line per unusable
// image and stops the run.
struct ImageSize {
  int width = 0, height = 0, channels = 0;
};
inline void check_images(const io::ImageFolderDataset& d, int min_side, const MemoryBudget& budget,
                         std::map<fs::path, ImageSize>& sizes) {
  bool bad = false;
  auto report = [&](const fs::path& file, const std::string& reason) {
    print_error(kTrainProgram, file.empty() ? reason : file.string() + ": " + without_quoted(reason, file.string()));
    bad = true;
  };
  for (const std::string& s : d.skipped()) report({}, s);
  for (const fs::path& file : d.files()) {
    try {
      const std::vector<std::byte> bytes = io::read_file(file, "image", std::uint64_t(INT_MAX));
      const io::ImageHeader h = io::read_image_header(bytes, file);
      // stb's 8/16-bit pixels and kiln's floats (6 bytes a channel), then the RGB copy (12).
      const std::uint64_t decode = std::uint64_t(h.width) * std::uint64_t(h.height) * std::uint64_t(6 * h.channels + 12);
      check_memory(budget, file.string(), "decoding it",
                   {{std::to_string(h.width) + "x" + std::to_string(h.height) + " pixels, decoded", decode}},
                   "remove it or make it smaller, or allow more with --max-memory");
      if (const std::string problem = incomplete_image_problem(bytes); !problem.empty()) {
        report(file, problem);
        continue;
      }
      const io::Image image = io::decode_image(bytes, file);
      if (image.width < min_side || image.height < min_side) {
        report(file, std::to_string(image.width) + "x" + std::to_string(image.height) + " pixels, smaller than the " +
                         std::to_string(min_side) + "-pixel crop");
        continue;
      }
      sizes[file] = {image.width, image.height, image.channels};
    } catch (const ProgramError& e) {
      report({}, e.what());
    } catch (const std::exception& e) {
      std::string reason = message_of(e);
      for (const std::string& prefix : {"cannot read image '" + file.string() + "': ", "cannot decode image '" + file.string() + "': "})
        if (reason.rfind(prefix, 0) == 0) reason.erase(0, prefix.size());
      report(file, reason);
    }
  }
  if (bad) throw AlreadyReported{exit_error};
}

struct DataSets {
  io::ImageFolderDataset train, val;
  std::string val_origin;
  std::map<fs::path, ImageSize> sizes;  // every image, fully decoded once
};

// Folders that would make a run wrong without an error: the same folder twice, a validation
// folder overlapping a training folder (its images would be trained on and scored), and an
// output folder inside a data folder (the next run would train on loss.png and samples.png).
inline void check_folders(const std::vector<std::string>& train, const std::vector<std::string>& val,
                          const fs::path& out) {
  std::vector<std::pair<std::string, const char*>> all;
  for (const std::string& f : train) all.push_back({f, "--data"});
  for (const std::string& f : val) all.push_back({f, "--val"});
  for (std::size_t i = 0; i < all.size(); ++i) {
    for (std::size_t j = i + 1; j < all.size(); ++j) {
      const auto& [a, oa] = all[i];
      const auto& [b, ob] = all[j];
      const bool same = is_same_or_inside(a, b) && is_same_or_inside(b, a);
      const bool crossing = std::string(oa) != ob;
      if (same)
        throw usage_error(std::string(ob), "'" + b + "' is the same folder as '" + a + "' (" + oa + ")" +
                                               (crossing ? ": validation images must not be training images; give "
                                                           "another --val folder, or --val-split F"
                                                         : ": give each folder once"));
      if (is_same_or_inside(b, a) || is_same_or_inside(a, b)) {
        const bool b_inside = is_same_or_inside(b, a);
        const auto& [inner, oi] = b_inside ? all[j] : all[i];
        const auto& [outer, oo] = b_inside ? all[i] : all[j];
        throw usage_error(std::string(oi), "'" + inner + "' lies inside '" + outer + "' (" + oo + "), whose images are " +
                                               "searched recursively: its images would be used twice" +
                                               (crossing ? ", for training and for validation" : "") +
                                               "; give folders that do not overlap");
      }
    }
  }
  for (const auto& [f, option] : all)
    if (is_same_or_inside(out, f))
      throw usage_error("--out", "'" + out.string() + "' lies inside the " + (std::string(option) == "--val" ? "validation" : "training") +
                                     " folder '" + f + "': the run's loss.png and samples.png would become images of "
                                     "the next run; choose an --out folder outside the data");
}

inline DataSets find_data(const TrainConfig& c, const MemoryBudget& budget) {
  DataSets d;
  std::vector<std::string> train_folders = c.data, val_folders = c.val;
  if (!c.preset.empty()) {
    const fs::path root = preset_root() / c.preset;
    for (const char* part : {"train", "val"}) {
      if (!fs::is_directory(root / part))
        throw ProgramError((root / part).string(),
                           "the '" + c.preset + "' photos are not installed: run 'bash scripts/install-data.sh --preset " +
                               c.preset + "' (or give --data DIR)");
    }
    train_folders.push_back((root / "train").string());
    if (val_folders.empty() && !(c.val_split > 0)) val_folders.push_back((root / "val").string());
  }
  if (train_folders.empty())
    throw usage_error("--data", "no training images: give --data DIR... or --preset default|street");
  check_folders(train_folders, val_folders, c.out);
  d.train = scan_folders(train_folders);
  if (!val_folders.empty()) {
    check_images(d.train, c.crop, budget, d.sizes);
    d.val = scan_folders(val_folders);
    check_images(d.val, c.crop, budget, d.sizes);
    d.val_origin = "from " + std::to_string(val_folders.size()) + " folder(s)";
  } else {
    const double fraction = c.val_split > 0 ? c.val_split : 0.1;
    // Checked before the split, so that a folder whose one "image" is not one hears that first.
    check_images(d.train, c.crop, budget, d.sizes);
    if (d.train.size() < 2)
      throw ProgramError(train_folders.front(), "holds only one image (" + d.train.file(0).string() +
                                                    "): cannot split off validation images (give --val DIR)");
    io::DatasetSplit split = d.train.split_by_image(fraction, c.seed);
    d.train = std::move(split.train);
    d.val = std::move(split.validation);
    char buf[64];
    std::snprintf(buf, sizeof buf, "split off %.0f%% of the training images", fraction * 100);
    d.val_origin = buf;
  }
  return d;
}

// ---------------------------------------------------------------------------------- metrics file

struct EpochRecord {
  double epoch = 0;
  long long step = 0;
  double lr = 0, train_loss = NAN;
  double val_mse = NAN, val_psnr = NAN, cf_pred = NAN, cf_true = NAN, base_mse = NAN, base_psnr = NAN;
  double seconds = 0, images_per_s = 0;
};

inline nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

inline std::string metrics_line(const EpochRecord& r) {
  nlohmann::ordered_json j;
  j["epoch"] = r.epoch;
  j["step"] = r.step;
  j["lr"] = r.lr;
  j["train_loss"] = number_or_null(r.train_loss);
  j["val_mse_ab"] = number_or_null(r.val_mse);
  j["val_psnr"] = number_or_null(r.val_psnr);
  j["val_colorfulness_pred"] = number_or_null(r.cf_pred);
  j["val_colorfulness_true"] = number_or_null(r.cf_true);
  j["baseline_mse_ab"] = number_or_null(r.base_mse);
  j["baseline_psnr"] = number_or_null(r.base_psnr);
  j["seconds"] = r.seconds;
  j["images_per_s"] = r.images_per_s;
  return j.dump();
}

inline double json_number(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

inline std::vector<EpochRecord> read_metrics(const fs::path& file) {
  std::vector<EpochRecord> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    EpochRecord r;
    r.epoch = json_number(j, "epoch");
    r.step = j.contains("step") && j["step"].is_number() ? j["step"].get<long long>() : 0;
    r.lr = json_number(j, "lr");
    r.train_loss = json_number(j, "train_loss");
    r.val_mse = json_number(j, "val_mse_ab");
    r.val_psnr = json_number(j, "val_psnr");
    r.cf_pred = json_number(j, "val_colorfulness_pred");
    r.cf_true = json_number(j, "val_colorfulness_true");
    r.base_mse = json_number(j, "baseline_mse_ab");
    r.base_psnr = json_number(j, "baseline_psnr");
    r.seconds = json_number(j, "seconds");
    r.images_per_s = json_number(j, "images_per_s");
    out.push_back(r);
  }
  return out;
}

// Rewrites the metrics file atomically with `lines`.
inline void write_metrics(const fs::path& file, const std::vector<EpochRecord>& records) {
  std::string text;
  for (const EpochRecord& r : records) text += metrics_line(r) + "\n";
  io::write_file_atomically(file, std::as_bytes(std::span(text.data(), text.size())));
}

inline void append_metrics(const fs::path& file, const EpochRecord& r) {
  std::ofstream out(file, std::ios::app);
  out << metrics_line(r) << "\n";
  out.flush();
  if (!out) throw ProgramError(file.string(), "cannot append to the metrics file");
}

inline void plot_metrics(const fs::path& png, const std::vector<EpochRecord>& records, const std::string& loss_name) {
  Series train{"TRAIN " + loss_name, kBlue, {}, {}};
  Series val{"VALIDATION", kOrange, {}, {}};
  Series grey{"GREY (AB = 0)", kGrey, {}, {}, true};
  for (const EpochRecord& r : records) {
    train.x.push_back(r.epoch), train.y.push_back(r.train_loss);
    val.x.push_back(r.epoch), val.y.push_back(r.val_mse);
    grey.x.push_back(r.epoch), grey.y.push_back(r.base_mse);
  }
  Canvas cv(1000, 380, kWhite);
  plot_panel(cv, 0, 0, 500, 380, "TRAINING LOSS", "EPOCH", {train});
  plot_panel(cv, 500, 0, 500, 380, "VAL MSE OF AB (LAB UNITS)", "EPOCH", {grey, val});
  io::save_png(png, cv.image());
}

// ---------------------------------------------------------------------------------- helpers

inline std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}
inline std::string exact(double v) { return fmt("%.17g", v); }

struct ValResult {
  double mse = NAN, psnr = NAN, cf_pred = NAN, cf_true = NAN;
};

template <class Net>
ValResult validate(Network<Net>& net, const io::ValidationSet& val, const ColourHead& head) {
  using Device = typename Net::device;
  train::ValidationMetrics m;
  for (const io::Batch& b : val.batches()) {
    const Tensor<float, Cpu> pred = head.to_ab(to_host<Device>(net.forward(to_device<Device>(b.L), Mode::eval)));
    m.add(b.L, pred, b.ab);
  }
  return {m.ab_mse(), m.psnr(), m.colorfulness_pred(), m.colorfulness_true()};
}

inline ValResult grey_baseline(const io::ValidationSet& val) {
  train::ValidationMetrics m;
  for (const io::Batch& b : val.batches()) m.add(b.L, Tensor<float, Cpu>(b.ab.shape()), b.ab);
  return {m.ab_mse(), m.psnr(), m.colorfulness_pred(), m.colorfulness_true()};
}

template <class Net>
void write_samples(Network<Net>& net, const std::vector<io::Image>& truths, const fs::path& png,
                   const ColourHead& head) {
  std::vector<std::vector<io::Image>> rows;
  for (const io::Image& truth : truths) {
    Colorized r = colorize(net, truth, InferSize{0, 0, 0}, [&](const Tensor<float, Cpu>& y) { return head.to_ab(y); });
    rows.push_back({io::to_rgb(r.grey), std::move(r.colour), truth});
  }
  io::save_png(png, make_grid(rows, {"GREY (INPUT)", "KILN", "ORIGINAL"}));
}

// ---------------------------------------------------------------------------------- optimizer

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

inline Schedule make_run_schedule(const TrainConfig& c) {
  ScheduleOptions o;
  o.start_lr = float(c.lr);
  o.epochs = c.epochs;
  o.final_fraction = c.lr_end_fraction;
  o.gamma = c.step_gamma;
  o.step_epochs = c.step_epochs;
  o.final_lr = float(c.lr * c.lr_end_fraction);
  try {
    return make_schedule(c.schedule, o);
  } catch (const std::exception& e) {
    throw usage_error("--schedule", e.what());
  }
}

inline nlohmann::json schedule_json(const TrainConfig& c) {
  return {{"kind", c.schedule},       {"start_lr", c.lr},           {"end_fraction", c.lr_end_fraction},
          {"epochs", c.epochs},       {"steps_per_epoch", c.steps_per_epoch},
          {"step_gamma", c.step_gamma}, {"step_epochs", c.step_epochs}};
}

// ---------------------------------------------------------------------------------- the run

// A save killed mid-write (SIGKILL, power cut) leaves its temporary "<file>.tmp.<pid>" behind
// (atomic_file.hpp); the file itself is intact. Removes those of processes that no longer run,
// and only temporaries of the run's own files: "notes.tmp.123" is the user's.
inline int remove_stale_temporaries(const fs::path& out, const std::vector<fs::path>& run_files) {
  int removed = 0;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    const auto at = name.rfind(".tmp.");
    if (at == std::string::npos || at == 0 || !e.is_regular_file(ec)) continue;
    bool ours = false;
    for (const fs::path& f : run_files) ours = ours || name.substr(0, at) == f.filename().string();
    if (!ours) continue;
    const std::string digits = name.substr(at + 5);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    const pid_t pid = pid_t(std::stol(digits));
    if (pid != ::getpid() && (::kill(pid, 0) == 0 || errno != ESRCH)) continue;  // a live writer (or not ours to judge)
    if (fs::remove(e.path(), ec)) ++removed;
  }
  return removed;
}

// Training progress that a checkpoint carries (beyond tensors).
struct Progress {
  int epoch = 0;               // completed epochs
  int step_in_epoch = 0;       // steps done in the current epoch
  long long step = 0;          // global steps
  double schedule_position = 0;
  double best_val = INFINITY;
  double best_epoch = -1;
  double seconds = 0;          // wall time of all runs before this one
  long long images = 0;
  double epoch_loss_sum = 0;
  long long epoch_loss_count = 0;
  double epoch_seconds = 0;    // training seconds in the current epoch (for images/s)
  long long epoch_images = 0;
};

// The run's memory, estimated before the loader, the validation set and the network allocate it:
// the network's arena for a training batch, parameters with gradients and optimizer moments, the
// loader's cache of every image (8-bit RGB at most --loader-max-side long), the validation crops,
// and the largest image decoded at full size.
template <class Model>
void check_training_memory(const TrainConfig& c, const DataSets& data, const MemoryBudget& budget) {
  if (budget.bytes == 0) return;
  using Net = Network<Model>;
  auto net = std::make_unique<Net>();
  const std::uint64_t arena = arena_bytes(*net, Shape::nchw(c.batch, 1, c.crop, c.crop), Mode::train);
  const std::uint64_t params = std::uint64_t(Model::parameter_count) * 4 * 4;
  std::uint64_t cache = 0, largest = 0;
  const double max_side = std::max(c.loader_max_side, c.crop);
  for (const auto& [file, sz] : data.sizes) {
    const double f = std::min(1.0, max_side / std::max(sz.width, sz.height));
    cache += std::uint64_t(std::ceil(sz.width * f)) * std::uint64_t(std::ceil(sz.height * f)) * 3;
    largest = std::max(largest, std::uint64_t(sz.width) * std::uint64_t(sz.height) * std::uint64_t(6 * sz.channels + 12));
  }
  const std::uint64_t val_crops = std::uint64_t(data.val.size()) * std::uint64_t(std::max(1, c.val_crops)) *
                                  std::uint64_t(c.crop) * std::uint64_t(c.crop) * 3 * 4;
  const int threads = omp_get_max_threads();
  check_memory(budget, c.out, "this run",
               {{"the network for a batch of " + std::to_string(c.batch) + " crops of " + std::to_string(c.crop) +
                     " pixels on " + std::to_string(threads) + (threads == 1 ? " thread" : " threads"),
                 arena},
                {"parameters, gradients and optimizer state", params},
                {"the loader's cache of " + std::to_string(data.sizes.size()) + " images", cache},
                {"the validation crops", val_crops},
                {"the largest image, decoded", largest},
                program_allowance()},
               "use a smaller --batch or --crop, fewer --threads, a smaller --loader-max-side, or allow more with "
               "--max-memory");
}

template <class Model>
int train(RunRequest req) {
  using Device = typename Model::device;
  using Net = Network<Model>;
  TrainConfig& c = req.config;
  const auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };

  if (c.threads > 0) omp_set_num_threads(c.threads);
  const fs::path out = c.out;
  const fs::path latest = out / "latest.safetensors", best = out / "best.safetensors",
                 metrics_file = out / "metrics.jsonl", loss_png = out / "loss.png", samples_png = out / "samples.png";
  const std::vector<fs::path> run_files{latest, best, metrics_file, loss_png, samples_png};
  // Data parallel (mpirun): rank 0 alone reads and writes OUT; every rank trains.
  std::unique_ptr<Replicas<Device>> replicas = req.world ? req.world->replicas<Device>() : one_process<Device>();
  const bool root = replicas->root();
  const int ranks = replicas->size();
  const std::optional<RankFailure> rank_failure = parse_rank_failure(c.debug_fail_rank);
  // A fresh run never writes over another run's files unless told to (--overwrite).
  if (req.resume.empty() && root) {
    std::string found;
    for (const fs::path& f : run_files) {
      std::error_code fec;
      if (fs::exists(fs::symlink_status(f, fec))) found += (found.empty() ? "" : ", ") + f.filename().string();
    }
    if (!found.empty() && !req.overwrite)
      throw ProgramError(out.string(), "holds another run's files (" + found +
                                           "), which a new run would replace: continue that run with --resume --out " +
                                           out.string() + ", choose another --out, or replace it with --overwrite");
  }
  const std::optional<NanInjection> injection = parse_nan_injection(c.debug_inject_nan);

  // Data first: bad input stops the run before anything is written.
  DataSets data = find_data(c, req.budget);
  check_training_memory<Model>(c, data, req.budget);
  std::error_code ec;
  if (root) fs::create_directories(out, ec);
  if (ec) throw ProgramError(out.string(), "cannot create the output folder (" + ec.message() + ")");
  const int stale = root ? remove_stale_temporaries(out, run_files) : 0;
  // --overwrite: the earlier run's files go now (the data is good), so none of them is left
  // to be mistaken for this run's (a best.safetensors from the old run, say).
  if (req.resume.empty() && req.overwrite && root)
    for (const fs::path& f : run_files) fs::remove(f, ec);
  io::LoaderOptions lo;
  lo.batch = c.batch;
  lo.crop = c.crop;
  lo.scales = c.scales;
  lo.flip = c.flip;
  lo.seed = c.seed;
  lo.workers = c.workers;
  lo.max_side = std::max(c.loader_max_side, c.crop);
  lo.shard_index = replicas->rank();  // each rank makes its part of the global batch
  lo.shard_count = ranks;
  std::unique_ptr<io::TrainLoader> loader;
  std::unique_ptr<io::ValidationSet> valset;
  std::vector<io::Image> sample_truths;
  const int cell_w = std::max(16, c.sample_size), cell_h = std::max(16, c.sample_size * 3 / 4);
  try {
    loader = std::make_unique<io::TrainLoader>(data.train, lo);
    // Validation crops at the training crops' pixel scale (loader.hpp: ValidationView).
    valset = std::make_unique<io::ValidationSet>(data.val, c.crop, c.batch, std::max(1, c.val_crops),
                                                 io::ValidationView::like(lo));
    const std::size_t n = std::min<std::size_t>(std::size_t(std::max(0, c.samples)), data.val.size());
    for (std::size_t k = 0; k < n; ++k)
      sample_truths.push_back(fit_crop(data.val.load_rgb(k * data.val.size() / n), cell_w, cell_h));
  } catch (const std::exception& e) {
    const std::string file = first_quoted(e.what());
    std::string msg = e.what();
    for (const char* prefix : {"ValidationSet: ", "TrainLoader: "})
      if (msg.rfind(prefix, 0) == 0) msg.erase(0, std::string(prefix).size());
    throw ProgramError(file, without_quoted(msg, file));
  }

  // Network, optimizer, loss, schedule.
  auto net = std::make_unique<Net>();
  {
    Rng init(c.seed);
    net->reset_parameters(init);
  }
  const std::vector<ParameterSlot<Device>> slots = collect_parameters(*net);  // names, weights, gradients
  auto opt = make_optimizer<Device>(c, slots);
  // (classify: the bins and rebalancing weights come from the training images' colours)
  ColourObjective<Model> loss = [&] {
    try {
      return ColourObjective<Model>(c.loss, float(c.huber_delta),
                                    ColourObjective<Model>::classify ? classify_head_from_data(data.train, Model::out_channels)
                                                                     : ColourHead{});
    } catch (const std::exception& e) {
      throw usage_error("--loss", e.what());
    }
  }();
  const Schedule schedule = make_run_schedule(c);
  Progress p;
  Ema ema(0.98);

  // Resume: every tensor and counter, then the loop's position.
  if (!req.resume.empty()) {
    try {
      io::CheckpointInfo info =
          std::visit([&](auto& o) { return io::load_checkpoint(req.resume, *net, o, colorization_checks()); }, *opt);
      // Every number a checkpoint brings in is checked: a damaged or hand-edited value must not
      // become a negative step, a NaN schedule position or an epoch past the end unnoticed.
      auto num = [&](const char* key, double lo = -1e300, bool allow_inf = false) {
        const std::string k = std::string("kiln.train.") + key, text = info.get(k);
        double v = 0;
        char* end = nullptr;
        v = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || std::isnan(v) || (!allow_inf && !std::isfinite(v)) ||
            v < lo)
          throw ProgramError(req.resume, "cannot resume: its metadata " + k + " is '" + text + "', not " +
                                             (lo >= 0 ? "a non-negative" : "a finite") + " number as kiln-train writes");
        return v;
      };
      auto whole = [&](const char* key) {
        const double v = num(key, 0);
        if (v != std::floor(v) || v > 9e15)
          throw ProgramError(req.resume, std::string("cannot resume: its metadata kiln.train.") + key + " is " +
                                             info.get(std::string("kiln.train.") + key) + ", not a whole number");
        return (long long)v;
      };
      p.epoch = int(std::min<long long>(whole("epoch"), 1 << 30));
      p.step_in_epoch = int(std::min<long long>(whole("step_in_epoch"), 1 << 30));
      if (p.step_in_epoch >= c.steps_per_epoch)
        throw ProgramError(req.resume, "cannot resume: it was saved at step " + std::to_string(p.step_in_epoch) +
                                           " of an epoch, but an epoch has " + std::to_string(c.steps_per_epoch) +
                                           " steps (--steps-per-epoch): resume with its own --steps-per-epoch");
      p.step = whole("step");
      p.schedule_position = num("schedule_position", 0);
      p.best_val = num("best_val_mse", 0, true);
      p.best_epoch = num("best_epoch");
      p.seconds = num("seconds", 0);
      p.images = whole("images");
      p.epoch_loss_sum = num("epoch_loss_sum");
      p.epoch_loss_count = whole("epoch_loss_count");
      p.epoch_seconds = num("epoch_seconds", 0);
      p.epoch_images = whole("epoch_images");
      ema.restore(num("ema_value"), num("ema_weight", 0));
      const long long opt_steps = whole("optimizer_steps");
      std::visit([&](auto& o) { o.set_step_count(opt_steps); }, *opt);
      loader->restore(io::LoaderState::from_string(info.get("kiln.train.loader_state")));
    } catch (const ProgramError&) {
      throw;
    } catch (const std::exception& e) {
      throw ProgramError(req.resume, without_quoted(e.what(), req.resume));
    }
  }

  // Every rank starts from rank 0's weights and running statistics; gradients are averaged in
  // buckets during backward; BatchNorm per rank or over the global batch (--sync-bn).
  {
    std::vector<Tensor<float, Device>*> state, grads;
    net->visit(
        [&](StateRef<Device> ref) {
          if (ref.value) state.push_back(ref.value);
        },
        "");
    for (const auto& s : slots) grads.push_back(s.grad);
    replicas->broadcast(state);
    replicas->use_gradients(grads, req.bucket_bytes);
    if constexpr (!kiln::HasSynchronisedBatchNorm<Device>)
      if (c.sync_bn && ranks > 1)
        throw usage_error("--sync-bn", "synchronised BatchNorm is implemented for --device cpu only so far; on " +
                                           device_description(req.device) + " use per-rank BatchNorm (leave --sync-bn out)");
    if (c.sync_bn) replicas->synchronise_batchnorm();
  }

  // Metrics file: a fresh run starts it anew; a resumed one keeps the lines up to its position.
  std::vector<EpochRecord> history;
  if (!req.resume.empty() && root) {
    const double position = p.epoch + double(p.step_in_epoch) / c.steps_per_epoch;
    for (const EpochRecord& r : read_metrics(metrics_file))
      if (r.epoch <= position + 1e-9) history.push_back(r);
  }
  if (root) write_metrics(metrics_file, history);

  const ValResult base = grey_baseline(*valset);
  ProgressLine progress(10.0, root ? stderr : null_stream());
  const std::string model_label = std::string(model_name<Model>()) + " (" + io::model_name<Model>() + ", " +
                                  std::to_string(Model::parameter_count) + " parameters)";
  progress.print("kiln-train: model " + model_label + " on " + device_description(req.device) +
                 (std::is_same_v<Device, Cpu> ? ", " + std::to_string(omp_get_max_threads()) + (omp_get_max_threads() == 1 ? " thread" : " threads") : ""));
  if (ranks > 1)
    progress.print("  data parallel: " + std::to_string(ranks) + " ranks (" + req.world->launch().launcher +
                   "), global batch " + std::to_string(ranks * c.batch) + " = " + std::to_string(ranks) + " x " +
                   std::to_string(c.batch) + " per rank, BatchNorm " +
                   (c.sync_bn ? "synchronised over the global batch" : "per rank") + ", gradients (" +
                   std::to_string(Model::parameter_count * sizeof(float)) + " bytes) averaged in " +
                   std::to_string(replicas->bucket_count()) + " buckets of ~" +
                   fmt("%.3g", double(req.bucket_bytes) / 1048576.0) + " MB during backward");
  progress.print("  data: " + std::to_string(data.train.size()) + " training images; " +
                 std::to_string(data.val.size()) + " validation images (" + data.val_origin + ", " +
                 std::to_string(valset->size()) + " fixed crops of " + std::to_string(c.crop) + " at the training scales)");
  progress.print("  " + std::to_string(c.epochs) + " epochs x " + std::to_string(c.steps_per_epoch) +
                 " steps, batch " + std::to_string(c.batch) + ", crop " + std::to_string(c.crop) + ", " + c.optimizer +
                 ", lr " + fmt("%g", c.lr) + (c.schedule == "constant" ? "" : " -> " + fmt("%g", c.lr * c.lr_end_fraction)) +
                 " (" + c.schedule + "), loss " + c.loss +
                 (req.time_budget_s > 0 ? ", time budget " + format_duration(req.time_budget_s) : "") +
                 "; output in " + out.string() + "/");
  progress.print("  grey baseline (ab = 0): val MSE(ab) " + fmt("%.2f", base.mse) + ", PSNR " +
                 fmt("%.2f", base.psnr) + " dB, colourfulness of the truth " + fmt("%.1f", base.cf_true));
  if (stale > 0)
    progress.print("  removed " + std::to_string(stale) + " temporary file(s) of an earlier save that was cut off (" +
                   out.string() + "/*.tmp.*); the files they were to replace are intact");
  if (!req.resume.empty())
    progress.print("  resumed from " + req.resume + " at epoch " + std::to_string(p.epoch) + ", step " +
                   std::to_string(p.step_in_epoch) + " of the epoch (global step " + std::to_string(p.step) + ")");

  // The schedule runs on the fractional epoch; with a time budget it also advances with the
  // clock, so that the learning rate reaches its end value when the budget runs out.
  const double start_position = std::max(p.schedule_position, p.epoch + double(p.step_in_epoch) / c.steps_per_epoch);
  const auto train_start = req.start;
  auto schedule_position = [&]() {
    double pos = p.epoch + double(p.step_in_epoch) / c.steps_per_epoch;
    if (req.time_budget_s > 0) {
      const double f = std::min(1.0, seconds_since(train_start) / req.time_budget_s);
      pos = std::max(pos, start_position + (c.epochs - start_position) * f);
    }
    return pos;
  };

  // The last good checkpoint and its step: the one resumed from until this run saves its own.
  long long saved_step = req.resume.empty() ? -1 : p.step;
  fs::path saved_file = req.resume.empty() ? fs::path() : fs::path(req.resume);
  auto save = [&](const fs::path& path) {
    // Never write a non-finite model over a good file (the gradient check should have stopped the
    // run before; this also covers an optimizer step that overflows).
    if (const auto bad = first_non_finite_weight(slots)) {
      throw ProgramError(path.string(), "not saved: the model's weights are no longer finite at global step " +
                                            std::to_string(p.step) + " (" + report_text(*bad) +
                                            "): try a lower --lr; the file keeps the last good state");
    }
    if (!root) return;
    std::map<std::string, std::string> m;
    m["kiln.train.model"] = std::string(model_name<Model>());
    m["kiln.train.width"] = std::to_string(Model::width);
    m["kiln.train.depth"] = std::to_string(Model::depth);
    m["kiln.train.config"] = nlohmann::json(c).dump();
    m["kiln.train.schedule"] = schedule_json(c).dump();
    m["kiln.train.epoch"] = std::to_string(p.epoch);
    m["kiln.train.step_in_epoch"] = std::to_string(p.step_in_epoch);
    m["kiln.train.step"] = std::to_string(p.step);
    m["kiln.train.optimizer_steps"] = std::to_string(std::visit([](auto& o) { return (long long)o.step_count(); }, *opt));
    m["kiln.train.schedule_position"] = exact(p.schedule_position);
    m["kiln.train.loader_state"] = loader->state().to_string();
    m["kiln.train.best_val_mse"] = exact(p.best_val);
    m["kiln.train.best_epoch"] = exact(p.best_epoch);
    m["kiln.train.seconds"] = exact(p.seconds + seconds_since(req.start));
    m["kiln.train.images"] = std::to_string(p.images);
    m["kiln.train.epoch_loss_sum"] = exact(p.epoch_loss_sum);
    m["kiln.train.epoch_loss_count"] = std::to_string(p.epoch_loss_count);
    m["kiln.train.epoch_seconds"] = exact(p.epoch_seconds);
    m["kiln.train.epoch_images"] = std::to_string(p.epoch_images);
    m["kiln.train.ema_value"] = exact(ema.raw_value());
    m["kiln.train.ema_weight"] = exact(ema.raw_weight());
    m["kiln.train.baseline_mse_ab"] = exact(base.mse);
    io::add_scaling_metadata(m);
    loss.head().add_metadata(m, c.loss);
    try {
      std::visit([&](auto& o) { io::save_checkpoint(path, *net, m, o); }, *opt);
    } catch (const io::IoError& e) {
      // The write is atomic: a full disk or a failed rename leaves the previous file as it was.
      const std::string kept = fs::exists(path) ? "the previous " + path.filename().string() + " is intact"
                                                : "no earlier " + path.filename().string() + " existed";
      throw ProgramError(path.string(), without_quoted(e.what(), path.string()) + " (" + kept + ")");
    }
    if (path == latest) saved_step = p.step, saved_file = latest;
  };
  // Where the last good state is, checked on the file system (a message must not name a file
  // that is not there).
  auto kept_text = [&]() -> std::string {
    std::error_code kec;
    if (saved_step < 0 || saved_file.empty() || !fs::is_regular_file(saved_file, kec))
      return "no checkpoint of this run was written yet";
    return saved_file.string() + " keeps the last good state (global step " + std::to_string(saved_step) + ")";
  };
  // The end of a message about a failed step: where the good state is, and what to try.
  auto kept_state = [&](float lr) {
    return "(learning rate " + fmt("%.3g", lr) + "): try a lower --lr (e.g. " + fmt("%.3g", c.lr / 10) + "); " +
           kept_text();
  };
  auto step_name = [&] {
    return "epoch " + std::to_string(p.epoch + 1) + ", step " + std::to_string(p.step_in_epoch + 1) + " (global step " +
           std::to_string(p.step + 1) + ")";
  };

  // End of an epoch (or of a run stopped by its time budget): validate, record, save, draw.
  auto finish_epoch = [&](bool partial) {
    EpochRecord r;
    r.epoch = partial ? p.epoch + double(p.step_in_epoch) / c.steps_per_epoch : p.epoch;
    r.step = p.step;
    r.lr = lr_at(schedule, p.schedule_position);
    r.train_loss = p.epoch_loss_count ? p.epoch_loss_sum / double(p.epoch_loss_count) : NAN;
    r.images_per_s = p.epoch_seconds > 0 ? double(p.epoch_images) / p.epoch_seconds : 0;
    const bool do_val = root && (partial || p.epoch % std::max(1, c.val_every) == 0 || p.epoch >= c.epochs);
    bool improved = false;
    if (do_val) {
      const ValResult v = validate(*net, *valset, loss.head());
      r.val_mse = v.mse, r.val_psnr = v.psnr, r.cf_pred = v.cf_pred, r.cf_true = v.cf_true;
      r.base_mse = base.mse, r.base_psnr = base.psnr;
      if (std::isfinite(v.mse) && v.mse < p.best_val) {
        p.best_val = v.mse;
        p.best_epoch = r.epoch;
        improved = true;
      }
    }
    r.seconds = p.seconds + seconds_since(req.start);
    history.push_back(r);
    if (root) {
      append_metrics(metrics_file, r);
      save(latest);
      if (improved) save(best);
      plot_metrics(loss_png, history, c.loss);
      if (!sample_truths.empty()) write_samples(*net, sample_truths, samples_png, loss.head());
    }
    std::string line = (partial ? "epoch " + fmt("%.2f", r.epoch) : "epoch " + std::to_string(p.epoch)) + "/" +
                       std::to_string(c.epochs) + "  loss " + fmt("%.5f", r.train_loss);
    if (do_val)
      line += "  val MSE(ab) " + fmt("%.2f", r.val_mse) + " (grey " + fmt("%.2f", base.mse) + ")  PSNR " +
              fmt("%.2f", r.val_psnr) + " dB (grey " + fmt("%.2f", base.psnr) + ")  colourfulness " +
              fmt("%.1f", r.cf_pred) + " (true " + fmt("%.1f", r.cf_true) + ")" + (improved ? "  *best" : "");
    line += "  " + fmt("%.1f", r.images_per_s) + " img/s  lr " + fmt("%.2e", r.lr) + "  " + format_duration(r.seconds);
    progress.print(line);
    p.epoch_loss_sum = 0, p.epoch_loss_count = 0, p.epoch_seconds = 0, p.epoch_images = 0;
  };

  install_stop_handlers();
  enum class Stop { none, finished, interrupted, budget, step_limit } stop = Stop::none;
  double step_time = 0;  // EMA of seconds per step
  double guard_seconds = 0, steps_seconds = 0;  // the gradient checks' share of this run's steps (summary)
  long long steps_run = 0;
  const long long total_steps = (long long)c.epochs * c.steps_per_epoch;
  if (p.epoch >= c.epochs) stop = Stop::finished;
  while (stop == Stop::none) {
    // Every rank must stop at the same step and use the same learning rate: the clock and
    // Ctrl-C are per rank, so the ranks agree on them (max) first.
    double agree[3] = {stop_requested() ? 1.0 : 0.0,
                       req.time_budget_s > 0 && seconds_since(req.start) >= req.time_budget_s ? 1.0 : 0.0,
                       schedule_position()};
    if (ranks > 1) replicas->all_reduce(std::span<double>(agree), dist::ReduceOp::max);
    if (agree[0] > 0) {
      stop = Stop::interrupted;
      break;
    }
    if (c.stop_at_step > 0 && p.step >= c.stop_at_step) {
      stop = Stop::step_limit;
      break;
    }
    if (agree[1] > 0) {
      stop = Stop::budget;
      break;
    }
    maybe_fail(rank_failure, replicas->rank(), p.step + 1);
    const auto t0 = std::chrono::steady_clock::now();
    p.schedule_position = agree[2];
    const float lr = lr_at(schedule, p.schedule_position);
    std::visit([&](auto& o) { o.set_lr(lr); }, *opt);
    io::Batch batch;
    try {
      batch = loader->next();
    } catch (const std::exception& e) {
      std::string msg = e.what();
      if (msg.rfind("TrainLoader: ", 0) == 0) msg.erase(0, 13);
      const std::string file = first_quoted(msg);
      throw ProgramError(file, without_quoted(msg, file) + " (" + kept_text() + ")");
    }
    net->zero_grad();
    replicas->begin_backward();
    if (injection && injection->kind == NanInjection::Kind::weight && injection->step == p.step + 1)
      inject_nan(slots, *injection);
    const Tensor<float, Device> x = to_device<Device>(batch.L), target = to_device<Device>(batch.ab);
    const float l = loss.forward(net->forward(x, Mode::train), target);
    if (!std::isfinite(l)) {
      progress.finish_line();
      // The weights were finite after the last step (gradients are checked before every update),
      // unless they overflowed in it: say which one, else the forward pass overflowed.
      const auto bad = first_non_finite_weight(slots);
      throw ProgramError("", "the training loss became " + std::string(std::isnan(l) ? "NaN" : "infinite") + " at " +
                                 step_name() + "; " +
                                 (bad ? "the first non-finite weight: " + report_text(*bad)
                                      : std::string("every weight is finite, so the forward pass overflowed")) +
                                 " " + kept_state(lr));
    }
    net->backward(loss.backward());
    replicas->finish_backward();  // every rank now holds the gradients averaged over the global batch
    if (injection && injection->kind == NanInjection::Kind::grad && injection->step == p.step + 1)
      inject_nan(slots, *injection);
    // Before the optimizer step: a non-finite gradient would reach every weight it updates.
    const auto guard_start = std::chrono::steady_clock::now();
    const auto bad_gradient = first_non_finite_gradient(slots);
    guard_seconds += seconds_since(guard_start);
    if (const auto& bad = bad_gradient) {
      progress.finish_line();
      // A NaN weight need not reach the loss (ReLU maps NaN to 0) but shows in the gradients.
      const auto weight = first_non_finite_weight(slots);
      throw ProgramError("", "a gradient became non-finite at " + step_name() + " with a loss of " + fmt("%.5g", l) +
                                 ": " + report_text(*bad, "the gradient of ") + ", the first layer backward reached" +
                                 (weight ? " (the weights are not finite either: " + report_text(*weight) + ")" : "") +
                                 "; stopped before the optimizer step " + kept_state(lr));
    }
    std::visit([](auto& o) { o.step(); }, *opt);
    float l_global = l;  // the loss of the global batch: the mean of the ranks' (equal batches)
    if (ranks > 1) {
      double lsum[1] = {double(l)};
      replicas->all_reduce(std::span<double>(lsum), dist::ReduceOp::mean);
      l_global = float(lsum[0]);
    }
    const double dt = seconds_since(t0);
    step_time = step_time == 0 ? dt : 0.9 * step_time + 0.1 * dt;
    steps_seconds += dt, ++steps_run;
    ++p.step, ++p.step_in_epoch;
    p.images += (long long)c.batch * ranks, p.epoch_images += (long long)c.batch * ranks;
    p.epoch_seconds += dt;
    p.epoch_loss_sum += l_global, ++p.epoch_loss_count;
    ema.add(l_global);

    double eta = double(total_steps - (long long)p.epoch * c.steps_per_epoch - p.step_in_epoch) * step_time;
    if (req.time_budget_s > 0) eta = std::min(eta, std::max(0.0, req.time_budget_s - seconds_since(req.start)));
    progress.update("epoch " + std::to_string(p.epoch + 1) + "/" + std::to_string(c.epochs) + "  step " +
                    std::to_string(p.step_in_epoch) + "/" + std::to_string(c.steps_per_epoch) + "  loss " +
                    fmt("%.5f", ema.value()) + "  " + fmt("%.1f", double(c.batch) * ranks / std::max(step_time, 1e-9)) + " img/s  lr " +
                    fmt("%.2e", lr) + "  ETA " + format_duration(eta));

    if (c.checkpoint_every > 0 && p.step % c.checkpoint_every == 0 && p.step_in_epoch < c.steps_per_epoch) save(latest);
    if (p.step_in_epoch >= c.steps_per_epoch) {
      ++p.epoch;
      p.step_in_epoch = 0;
      progress.finish_line();
      finish_epoch(false);
      if (p.epoch >= c.epochs) stop = Stop::finished;
    }
  }
  progress.finish_line();

  int code = exit_ok;
  if (stop == Stop::interrupted || stop == Stop::step_limit) {
    save(latest);
    progress.print(std::string(stop == Stop::interrupted ? "interrupted" : "stopped (--stop-at-step)") + " at epoch " +
                   std::to_string(p.epoch + 1) + ", step " + std::to_string(p.step_in_epoch) + " (global step " +
                   std::to_string(p.step) + "): saved " + latest.string() + "; continue with: kiln-train --resume " +
                   latest.string());
    if (stop == Stop::interrupted) code = exit_interrupted;
  } else if (stop == Stop::budget) {
    progress.print("time budget of " + format_duration(req.time_budget_s) + " reached at epoch " +
                   std::to_string(p.epoch) + ", step " + std::to_string(p.step_in_epoch) + ": validating and saving");
    if (p.step_in_epoch > 0 || history.empty() || history.back().step != p.step) finish_epoch(p.step_in_epoch > 0);
  }

  // Summary.
  const double total = p.seconds + seconds_since(req.start);
  std::string summary = "\nsummary: ";
  if (std::isfinite(p.best_val)) {
    summary += "best val MSE(ab) " + fmt("%.2f", p.best_val) + " at epoch " + fmt("%g", p.best_epoch) +
               " vs grey baseline " + fmt("%.2f", base.mse) + " (" + fmt("%+.0f", 100.0 * (p.best_val / base.mse - 1)) + "%)";
    if (!history.empty() && std::isfinite(history.back().val_psnr))
      summary += "; last PSNR " + fmt("%.2f", history.back().val_psnr) + " dB (grey " + fmt("%.2f", base.psnr) +
                 "), colourfulness " + fmt("%.1f", history.back().cf_pred) + " (true " + fmt("%.1f", history.back().cf_true) + ")";
  } else {
    summary += "no validation yet";
  }
  if (steps_run > 0)
    summary += "\n         gradient checks: " + fmt("%.3f", 1e3 * guard_seconds / double(steps_run)) + " ms per step, " +
               fmt("%.2f", 100 * guard_seconds / steps_seconds) + "% of the " + fmt("%.1f", 1e3 * steps_seconds / double(steps_run)) +
               " ms a step took in this run";
  // Only the files that are there (a run stopped before its first epoch has no best.safetensors,
  // loss.png or samples.png).
  std::string files;
  for (const fs::path& f : run_files) {
    std::error_code fec;
    if (fs::is_regular_file(f, fec)) files += (files.empty() ? "" : ", ") + f.filename().string();
  }
  summary += "\n         " + std::to_string(p.step) + " steps, " + std::to_string(p.images) + " crops in " +
             format_duration(total) + "\n         files in " + out.string() + "/: " + (files.empty() ? "none" : files);
  progress.print(summary);
  return code;
}

}  // namespace kiln::programs
