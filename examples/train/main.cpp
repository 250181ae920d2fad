// kiln-train: trains the colorization U-Net on folders of colour photos.
// See docs/programs.md, or run kiln-train --help.
// main() reads the command line (and a resumed checkpoint's settings) and hands the run to
// run_training (run.hpp), which picks the (model, device) pair's translation unit.
#include <kiln/io/io_error.hpp>
#include <kiln/io/safetensors.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "../common/checkpoint_model.hpp"
#include "../common/cli.hpp"
#include "../common/command_line.hpp"
#include "../common/devices.hpp"
#include "../common/memory_budget.hpp"
#include "../common/paths.hpp"
#include "config.hpp"
#include "numeric_guard.hpp"
#include "records.hpp"
#include "run.hpp"
#include "world.hpp"

namespace kp = kiln::programs;

namespace {

// Options whose value an explicit command line takes over from a resumed checkpoint's config
// (option name without "--" -> config key). Data and validation options travel as groups.
std::string key_of(const std::string& option) {
  std::string k = option.substr(option.find_first_not_of('-'));
  for (char& ch : k)
    if (ch == '-') ch = '_';
  return k;
}

int run(int argc, char** argv, kp::World& world) {
  kp::TrainConfig c;
  kp::CommandLine app{
      "kiln-train: trains kiln's colorization U-Net (input: the L of CIE Lab; output: a and b) on folders of colour "
      "photos. Writes OUT/metrics.jsonl, OUT/loss.png, OUT/samples.png, OUT/latest.safetensors and "
      "OUT/best.safetensors. Ctrl-C saves OUT/latest.safetensors and stops (exit 130); --resume continues.",
      "kiln-train"};
  // A repeated option takes its last value (handy for scripts that append to a base command).
  app.always_capture_default().take_last_by_default().column_width(34);

  auto* data = app.add_option("--data", c.data, "Training image folders (searched recursively)")
                   ->type_name("DIR...")
                   ->take_all();
  app.add_option("--data-repeat", c.data_repeat,
                 "How many times each --data folder's images enter an epoch, one number per folder (default 1 "
                 "each): weights a small folder against a large one")
      ->type_name("N...")
      ->take_all()
      ->check(kp::integer_in(1, 1000));
  auto* preset = app.add_option("--preset", c.preset,
                                "Bundled photos: data/photos/<NAME>/{train,val} as installed by "
                                "scripts/install-data.sh (KILN_DATA_DIR overrides data/photos)")
                     ->check(kp::one_of({"default", "street"}));
  auto* val = app.add_option("--val", c.val, "Validation image folders")->type_name("DIR...")->take_all();
  auto* split = app.add_option("--val-split", c.val_split,
                               "Hold out this fraction of the training images (by image) for validation; used when "
                               "neither --val nor a preset's val folder is given (0 means 0.1 then)")
                    ->check(kp::number_in(0.0, 0.9));
  app.add_option("--crop", c.crop, "Side of the square training crops (pixels, multiple of 16)")
      ->check(kp::integer_in(16, 4096));
  app.add_option("--batch", c.batch, "Crops per step")->check(kp::integer_in(1, 4096));
  app.add_option("--epochs", c.epochs, "Epochs (the learning-rate schedule spans them)")
      ->check(kp::integer_in(1, 1000000));
  app.add_option("--steps-per-epoch", c.steps_per_epoch, "Steps per epoch (an epoch = validation + checkpoint)")
      ->check(kp::integer_in(1, 100000000));
  app.add_option("--time-budget", c.time_budget,
                 "Stop cleanly after this wall time (e.g. 90s, 10m, 1h30m), still validating, saving and drawing; "
                 "the learning-rate schedule then also advances with the clock so it ends with the budget")
      ->type_name("DURATION");
  app.add_option("--lr", c.lr, "Initial learning rate")->check(kp::positive_number("0.001"));
  app.add_option("--lr-end-fraction", c.lr_end_fraction,
                 "Final learning rate as a fraction of --lr (exp, cosine; the reference run: 1/20)")
      ->check(kp::number_in(0.0, 1.0));
  app.add_option("--schedule", c.schedule,
                 "Learning-rate schedule, updated every step on the fractional epoch: exp (lr -> lr*end-fraction "
                 "exponentially over the epochs, the reference), step (x --step-gamma every --step-epochs), "
                 "cosine, constant")
      ->check(kp::one_of({"exp", "step", "cosine", "constant"}));
  app.add_option("--step-gamma", c.step_gamma, "Factor of the step schedule")->check(kp::positive_number());
  app.add_option("--step-epochs", c.step_epochs, "Epochs between steps of the step schedule")
      ->check(kp::integer_in(1, 1000000));
  app.add_option("--optimizer", c.optimizer, "adam, adamw or sgd (momentum --momentum)")
      ->check(kp::one_of({"adam", "adamw", "sgd"}));
  app.add_option("--weight-decay", c.weight_decay,
                 "Weight decay; negative: the optimizer's default (Adam 0, AdamW 0.01)")
      ->check(kp::finite_number());
  app.add_option("--momentum", c.momentum, "SGD momentum")->check(kp::number_in(0.0, 1.0));
  app.add_option("--loss", c.loss,
                 "Training loss: mse, l1 or huber on ab/110, or classify (ab in bins of 10 found in the training "
                 "data, class-rebalanced softmax cross-entropy, annealed-mean decoding: Zhang et al. 2016)")
      ->check(kp::one_of({"mse", "l1", "huber", "classify"}));
  app.add_option("--huber-delta", c.huber_delta, "Delta of the Huber loss (in ab/110 units)")
      ->check(kp::positive_number());
  auto* model =
      app.add_option(
             "--model", c.model,
             "Model size: small (UNet width 16, depth 4) or base (width 32, depth 4, the reference's 7.2M parameters)")
          ->check(kp::one_of({"small", "base"}));
  app.add_option("--device", c.device,
                 "auto (cuda when a GPU is present, else cpu), cpu, or cuda (without a GPU: kiln's CPU emulator of "
                 "CUDA, very slow: for testing only)")
      ->check(kp::one_of({"auto", "cpu", "cuda"}));
  app.add_option(
         "--precision", c.precision,
         "Math of the convolutions: fp32 (strict, the default), tf32 or bf16 (tensor cores on cuda; bf16 rounds "
         "the 1x1 and 3x3 convolutions' operands to bfloat16, weights, BN and losses stay fp32; saved in the "
         "checkpoint). On cpu, tf32 and bf16 simulate those numerics (the same rounded operands, fp32 GEMMs): "
         "slower than fp32, for measuring their accuracy")
      ->check(kp::one_of({"fp32", "tf32", "bf16"}));
  app.add_option("--cuda-graph", c.cuda_graph,
                 "on (default): on cuda, the training step is captured once as a CUDA graph and replayed; off: "
                 "queued launch by launch. Same results either way")
      ->check(kp::one_of({"on", "off"}));
  app.add_option("--loss-every", c.loss_every,
                 "On cuda, the losses and the device's NaN/Inf check are read every N steps (and before every save), "
                 "without a host round trip in between (1-256, default 16)")
      ->check(kp::integer_in(1, 256));
  app.add_option("--threads", c.threads, "CPU threads (0: OpenMP's default, all cores)")
      ->check(kp::integer_in(0, 4096));
  app.add_option("--seed", c.seed, "Seed for initial weights, validation split, crops and their order")
      ->check(kp::integer_in(0, 1.8e19));
  app.add_option("--out", c.out, "Output folder")->type_name("DIR");
  std::string resume;
  auto* resume_opt = app.add_option("--resume", resume,
                                    "Continue from a checkpoint (default OUT/latest.safetensors): model, optimizer "
                                    "moments and step, schedule position, data order. Its settings are used except "
                                    "those given on this command line")
                         ->expected(0, 1)
                         ->take_last()
                         ->type_name("[CHECKPOINT]");
  app.add_option("--val-every", c.val_every, "Validate every N epochs (and at the end)")
      ->check(kp::integer_in(1, 1000000));
  app.add_option("--val-crops", c.val_crops, "Fixed validation crops per image")->check(kp::integer_in(1, 1000));
  app.add_option("--samples", c.samples, "Validation images in OUT/samples.png (rows of grey | prediction | truth)")
      ->check(kp::integer_in(0, 100));
  app.add_option("--sample-size", c.sample_size, "Width of a picture in samples.png (pixels)")
      ->check(kp::integer_in(16, 2048));
  app.add_option("--scales", c.scales, "Crop scales (a crop covers crop/scale pixels of the image, resized)")
      ->check(kp::positive_number())
      ->type_name("S...")
      ->take_all();
  app.add_option("--flip", c.flip, "Random left-right flips");
  app.add_option("--loader-max-side", c.loader_max_side,
                 "Training images are cached downscaled to this long side before cropping")
      ->check(kp::integer_in(16, 1 << 20));
  app.add_option("--workers", c.workers, "Background threads preparing batches (0: in the training thread)")
      ->check(kp::integer_in(0, 64));
  app.add_option("--checkpoint-every", c.checkpoint_every,
                 "Also save OUT/latest.safetensors every N steps, not only at the end of each epoch (0: only there)")
      ->check(kp::integer_in(0, 100000000));
  app.add_option("--stop-at-step", c.stop_at_step,
                 "Stop when the global step count reaches N, saving OUT/latest.safetensors as on Ctrl-C (for tests)")
      ->check(kp::integer_in(0, 9e15));
  bool overwrite = false;
  app.add_flag("--overwrite", overwrite,
               "Let a new run replace the files of another run in --out (latest/best.safetensors, metrics.jsonl, "
               "loss.png, samples.png); without it such a folder is refused");
  std::string max_memory;
  app.add_option("--max-memory", max_memory,
                 "Memory budget, checked before images are decoded and the network's memory is planned (e.g. 8G, "
                 "512M; none: no check; default 3/4 of the machine's memory)")
      ->type_name("SIZE");
  app.add_flag("--sync-bn", c.sync_bn,
               "Under mpirun: BatchNorm uses the statistics of the global batch (all ranks), as one process with "
               "the global batch would; default: each rank's own (saved in the checkpoint)");
  double bucket_mb = 4;
  app.add_option("--bucket-mb", bucket_mb,
                 "Under mpirun: gradients are averaged in buckets of about this many MB, "
                 "each started as soon as backward completes it")
      ->check(kp::positive_number());
  // Hidden (empty group): provokes the numerical guards in tests (examples/train/numeric_guard.hpp).
  app.add_option("--debug-inject-nan", c.debug_inject_nan, "KIND:NAME@STEP")->group("");
  // Hidden: a rank fails on purpose (tests of data parallelism, examples/train/world.cpp).
  app.add_option("--debug-fail-rank", c.debug_fail_rank, "RANK@STEP[:error]")->group("");
  preset->excludes(data);
  data->excludes(preset);
  val->excludes(split);

  if (const std::optional<int> stop = app.parse(argc, argv)) return *stop;

  kp::RunRequest req;
  req.overwrite = overwrite;
  try {
    req.budget = kp::make_memory_budget(max_memory);
  } catch (const std::exception& e) {
    throw kp::usage_error("--max-memory", e.what());
  }
  // Resume: the checkpoint's settings, with the options given here on top.
  if (resume_opt->count() > 0) {
    const std::string out = app.count("--out") ? c.out : kp::TrainConfig{}.out;
    req.resume = resume.empty() ? (std::filesystem::path(out) / "latest.safetensors").string() : resume;
    if (const std::string why = kp::missing_reason(req.resume); !why.empty())
      throw kp::ProgramError(req.resume, "cannot resume: the checkpoint " + why);
    kp::CheckpointModel ck;
    nlohmann::json saved;
    std::map<std::string, std::string> metadata;
    try {
      ck = kp::checkpoint_model(req.resume);
      const kiln::io::SafetensorsFile file = kiln::io::load_safetensors(req.resume);
      const auto it = file.metadata.find("kiln.train.config");
      if (it == file.metadata.end())
        throw kp::ProgramError(req.resume,
                               "cannot resume: not a kiln-train checkpoint (no kiln.train.config metadata); "
                               "kiln-colorize can still use it");
      saved = nlohmann::json::parse(it->second);
      metadata = file.metadata;
    } catch (const kp::ProgramError&) {
      throw;
    } catch (const std::exception& e) {
      throw kp::file_error(req.resume, e);
    }
    if (model->count() > 0 && c.model != ck.name)
      throw kp::ProgramError(req.resume, "is a checkpoint of the '" + ck.name + "' model, but --model " + c.model +
                                             " was asked: resume it with --model " + ck.name +
                                             " (or leave --model out), or start a new run without --resume");
    nlohmann::json given = c;
    nlohmann::json merged = saved;
    std::set<std::string> explicit_keys;
    for (const std::string& name : app.given_long_names()) explicit_keys.insert(key_of("--" + name));
    if (explicit_keys.count("data") || explicit_keys.count("preset")) explicit_keys.insert({"data", "preset"});
    if (explicit_keys.count("val") || explicit_keys.count("val_split")) explicit_keys.insert({"val", "val_split"});
    for (const std::string& k : explicit_keys)
      if (given.contains(k)) merged[k] = given[k];
    // Per-invocation settings are never inherited: the machine and the time of this run.
    for (const char* k : {"time_budget", "threads", "device", "workers"}) merged[k] = given[k];
    merged["model"] = ck.name;
    const long long stop_at_step = c.stop_at_step;
    const std::string inject = c.debug_inject_nan;
    const std::string fail_rank = c.debug_fail_rank;
    const std::string cuda_graph = c.cuda_graph;
    const int loss_every = c.loss_every;
    try {
      c = merged.get<kp::TrainConfig>();
    } catch (const std::exception& e) {
      throw kp::ProgramError(req.resume,
                             std::string("cannot resume: its saved configuration is damaged (") + e.what() + ")");
    }
    c.stop_at_step = stop_at_step;
    c.debug_inject_nan = inject;
    c.debug_fail_rank = fail_rank;
    c.cuda_graph = cuda_graph;
    c.loss_every = loss_every;
    // Values the checkpoint brings in get the command line's checks.
    if (const std::string problem = kp::config_problem(c); !problem.empty())
      throw kp::ProgramError(
          req.resume,
          "cannot resume: a setting saved in it is not one kiln-train accepts (the file was damaged or edited): " +
              problem);
    // A finished run has nothing left to train: say so, instead of a summary that compares the
    // old run's best score with this data's baseline.
    // (A damaged state is not read here: the run says what is wrong with it.)
    if (const std::optional<kp::TrainState> state = kp::peek_state(metadata)) {
      const long long done = state->epoch, in_epoch = state->step_in_epoch;
      if (done >= c.epochs) {
        std::string steps = " (global step " + std::to_string(state->step) + ")";
        if (in_epoch > 0) steps += " and " + std::to_string(in_epoch) + " steps of the next";
        std::printf(
            "kiln-train: %s: the run is already finished: it trained %lld of %d epochs%s; nothing to train. "
            "To train it longer, resume with --epochs N (more than %lld)\n",
            req.resume.c_str(), done, c.epochs, steps.c_str(), done);
        return kp::exit_ok;
      }
    }
  } else if (data->count() == 0 && preset->count() == 0) {
    kp::print_error("kiln-train", "no training data: give --data DIR... or --preset default|street (or --resume)");
    std::fprintf(stderr, "Run kiln-train --help for the options.\n");
    return kp::exit_usage;
  }
  if (resume_opt->count() == 0)
    if (const std::string problem = kp::config_problem(c); !problem.empty()) throw kp::usage_error("", problem);
  if (c.crop % 16 != 0)
    throw kp::usage_error("--crop", std::to_string(c.crop) + " is not a multiple of 16 (the U-Net halves it 4 times)");
  if (c.batch * (c.crop / 16) * (c.crop / 16) < 2)
    throw kp::usage_error("--batch", "batch " + std::to_string(c.batch) + " of " + std::to_string(c.crop) +
                                         "-pixel crops leaves one value per channel at the U-Net's bottleneck, too few "
                                         "for batch normalisation: use --batch 2 or more, or a larger --crop");
  if (!c.time_budget.empty()) {
    try {
      req.time_budget_s = kp::parse_duration(c.time_budget);
    } catch (const std::exception& e) {
      throw kp::usage_error("--time-budget", e.what());
    }
  }
  try {
    (void)kp::parse_nan_injection(c.debug_inject_nan);
  } catch (const std::exception& e) {
    throw kp::usage_error("--debug-inject-nan", e.what());
  }
  try {
    (void)kp::parse_rank_failure(c.debug_fail_rank);
  } catch (const std::exception& e) {
    throw kp::usage_error("--debug-fail-rank", e.what());
  }
  req.world = &world;
  req.bucket_bytes = std::size_t(bucket_mb * 1048576.0);
  (void)split;
  req.device = kp::resolve_device(c.device, "kiln-train");
  req.config = c;
  return kp::run_training(std::move(req));
}

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun: which rank this is, and MPI started; a rank that fails ends them all, with a
  // message that names it. Only rank 0 prints progress (the others' stdout goes nowhere).
  std::optional<kp::World> world;
  const auto fail = [&](const std::string& message, int code) {
    std::fflush(stdout);
    kp::print_error("kiln-train", (world ? world->prefix() : std::string()) + message);
    if (world && world->size() > 1) world->fail(code);
    return code;
  };
  try {
    world.emplace(&argc, &argv);
  } catch (const std::exception& e) {
    return fail(kp::message_of(e), kp::exit_error);
  }
  if (!world->root()) (void)std::freopen("/dev/null", "w", stdout);
  try {
    return run(argc, argv, *world);
  } catch (const kp::AlreadyReported& r) {
    if (world->size() > 1 && r.exit_code != kp::exit_ok) return fail("stopped (the reason is above)", r.exit_code);
    return r.exit_code;
  } catch (const kp::ProgramError& e) {
    return fail(e.what(), e.exit_code());
  } catch (const kiln::io::IoError& e) {
    const std::string file = kp::first_quoted(e.what());
    return fail(file.empty() ? e.what() : file + ": " + kp::without_quoted(e.what(), file), kp::exit_error);
  } catch (const std::exception& e) {
    return fail(kp::message_of(e), kp::exit_error);
  }
}
