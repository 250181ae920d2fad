// kiln-colorize: colorizes greyscale (or colour, turned grey first) photos with a checkpoint
// written by kiln-train. See docs/programs.md, or run kiln-colorize --help.
// main.cpp is compiled once; the network of the checkpoint's (model, device) pair is behind
// ModelColorizer (model_colorizer.hpp), instantiated in a translation unit of its own.
#include <kiln/io/checkpoint.hpp>
#include <kiln/io/dataset.hpp>
#include <kiln/io/image.hpp>
#include <kiln/color/lab_tensor.hpp>
#include <kiln/io/read_file.hpp>
#include <kiln/color/metrics.hpp>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "../common/checkpoint_model.hpp"
#include "../common/cli.hpp"
#include "../common/colour_head.hpp"
#include "../common/command_line.hpp"
#include "../common/devices.hpp"
#include "../common/image_complete.hpp"
#include "../common/infer.hpp"
#include "../common/memory_budget.hpp"
#include "../common/paths.hpp"
#include "model_colorizer.hpp"

namespace kp = kiln::programs;
namespace fs = std::filesystem;
namespace io = kiln::io;

namespace {

constexpr const char* kProgram = "kiln-colorize";

struct Options {
  std::string checkpoint;
  std::string out = "out/colorized";
  std::vector<std::string> inputs;
  int max_side = 1024;
  int size = 0;
  double scale = 0;
  bool compare = false;
  std::string device = "auto";
  int threads = 0;
  bool overwrite = false;
  std::string max_memory;  // "" = the default budget
  float temperature = 0;   // > 0: overrides a classification checkpoint's annealed-mean temperature
  std::string export_to;   // --export FILE: write the model alone (no optimizer state) and stop
  std::string export_dtype = "f16";
};

// The checkpoint's model tensors (parameters and buffers as F16, BF16 or F32; counters as I64)
// and the metadata a colorizer needs (model, scaling, colour head, training summary); no optimizer
// state, no resume position. kiln-colorize and PyTorch load it like any checkpoint.
void export_model(kp::ModelColorizer& model, const std::map<std::string, std::string>& metadata, const Options& o) {
  const io::DType storage = o.export_dtype == "f16"    ? io::DType::F16
                            : o.export_dtype == "bf16" ? io::DType::BF16
                                                       : io::DType::F32;
  const std::vector<io::TensorRecord> records = model.export_records(storage);
  std::map<std::string, std::string> m;
  for (const auto& [key, value] : metadata) {
    const bool keep = key.rfind("kiln.colour.", 0) == 0 || key == "kiln.model" || key == "kiln.format_version" ||
                      key == "kiln.input_scaling" || key == "kiln.output_scaling" || key == "kiln.train.config" ||
                      key == "kiln.train.step" || key == "kiln.train.epoch" || key == "kiln.train.step_in_epoch" ||
                      key == "kiln.train.seconds" || key == "kiln.train.best_val_mse" || key == "kiln.train.model";
    if (keep) m[key] = value;
  }
  m["kiln.export.dtype"] = std::string(io::dtype_name(storage));
  io::save_safetensors(o.export_to, records, m);
  std::printf("exported %zu tensors (%s) to %s\n", records.size(), std::string(io::dtype_name(storage)).c_str(),
              o.export_to.c_str());
}

// The ready-trained colorizer used when no --checkpoint is given: next to the installed program
// (PREFIX/bin/kiln-colorize -> PREFIX/share/kiln/models/), else in the source tree's models/.
inline constexpr const char* kReadyModel = "kiln-colorizer.safetensors";
std::vector<fs::path> ready_model_places() {
  std::vector<fs::path> places;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) places.push_back(exe.parent_path().parent_path() / "share" / "kiln" / "models" / kReadyModel);
#ifdef KILN_SOURCE_DIR
  places.push_back(fs::path(KILN_SOURCE_DIR) / "models" / kReadyModel);
#endif
  return places;
}
std::string find_ready_model() {
  std::string looked;
  for (const fs::path& p : ready_model_places()) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
    looked += (looked.empty() ? "" : ", ") + p.string();
  }
  throw kp::ProgramError("", "no --checkpoint given and the ready-trained colorizer is not installed (looked for " +
                                 looked +
                                 "): give --checkpoint FILE from kiln-train, or reinstall kiln with its models/");
}

