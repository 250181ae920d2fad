// kiln-colorize: colorizes greyscale (or colour, turned grey first) photos with a checkpoint
// written by kiln-train. See docs/programs.md, or run kiln-colorize --help.
#include "../common/models.hpp"  // first: it brings <kiln/cuda.hpp> before the other kiln headers
#include <CLI/CLI.hpp>
#include <kiln/io/checkpoint.hpp>
#include <kiln/io/dataset.hpp>
#include <kiln/io/image.hpp>
#include <kiln/io/lab_tensor.hpp>
#include <kiln/train/metrics.hpp>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../common/checkpoint_model.hpp"
#include "../common/cli.hpp"
#include "../common/infer.hpp"

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
};

struct Job {
  fs::path input;
  std::string name;  // output stem
};

// Expands folders (recursively, sorted) and gives every image a unique output name.
std::vector<Job> expand_inputs(const std::vector<std::string>& inputs, bool& failed) {
  std::vector<Job> jobs;
  std::map<std::string, int> used;
  auto add = [&](const fs::path& file) {
    std::string stem = file.stem().string();
    if (stem.empty()) stem = "image";
    std::string name = stem;
    for (int k = 2; used.count(name); ++k) name = stem + "_" + std::to_string(k);
    used[name] = 1;
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
        kp::print_error(kProgram, kp::file_error(in, e).what());
        failed = true;
      }
    } else if (!fs::exists(in, ec)) {
      kp::print_error(kProgram, in + ": no such file or folder");
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

template <class Model>
int colorize_all(const Options& o, kp::DeviceKind device) {
  using Net = kiln::Network<Model>;
  auto net = std::make_unique<Net>();
  io::CheckpointInfo info;
  try {
    info = io::load_checkpoint(o.checkpoint, *net, kp::colorization_checks());
  } catch (const std::exception& e) {
    throw kp::file_error(o.checkpoint, e);
  }
  const std::string trained = training_summary(info.metadata);
  std::printf("kiln-colorize: %s model (%s%s) from %s on %s\n", std::string(kp::model_name<Model>()).c_str(),
              io::model_name<Model>().c_str(), trained.c_str(), o.checkpoint.c_str(), kp::device_description(device).c_str());
  std::fflush(stdout);

  bool failed = false;
  const std::vector<Job> jobs = expand_inputs(o.inputs, failed);
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) throw kp::ProgramError(o.out, "cannot create the output folder (" + ec.message() + ")");

  kp::InferSize how;
  how.max_side = o.max_side;
  how.size = o.size;
  how.scale = o.scale;
  double sum_mse = 0, sum_psnr = 0, sum_base_mse = 0, sum_base_psnr = 0;
  int compared = 0, written = 0;
  for (const Job& job : jobs) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      const io::Image original = io::load_image(job.input);
      const kp::Colorized r = kp::colorize(*net, original, how);
      const fs::path target = fs::path(o.out) / (job.name + ".png");
      io::save_png(target, r.colour);
      ++written;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::string line = job.input.string() + " (" + std::to_string(original.width) + "x" +
                         std::to_string(original.height);
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
        sum_mse += mse, sum_psnr += psnr, sum_base_mse += base_mse, sum_base_psnr += base_psnr;
        ++compared;
        const fs::path cmp = fs::path(o.out) / (job.name + "_compare.png");
        const io::Image grey_rgb = io::to_rgb(r.grey);
        io::save_png(cmp, kp::side_by_side({&grey_rgb, &r.colour, &truth}));
        char buf[200];
        std::snprintf(buf, sizeof buf, "  MSE(ab) %.2f (grey %.2f)  PSNR %.2f dB (grey %.2f)", mse, base_mse, psnr,
                      base_psnr);
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
    std::printf("mean over %d images: MSE(ab) %.2f (grey baseline %.2f)  PSNR %.2f dB (grey %.2f)\n", compared,
                sum_mse / compared, sum_base_mse / compared, sum_psnr / compared, sum_base_psnr / compared);
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
  CLI::App app{
      "kiln-colorize: colorizes photos with a checkpoint written by kiln-train. Inputs of any size; colour inputs are "
      "turned grey first. The L channel is kept at full resolution; only a and b are predicted (on a copy at most "
      "--max-side pixels long, upsampled). Writes OUT/<name>.png, and with --compare OUT/<name>_compare.png "
      "(grey | colorized | original) and the error against the original.",
      "kiln-colorize"};
  app.option_defaults()->always_capture_default();
  app.get_formatter()->column_width(30);
  app.add_option("--checkpoint", o.checkpoint, "A kiln-train checkpoint (.safetensors); the model size is read from it")
      ->required()
      ->type_name("FILE");
  app.add_option("--out", o.out, "Output folder")->type_name("DIR");
  auto* max_side = app.add_option("--max-side", o.max_side,
                                  "Infer on a copy at most this long (ab is upsampled to full size; 0: full size)")
                       ->check(CLI::Range(0, 1 << 16));
  auto* size = app.add_option("--size", o.size, "Infer on a copy whose long side is exactly N pixels")
                   ->check(CLI::Range(16, 1 << 16));
  auto* scale = app.add_option("--scale", o.scale, "Infer on a copy scaled by F")->check(CLI::Range(0.01, 16.0));
  size->excludes(scale)->excludes(max_side);
  scale->excludes(max_side);
  app.add_flag("--compare", o.compare,
               "Also write <name>_compare.png (grey | colorized | original) and print MSE(ab) and PSNR against the "
               "original (meaningful for colour inputs)");
  app.add_option("--device", o.device,
                 "auto (cuda when a GPU is present, else cpu), cpu, or cuda (without a GPU: kiln's CPU emulator of "
                 "CUDA, very slow)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 4096));
  app.add_option("inputs", o.inputs, "Image files or folders (searched recursively)")->required()->type_name("INPUT...");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    kp::print_error(kProgram, e.what());
    std::fprintf(stderr, "Run kiln-colorize --help for the options.\n");
    return kp::exit_usage;
  }
  if (o.threads > 0) omp_set_num_threads(o.threads);
  if (!fs::exists(o.checkpoint)) throw kp::ProgramError(o.checkpoint, "the checkpoint does not exist");
  kp::CheckpointModel m;
  try {
    m = kp::checkpoint_model(o.checkpoint);
  } catch (const std::exception& e) {
    throw kp::file_error(o.checkpoint, e);
  }
  const kp::DeviceKind device = kp::resolve_device(o.device, kProgram);
  return kp::with_model(m.name, device,
                        [&]<class Model>(std::type_identity<Model>) { return colorize_all<Model>(o, device); });
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
    kp::print_error(kProgram, e.what());
    return kp::exit_error;
  }
}
