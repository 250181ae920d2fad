// kiln-train's training run, compiled once: data, loader, the loop, validation, checkpoints'
// metadata, pictures and messages. The network's side is a ModelTrainer (model_trainer.hpp),
// made for the model and device chosen at run time (dispatch.cpp).
#include <kiln/io/checkpoint.hpp>
#include <kiln/io/image.hpp>
#include <kiln/color/lab_tensor.hpp>
#include <kiln/color/loader.hpp>
#include <kiln/optim/schedule.hpp>
#include <kiln/color/metrics.hpp>
#include <kiln/cpu/conv_rounding.hpp>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../common/checkpoint_model.hpp"
#include "../common/cli.hpp"
#include "../common/grid.hpp"
#include "../common/infer.hpp"
#include "../common/progress.hpp"
#include "../common/signals.hpp"
#include "data.hpp"
#include "model_trainer.hpp"
#include "records.hpp"
#include "run.hpp"

namespace kiln::programs {

namespace fs = std::filesystem;

namespace {

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

struct ValResult {
  double mse = NAN, psnr = NAN, cf_pred = NAN, cf_true = NAN;
};

ValResult validate(ModelTrainer& model, const io::ValidationSet& val) {
  train::ValidationMetrics m;
  for (const io::Batch& b : val.batches()) m.add(b.L, model.predict_ab(b.L), b.ab);
  return {m.ab_mse(), m.psnr(), m.colorfulness_pred(), m.colorfulness_true()};
}

ValResult grey_baseline(const io::ValidationSet& val) {
  train::ValidationMetrics m;
  for (const io::Batch& b : val.batches()) m.add(b.L, Tensor<float, Cpu>(b.ab.shape()), b.ab);
  return {m.ab_mse(), m.psnr(), m.colorfulness_pred(), m.colorfulness_true()};
}

void write_samples(ModelTrainer& model, const std::vector<io::Image>& truths, const fs::path& png) {
  std::vector<std::vector<io::Image>> rows;
  for (const io::Image& truth : truths) {
    Colorized r = model.colorize(truth);
    rows.push_back({io::to_rgb(r.grey), std::move(r.colour), truth});
  }
  io::save_png(png, make_grid(rows, {"GREY (INPUT)", "KILN", "ORIGINAL"}));
}

Schedule make_run_schedule(const TrainConfig& c) {
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

nlohmann::json schedule_json(const TrainConfig& c) {
  return {{"kind", c.schedule},
          {"start_lr", c.lr},
          {"end_fraction", c.lr_end_fraction},
          {"epochs", c.epochs},
          {"steps_per_epoch", c.steps_per_epoch},
          {"step_gamma", c.step_gamma},
          {"step_epochs", c.step_epochs}};
}

// A save killed mid-write (SIGKILL, power cut) leaves its temporary "<file>.tmp.<pid>" behind
// (atomic_file.hpp); the file itself is intact. Removes those of processes that no longer run,
// and only temporaries of the run's own files: "notes.tmp.123" is the user's.
int remove_stale_temporaries(const fs::path& out, const std::vector<fs::path>& run_files) {
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

int train_model(ModelTrainer& model, RunRequest req) {
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
  ReplicaGroup* replicas = &model.connect(req.world);
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
  check_training_memory(c, data, req.budget, req.budget.bytes ? model.arena_bytes(c.batch, c.crop) : 0,
                        model.parameter_count());
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
  model.build(c);
  model.set_nan_injection(injection);
  // (classify: the bins and rebalancing weights come from the training images' colours)
  try {
    model.set_objective(
        c, model.classify() ? classify_head_from_data(data.train, std::size_t(model.out_channels())) : ColourHead{});
  } catch (const std::exception& e) {
    throw usage_error("--loss", e.what());
  }
  const Schedule schedule = make_run_schedule(c);
  TrainState p;
  Ema ema(0.98);

  // Resume: every tensor and counter, then the loop's position.
  if (!req.resume.empty()) {
    try {
      // Every number a checkpoint brings in is checked (records.cpp): a damaged or hand-edited
      // value must not become a negative step, a NaN schedule position or an epoch past the end.
      const io::CheckpointInfo info = model.load(req.resume);
      const TrainState saved = read_state(info);
      if (saved.step_in_epoch >= c.steps_per_epoch)
        throw ProgramError(req.resume, "cannot resume: it was saved at step " + std::to_string(saved.step_in_epoch) +
                                           " of an epoch, but an epoch has " + std::to_string(c.steps_per_epoch) +
                                           " steps (--steps-per-epoch): resume with its own --steps-per-epoch");
      p = saved;
      ema.restore(p.ema_value, p.ema_weight);
      model.set_optimizer_steps(p.optimizer_steps);
      loader->restore(io::LoaderState::from_string(p.loader_state));
    } catch (const ProgramError&) {
      throw;
    } catch (const std::exception& e) {
      throw ProgramError(req.resume, without_quoted(e.what(), req.resume));
    }
  }

  // Every rank starts from rank 0's weights and running statistics; gradients are averaged in
  // buckets during backward; BatchNorm per rank or over the global batch (--sync-bn).
  {
    model.share_state(req.bucket_bytes);
    if (!model.synchronised_batchnorm())
      if (c.sync_bn && ranks > 1)
        throw usage_error("--sync-bn", "synchronised BatchNorm is implemented for --device cpu only so far; on " +
                                           device_description(req.device) +
                                           " use per-rank BatchNorm (leave --sync-bn out)");
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
  const std::string model_label = std::string(model.name()) + " (" + model.type_name() + ", " +
                                  std::to_string(model.parameter_count()) + " parameters)";
  progress.print("kiln-train: model " + model_label + " on " + device_description(req.device) +
                 (model.on_cpu() ? ", " + std::to_string(omp_get_max_threads()) +
                                       (omp_get_max_threads() == 1 ? " thread" : " threads")
                                 : ""));
  if (!model.on_cpu()) progress.print("  step: " + model.step_description());
  // On the cpu, --precision tf32|bf16 simulates the CUDA tensor-core numerics (kiln/cpu/conv_rounding.hpp).
  if (model.on_cpu()) {
    kiln::cpu::set_conv_rounding(kiln::cpu::parse_conv_rounding(c.precision));
    if (c.precision != "fp32")
      progress.print("  precision " + c.precision + " simulated on the cpu: the 1x1 and 3x3 convolutions round their " +
                     "operands to " + (c.precision == "bf16" ? "bfloat16" : "TF32") +
                     " as the CUDA tensor-core kernels do, then multiply in fp32 (slower than fp32, not faster)");
  }
  if (ranks > 1)
    progress.print("  data parallel: " + std::to_string(ranks) + " ranks (" + req.world->launch().launcher +
                   "), global batch " + std::to_string(ranks * c.batch) + " = " + std::to_string(ranks) + " x " +
                   std::to_string(c.batch) + " per rank, BatchNorm " +
                   (c.sync_bn ? "synchronised over the global batch" : "per rank") + ", gradients (" +
                   std::to_string(std::size_t(model.parameter_count()) * sizeof(float)) + " bytes) averaged in " +
                   std::to_string(replicas->bucket_count()) + " buckets of ~" +
                   fmt("%.3g", double(req.bucket_bytes) / 1048576.0) + " MB during backward");
  progress.print("  data: " + std::to_string(data.train.size()) + " training images; " +
                 std::to_string(data.val.size()) + " validation images (" + data.val_origin + ", " +
                 std::to_string(valset->size()) + " fixed crops of " + std::to_string(c.crop) +
                 " at the training scales)");
  progress.print("  " + std::to_string(c.epochs) + " epochs x " + std::to_string(c.steps_per_epoch) + " steps, batch " +
                 std::to_string(c.batch) + ", crop " + std::to_string(c.crop) + ", " + c.optimizer + ", lr " +
                 fmt("%g", c.lr) + (c.schedule == "constant" ? "" : " -> " + fmt("%g", c.lr * c.lr_end_fraction)) +
                 " (" + c.schedule + "), loss " + c.loss +
                 (req.time_budget_s > 0 ? ", time budget " + format_duration(req.time_budget_s) : "") + "; output in " +
                 out.string() + "/");
  progress.print("  grey baseline (ab = 0): val MSE(ab) " + fmt("%.2f", base.mse) + ", PSNR " + fmt("%.2f", base.psnr) +
                 " dB, colourfulness of the truth " + fmt("%.1f", base.cf_true));
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
    if (const auto bad = model.first_non_finite_weight()) {
      throw ProgramError(path.string(), "not saved: the model's weights are no longer finite at global step " +
                                            std::to_string(p.step) + " (" + report_text(*bad) +
                                            "): try a lower --lr; the file keeps the last good state");
    }
    if (!root) return;
    std::map<std::string, std::string> m;
    TrainState s = p;
    s.model = std::string(model.name());
    s.width = model.width();
    s.depth = model.depth();
    s.config = nlohmann::json(c).dump();
    s.schedule = schedule_json(c).dump();
    s.baseline_mse_ab = base.mse;
    s.seconds = p.seconds + seconds_since(req.start);
    s.ema_value = ema.raw_value();
    s.ema_weight = ema.raw_weight();
    s.optimizer_steps = model.optimizer_steps();
    s.loader_state = loader->state().to_string();
    write_state(s, m);
    io::add_scaling_metadata(m);
    model.head().add_metadata(m, c.loss);
    try {
      model.save(path, m);
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
      const ValResult v = validate(model, *valset);
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
      if (!sample_truths.empty()) write_samples(model, sample_truths, samples_png);
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
  double steps_seconds = 0;
  long long steps_run = 0;
  const long long total_steps = (long long)c.epochs * c.steps_per_epoch;
  // The steps queued since the last read (on the Cuda device up to --loss-every; on the CPU one):
  // what a message about one of them needs.
  struct QueuedStep {
    std::string name;
    float lr;
  };
  std::vector<QueuedStep> queued;
  auto window_start = std::chrono::steady_clock::now();
  // Reads the queued steps' losses and check: a bad step stops the run with the message of that
  // step (nothing was updated from it on); else the losses go into the averages and the line.
  auto settle = [&]() {
    if (queued.empty()) return;
    StepResults r = model.read_steps();
    if (r.losses.size() != queued.size())
      throw std::logic_error("kiln-train: " + std::to_string(r.losses.size()) + " losses read for " +
                             std::to_string(queued.size()) + " steps");
    if (r.bad_step >= 0) {
      progress.finish_line();
      const QueuedStep& at = queued[std::size_t(r.bad_step)];
      const float l = r.losses[std::size_t(r.bad_step)];
      if (r.bad_loss) {
        // The weights were finite after the last good step (gradients are checked before every
        // update), unless they overflowed in it: say which one, else the forward pass overflowed.
        const auto bad = model.first_non_finite_weight();
        throw ProgramError("", "the training loss became " + std::string(std::isnan(l) ? "NaN" : "infinite") + " at " +
                                   at.name + "; " +
                                   (bad ? "the first non-finite weight: " + report_text(*bad)
                                        : std::string("every weight is finite, so the forward pass overflowed")) +
                                   " " + kept_state(at.lr));
      }
      // A NaN weight need not reach the loss (ReLU maps NaN to 0) but shows in the gradients.
      const auto weight = model.first_non_finite_weight();
      const NonFiniteReport bad = r.gradient ? *r.gradient : NonFiniteReport{"?", 0, 0, "NaN", 1};
      throw ProgramError("", "a gradient became non-finite at " + at.name + " with a loss of " + fmt("%.5g", l) + ": " +
                                 report_text(bad, "the gradient of ") + ", the first layer backward reached" +
                                 (weight ? " (the weights are not finite either: " + report_text(*weight) + ")" : "") +
                                 "; stopped before the optimizer step " + kept_state(at.lr));
    }
    std::vector<double> losses(r.losses.begin(), r.losses.end());
    // The loss of the global batch: the mean of the ranks' (equal batches).
    if (ranks > 1) replicas->all_reduce(std::span<double>(losses), dist::ReduceOp::mean);
    for (const double l : losses) {
      p.epoch_loss_sum += l, ++p.epoch_loss_count;
      ema.add(l);
    }
    const double dt = seconds_since(window_start);
    const double per_step = dt / double(losses.size());
    for (std::size_t i = 0; i < losses.size(); ++i)
      step_time = step_time == 0 ? per_step : 0.9 * step_time + 0.1 * per_step;
    steps_seconds += dt, steps_run += (long long)losses.size();
    p.epoch_seconds += dt;
    double eta = double(total_steps - (long long)p.epoch * c.steps_per_epoch - p.step_in_epoch) * step_time;
    if (req.time_budget_s > 0) eta = std::min(eta, std::max(0.0, req.time_budget_s - seconds_since(req.start)));
    progress.update("epoch " + std::to_string(p.epoch + 1) + "/" + std::to_string(c.epochs) + "  step " +
                    std::to_string(p.step_in_epoch) + "/" + std::to_string(c.steps_per_epoch) + "  loss " +
                    fmt("%.5f", ema.value()) + "  " + fmt("%.1f", double(c.batch) * ranks / std::max(step_time, 1e-9)) +
                    " img/s  lr " + fmt("%.2e", queued.back().lr) + "  ETA " + format_duration(eta));
    queued.clear();
  };
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
    if (queued.empty()) window_start = std::chrono::steady_clock::now();
    p.schedule_position = agree[2];
    const float lr = lr_at(schedule, p.schedule_position);
    model.set_lr(lr);
    io::Batch batch;
    try {
      batch = loader->next();
    } catch (const std::exception& e) {
      std::string msg = e.what();
      if (msg.rfind("TrainLoader: ", 0) == 0) msg.erase(0, 13);
      const std::string file = first_quoted(msg);
      throw ProgramError(file, without_quoted(msg, file) + " (" + kept_text() + ")");
    }
    queued.push_back({step_name(), lr});
    model.train_step(batch, p.step + 1);
    ++p.step, ++p.step_in_epoch;
    p.images += (long long)c.batch * ranks, p.epoch_images += (long long)c.batch * ranks;

    const bool epoch_end = p.step_in_epoch >= c.steps_per_epoch;
    const bool checkpoint = c.checkpoint_every > 0 && p.step % c.checkpoint_every == 0 && !epoch_end;
    if ((int)queued.size() >= model.steps_per_read() || epoch_end || checkpoint) settle();
    if (checkpoint) save(latest);
    if (epoch_end) {
      ++p.epoch;
      p.step_in_epoch = 0;
      progress.finish_line();
      finish_epoch(false);
      if (p.epoch >= c.epochs) stop = Stop::finished;
    }
  }
  settle();  // the steps queued before a stop
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
               " vs grey baseline " + fmt("%.2f", base.mse) + " (" + fmt("%+.0f", 100.0 * (p.best_val / base.mse - 1)) +
               "%)";
    if (!history.empty() && std::isfinite(history.back().val_psnr))
      summary += "; last PSNR " + fmt("%.2f", history.back().val_psnr) + " dB (grey " + fmt("%.2f", base.psnr) +
                 "), colourfulness " + fmt("%.1f", history.back().cf_pred) + " (true " +
                 fmt("%.1f", history.back().cf_true) + ")";
  } else {
    summary += "no validation yet";
  }
  if (steps_run > 0 && model.steps_per_read() == 1)
    summary += "\n         gradient checks: " + fmt("%.3f", 1e3 * model.guard_seconds() / double(steps_run)) +
               " ms per step, " + fmt("%.2f", 100 * model.guard_seconds() / steps_seconds) + "% of the " +
               fmt("%.1f", 1e3 * steps_seconds / double(steps_run)) + " ms a step took in this run";
  else if (steps_run > 0)
    summary += "\n         step: " + model.step_description() + "; " +
               fmt("%.1f", 1e3 * steps_seconds / double(steps_run)) + " ms a step took in this run";
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

}  // namespace

int run_training(RunRequest req) {
  std::unique_ptr<ModelTrainer> model = make_model_trainer(req.config.model, req.device, req.config.loss == "classify");
  if (!model) throw usage_error("--device cuda", "this kiln-train was built without the Cuda device");
  return train_model(*model, std::move(req));
}

}  // namespace kiln::programs