struct Job {
  fs::path input;
  std::string name;  // output stem
};

// Expands folders (recursively, sorted) and gives every image a unique output name: no two
// outputs share a file name, <name>_compare.png included (an input called x_compare.png next
// to x.png would otherwise get the same output as x.png's comparison).
std::vector<Job> expand_inputs(const std::vector<std::string>& inputs, bool compare, bool& failed) {
  std::vector<Job> jobs;
  std::set<std::string> used;  // output file names
  auto add = [&](const fs::path& file) {
    std::string stem = file.stem().string();
    if (stem.empty()) stem = "image";
    std::string name = stem;
    auto taken = [&](const std::string& n) {
      return used.count(n + ".png") || (compare && used.count(n + "_compare.png"));
    };
    for (int k = 2; taken(name); ++k) name = stem + "_" + std::to_string(k);
    used.insert(name + ".png");
    if (compare) used.insert(name + "_compare.png");
    jobs.push_back({file, name});
  };
  for (const std::string& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      try {
        const io::ImageFolderDataset d{fs::path(in)};
        for (const std::string& s : d.skipped()) kp::print_error(kProgram, kp::without_quoted(s, ""));
        if (!d.skipped().empty()) failed = true;
        for (const fs::path& f : d.files()) add(f);
      } catch (const std::exception& e) {
        const std::string what = e.what();
        // The io message ends "... found under '<folder>'": said with the folder first instead.
        if (what.rfind("no images", 0) == 0)
          kp::print_error(kProgram,
                          in + ": the folder holds no images (png, jpg, jpeg, bmp or tga; searched recursively)");
        else
          kp::print_error(kProgram, kp::file_error(in, e).what());
        failed = true;
      }
    } else if (const std::string why = kp::missing_reason(in); !why.empty()) {
      kp::print_error(kProgram, in + ": " + why);
      failed = true;
    } else {
      add(in);
    }
  }
  return jobs;
}

// ", trained 612 steps (6.12 epochs of 100 steps)" from kiln-train's metadata: a checkpoint saved
// mid-epoch (time budget, Ctrl-C) has completed fewer whole epochs than it has trained.
// Checkpoints without a step count say only their epochs; others say nothing.
std::string training_summary(const std::map<std::string, std::string>& m) {
  auto number = [&](const char* key) -> std::optional<long long> {
    const auto it = m.find(key);
    if (it == m.end()) return std::nullopt;
    try {
      std::size_t used = 0;
      const long long v = std::stoll(it->second, &used);
      if (used == it->second.size() && v >= 0) return v;
    } catch (const std::exception&) {
    }
    return std::nullopt;
  };
  const auto epoch = number("kiln.train.epoch"), in_epoch = number("kiln.train.step_in_epoch"),
             step = number("kiln.train.step");
  if (!step) return epoch ? ", trained " + std::to_string(*epoch) + " epochs" : "";
  std::string s = ", trained " + std::to_string(*step) + (*step == 1 ? " step" : " steps");
  long long per_epoch = 0;
  if (const auto it = m.find("kiln.train.config"); it != m.end()) {
    const nlohmann::json config = nlohmann::json::parse(it->second, nullptr, false);
    if (config.is_object() && config.contains("steps_per_epoch") && config["steps_per_epoch"].is_number_integer())
      per_epoch = config["steps_per_epoch"].get<long long>();
  }
  if (epoch && in_epoch && per_epoch > 0) {
    char buf[96];
    const bool one = *epoch == 1 && *in_epoch == 0;
    std::snprintf(buf, sizeof buf, " (%.*f %s of %lld steps)", *in_epoch ? 2 : 0,
                  double(*epoch) + double(*in_epoch) / double(per_epoch), one ? "epoch" : "epochs", per_epoch);
    s += buf;
  } else if (epoch && in_epoch) {
    s += " (epoch " + std::to_string(*epoch + (*in_epoch > 0 ? 1 : 0)) + ", step " + std::to_string(*in_epoch) + ")";
  }
  return s;
}

// Before anything is written: no output may replace an input (not even with --overwrite), and
// none may replace an existing file without --overwrite. Refuses the whole run, so nothing is
// half done.
void check_outputs(const Options& o, const std::vector<Job>& jobs) {
  std::vector<fs::path> inputs;
  for (const Job& j : jobs) inputs.push_back(j.input);
  std::vector<fs::path> existing;
  for (const Job& j : jobs) {
    std::vector<fs::path> targets{fs::path(o.out) / (j.name + ".png")};
    if (o.compare) targets.push_back(fs::path(o.out) / (j.name + "_compare.png"));
    for (const fs::path& t : targets) {
      for (const fs::path& in : inputs)
        if (kp::is_same_file(t, in) || kp::resolved(t) == kp::resolved(in))
          throw kp::ProgramError(t.string(), "is one of the input images, and the output for " + j.input.string() +
                                                 " would replace it: choose another --out folder");
      std::error_code ec;
      if (fs::exists(fs::symlink_status(t, ec))) existing.push_back(t);
    }
  }
  if (!existing.empty() && !o.overwrite) {
    const std::string more =
        existing.size() > 1 ? " (and " + std::to_string(existing.size() - 1) + " more outputs)" : "";
    throw kp::ProgramError(existing.front().string(), "already exists" + more +
                                                          ": give --overwrite to replace it, or choose another --out "
                                                          "folder; nothing was written");
  }
}

// The memory one image needs, checked against the budget before it is decoded: the decoded
// file and the full-resolution planes (grey, L, ab, colour; with --compare the truth, the
// baseline and the side-by-side picture), and the network's arena at the inference size.
void check_image_memory(kp::ModelColorizer& model, const kp::MemoryBudget& budget, const fs::path& file,
                        const io::ImageHeader& header, std::size_t file_bytes, const kp::InferSize& how, bool compare) {
  if (budget.bytes == 0) return;
  const std::uint64_t pixels = std::uint64_t(header.width) * std::uint64_t(header.height);
  // Per full-resolution pixel: stb's 8/16-bit decode and its floats (2 + 4 bytes a channel),
  // grey 4, L 4, ab 8, colour 12, the PNG written 3; --compare: truth 12, L 4, ab 8, zero 8,
  // baseline colour 12, three panels side by side 36, their PNG 9.
  const std::uint64_t per_pixel = std::uint64_t(6 * std::max(header.channels, 1)) + 31 + (compare ? 89 : 0);
  auto infer_bytes = [&](const kp::InferSize& h, int& iw, int& ih) {
    kp::inference_size(header.width, header.height, h, iw, ih);
    const int m = model.size_multiple();
    const std::int64_t hp = (ih + m - 1) / m * m, wp = (iw + m - 1) / m * m;
    // The network runs tile by tile on its eval plan (kiln::infer_image): the arena of one tile,
    // plus the copies at the inference size (resized grey, L, padded L, ab twice): 28 bytes a pixel.
    const std::int64_t tile = (std::int64_t{h.tile} + m - 1) / m * m;
    const std::int64_t th = h.tile > 0 ? std::min(hp, tile) : hp, tw = h.tile > 0 ? std::min(wp, tile) : wp;
    return model.arena_bytes(th, tw) + std::uint64_t(hp * wp) * 28;
  };
  int iw = 0, ih = 0;
  std::vector<kp::MemoryPart> need{
      {"", infer_bytes(how, iw, ih)},
      {"the " + std::to_string(header.width) + "x" + std::to_string(header.height) + " image at full resolution",
       pixels * per_pixel + file_bytes},
      kp::program_allowance()};
  need[0].what = "the network at " + std::to_string(iw) + "x" + std::to_string(ih);
  if (kp::total_bytes(need) <= budget.bytes) return;
  // Advice: the largest --max-side (halving) that fits, if any.
  std::string advice;
  const int long_side = std::max(iw, ih);
  for (int side = long_side / 2; side >= 16; side /= 2) {
    kp::InferSize smaller;
    smaller.max_side = side;
    int sw = 0, sh = 0;
    if (infer_bytes(smaller, sw, sh) + need[1].bytes + need[2].bytes <= budget.bytes) {
      advice = "infer on a smaller copy with --max-side " + std::to_string(side) + " (or less)";
      break;
    }
  }
  // Each thread adds a workspace to every convolution: what one thread would need.
  const int threads = omp_get_max_threads();
  std::string with_one;
  if (threads > 1) {
    omp_set_num_threads(1);
    int w1 = 0, h1 = 0;
    const std::uint64_t one = infer_bytes(how, w1, h1) + need[1].bytes + need[2].bytes;
    omp_set_num_threads(threads);
    (void)infer_bytes(how, w1, h1);  // re-plan the dry run's layers for the real thread count
    with_one = "fewer --threads (now " + std::to_string(threads) + "; with --threads 1 it needs about " +
               kp::format_bytes(one) + ")";
  }
  if (advice.empty()) advice = "no --max-side brings it within the budget";
  if (!with_one.empty()) advice += ", use " + with_one;
  advice += ", or allow more with --max-memory";
  kp::check_memory(budget, file.string(), "colorizing it", need, advice);
}

int colorize_all(kp::ModelColorizer& model, const Options& o, kp::DeviceKind device) {
  io::CheckpointInfo info;
  try {
    info = model.load(o.checkpoint);
  } catch (const std::exception& e) {
    throw kp::file_error(o.checkpoint, e);
  }
  const kp::ColourHead head = kp::ColourHead::from_metadata(info.metadata, o.checkpoint, model.out_channels());
  if (model.out_channels() != 2) {
    try {
      model.set_bins(head.bins.scaled_centres(kp::kAbScale), o.temperature > 0 ? o.temperature : head.temperature);
    } catch (const std::exception& e) {
      throw kp::file_error(o.checkpoint, e);
    }
  }
  if (!o.export_to.empty()) {
    if (!model.on_cpu()) throw kp::usage_error("--export", "use --device cpu");
    export_model(model, info.metadata, o);
    return kp::exit_ok;
  }
  const std::string trained = training_summary(info.metadata);
  std::string kind;
  if (head.classify) {
    char buf[96];
    std::snprintf(buf, sizeof buf, ", %zu colour classes, annealed mean T %.2f", head.bins.size(),
                  double(o.temperature > 0 ? o.temperature : head.temperature));
    kind = buf;
  }
  std::printf("kiln-colorize: %s model (%s%s%s) from %s on %s\n", std::string(model.name()).c_str(),
              model.type_name().c_str(), kind.c_str(), trained.c_str(), o.checkpoint.c_str(),
              kp::device_description(device).c_str());
  std::fflush(stdout);

  bool failed = false;
  const std::vector<Job> jobs = expand_inputs(o.inputs, o.compare, failed);
  check_outputs(o, jobs);
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) throw kp::ProgramError(o.out, "cannot create the output folder (" + ec.message() + ")");
  const kp::MemoryBudget budget = kp::make_memory_budget(o.max_memory);

  kp::InferSize how;
  how.max_side = o.max_side;
  how.size = o.size;
  how.scale = o.scale;
  // A classifier's tile holds kColourClasses logit planes: smaller tiles keep the plan ~1 GB.
  if (head.classify) how.tile = 512;
  double sum_mse = 0, sum_psnr = 0, sum_base_mse = 0, sum_base_psnr = 0, sum_cf = 0, sum_cf_true = 0;
  int compared = 0, written = 0;
  for (const Job& job : jobs) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      const std::vector<std::byte> bytes = io::read_file(job.input, "image", std::uint64_t(INT_MAX));
      check_image_memory(model, budget, job.input, io::read_image_header(bytes, job.input), bytes.size(), how,
                         o.compare);
      if (const std::string problem = kp::incomplete_image_problem(bytes); !problem.empty())
        kp::print_warning(kProgram, job.input.string() + ": " + problem);
      const io::Image original = io::decode_image(bytes, job.input);
      const kp::Colorized r = model.colorize(original, how);
      const fs::path target = fs::path(o.out) / (job.name + ".png");
      io::save_png(target, r.colour);
      ++written;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::string line =
          job.input.string() + " (" + std::to_string(original.width) + "x" + std::to_string(original.height);
      if (r.infer_width != original.width || r.infer_height != original.height)
        line += ", inferred at " + std::to_string(r.infer_width) + "x" + std::to_string(r.infer_height);
      line += ") -> " + target.string();
      if (o.compare) {
        const io::Image truth = io::to_rgb(original);
        kiln::Tensor<float, kiln::Cpu> L(kiln::Shape::nchw(1, 1, truth.height, truth.width));
        kiln::Tensor<float, kiln::Cpu> ab(kiln::Shape::nchw(1, 2, truth.height, truth.width));
        io::image_to_lab(truth, L, &ab, 0);
        const double mse = kiln::train::ab_mse(r.ab, ab);
        const double psnr = std::min(kiln::train::psnr_rgb(r.colour, truth), 100.0);
        const kiln::Tensor<float, kiln::Cpu> zero(ab.shape());
        const double base_mse = kiln::train::ab_mse(zero, ab);
        const double base_psnr = std::min(kiln::train::psnr_rgb(io::lab_to_image(L, zero, 0), truth), 100.0);
        const double cf = kiln::train::colorfulness(r.colour), cf_true = kiln::train::colorfulness(truth);
        sum_mse += mse, sum_psnr += psnr, sum_base_mse += base_mse, sum_base_psnr += base_psnr;
        sum_cf += cf, sum_cf_true += cf_true;
        ++compared;
        const fs::path cmp = fs::path(o.out) / (job.name + "_compare.png");
        const io::Image grey_rgb = io::to_rgb(r.grey);
        io::save_png(cmp, kp::side_by_side({&grey_rgb, &r.colour, &truth}));
        char buf[240];
        std::snprintf(buf, sizeof buf,
                      "  MSE(ab) %.2f (grey %.2f)  PSNR %.2f dB (grey %.2f)  colourfulness %.1f (true %.1f)", mse,
                      base_mse, psnr, base_psnr, cf, cf_true);
        line += buf;
      }
      char t[32];
      std::snprintf(t, sizeof t, "  %.2fs", secs);
      std::printf("%s%s\n", line.c_str(), t);
      std::fflush(stdout);
    } catch (const std::exception& e) {
      std::fflush(stdout);
      kp::print_error(kProgram, kp::file_error(job.input, e).what());
      failed = true;
    }
  }
  if (compared > 0) {
    std::printf(
        "mean over %d images: MSE(ab) %.2f (grey baseline %.2f)  PSNR %.2f dB (grey %.2f)  colourfulness %.2f "
        "(true %.2f, ratio %.3f; grey 0)\n",
        compared, sum_mse / compared, sum_base_mse / compared, sum_psnr / compared, sum_base_psnr / compared,
        sum_cf / compared, sum_cf_true / compared, sum_cf_true > 0 ? sum_cf / sum_cf_true : 0.0);
  }
  std::printf("%d of %zu images colorized into %s/\n", written, jobs.size(), o.out.c_str());
  if (jobs.empty() && !failed) {
    kp::print_error(kProgram, "no input images");
    return kp::exit_usage;
  }
  return failed ? kp::exit_error : kp::exit_ok;
}

int run(int argc, char** argv) {
  Options o;
  kp::CommandLine app{
      "kiln-colorize: colorizes photos with a checkpoint written by kiln-train. Inputs of any size; colour inputs are "
      "turned grey first. The L channel is kept at full resolution; only a and b are predicted (on a copy at most "
      "--max-side pixels long, upsampled). Writes OUT/<name>.png, and with --compare OUT/<name>_compare.png "
      "(grey | colorized | original) and the error against the original.",
      "kiln-colorize"};
  app.always_capture_default().column_width(30);
  app.add_option("--checkpoint", o.checkpoint,
                 "A kiln-train checkpoint (.safetensors); the model size and kind (ab or colour classes) are read from "
                 "it. Default: the ready-trained colorizer (share/kiln/models/kiln-colorizer.safetensors)")
      ->type_name("FILE");
  app.add_option("--temperature", o.temperature,
                 "Annealed-mean temperature for a colour-class model (default: the checkpoint's, 0.38; lower is more "
                 "vivid, 1 is the plain mean)")
      ->check(kp::number_in(0.01, 10.0));
  app.add_option("--out", o.out, "Output folder")->type_name("DIR");
  auto* max_side = app.add_option("--max-side", o.max_side,
                                  "Infer on a copy at most this long (ab is upsampled to full size; 0: full size)")
                       ->check(kp::integer_in(0, 1 << 16));
  auto* size = app.add_option("--size", o.size, "Infer on a copy whose long side is exactly N pixels")
                   ->check(kp::integer_in(16, 1 << 16));
  auto* scale = app.add_option("--scale", o.scale, "Infer on a copy scaled by F")->check(kp::number_in(0.01, 16.0));
  size->excludes(scale)->excludes(max_side);
  scale->excludes(max_side);
  app.add_flag("--compare", o.compare,
               "Also write <name>_compare.png (grey | colorized | original) and print MSE(ab), PSNR and colourfulness "
               "against the original, per image and the mean, with the grey baseline (meaningful for colour inputs)");
  app.add_option("--device", o.device,
                 "auto (cuda when a GPU is present, else cpu), cpu, or cuda (without a GPU: kiln's CPU emulator of "
                 "CUDA, very slow)")
      ->check(kp::one_of({"auto", "cpu", "cuda"}));
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->check(kp::integer_in(0, 4096));
  app.add_flag("--overwrite", o.overwrite,
               "Replace output files that already exist in --out (an input image is never replaced)");
  app.add_option("--max-memory", o.max_memory,
                 "Memory budget, checked before each image is decoded and inferred (e.g. 4G, 512M; none: no check; "
                 "default 3/4 of the machine's memory)")
      ->type_name("SIZE");
  auto* export_opt = app.add_option("--export", o.export_to,
                                    "Write the checkpoint's model alone (no optimizer state; parameters stored as "
                                    "--export-dtype) to FILE and stop: a compact file for kiln-colorize and PyTorch")
                         ->type_name("FILE");
  app.add_option("--export-dtype", o.export_dtype, "Storage of --export's parameters: f16, bf16 or f32")
      ->check(kp::one_of({"f16", "bf16", "f32"}));
  auto* inputs =
      app.add_option("inputs", o.inputs, "Image files or folders (searched recursively)")->type_name("INPUT...");
  export_opt->excludes(inputs);

  if (const std::optional<int> stop = app.parse(argc, argv)) return *stop;
  try {
    (void)kp::make_memory_budget(o.max_memory);
  } catch (const std::exception& e) {
    throw kp::usage_error("--max-memory", e.what());
  }
  if (o.threads > 0) omp_set_num_threads(o.threads);
  if (o.inputs.empty() && o.export_to.empty()) {
    kp::print_error(kProgram, "no input images: give image files or folders (or --export FILE)");
    std::fprintf(stderr, "Run kiln-colorize --help for the options.\n");
    return kp::exit_usage;
  }
  if (o.checkpoint.empty()) o.checkpoint = find_ready_model();
  if (const std::string why = kp::missing_reason(o.checkpoint); !why.empty())
    throw kp::ProgramError(o.checkpoint, "the checkpoint " + why);
  kp::CheckpointModel m;
  try {
    m = kp::checkpoint_model(o.checkpoint);
  } catch (const std::exception& e) {
    throw kp::file_error(o.checkpoint, e);
  }
  const kp::DeviceKind device = kp::resolve_device(o.device, kProgram);
  const std::unique_ptr<kp::ModelColorizer> model = kp::make_model_colorizer(m.name, device, m.classify());
  if (!model) throw kp::usage_error("--device cuda", "this kiln-colorize was built without the Cuda device");
  return colorize_all(*model, o, device);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const kp::ProgramError& e) {
    std::fflush(stdout);
    kp::print_error(kProgram, e.what());
    return e.exit_code();
  } catch (const kiln::io::IoError& e) {
    std::fflush(stdout);
    const std::string file = kp::first_quoted(e.what());
    kp::print_error(kProgram, file.empty() ? e.what() : file + ": " + kp::without_quoted(e.what(), file));
    return kp::exit_error;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    kp::print_error(kProgram, kp::message_of(e));
    return kp::exit_error;
  }
}
