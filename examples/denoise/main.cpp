// kiln-denoise: a network of its own (not the colorizer's U-Net) trained, checkpointed,
// reloaded and run on whole photos with nothing but the library's public API (the command line
// aside: the programs' shared CLI11 facade):
//   - DnCNN-like residual network (Conv-ReLU, Residual<Conv-BN-ReLU-Conv> blocks, Conv) that
//     predicts the noise of an RGB photo; denoised = noisy - predicted noise
//   - io::PairLoader: random crops/flips of the photos, a transform adding Gaussian noise
//     (sigma/255) -> (input = noisy crop, target = the noise), on a background thread
//   - MSE loss, Adam; io::save_checkpoint with this task's metadata, io::load_checkpoint with
//     this task's checks
//   - kiln::infer_image (tiled, reflect-padded whole-image inference on the eval plan) on the
//     validation photos; train::psnr / train::ssim of noisy vs denoised against the clean photo.
//
//   kiln-denoise --data DIR [--val DIR] [--steps 300] [--out DIR] [--load CKPT --steps 0]
#include <kiln/kiln.hpp>
#include <kiln/io/checkpoint.hpp>
#include <kiln/io/dataset.hpp>
#include <kiln/io/pair_loader.hpp>
#include <kiln/train/quality.hpp>

#include "../common/command_line.hpp"  // CLI11, compiled once for the three programs
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace kiln;

namespace {

constexpr int C = 3;   // RGB
constexpr int F = 32;  // features

// Conv-BN-ReLU-Conv with the input added back: y = x + branch(x).
using ResBlock = Residual<
    Sequential<Named<"conv1", Conv2d<F, F, 3>>, Named<"bn", BatchNorm2d<F>>, ReLU<>, Named<"conv2", Conv2d<F, F, 3>>>>;
// Predicts the noise (residual learning, as DnCNN): 1 + 3 x 2 + 1 convolutions, receptive radius 8.
using DenoiseNet = Sequential<Named<"head", Conv2d<C, F, 3>>, ReLU<>, Named<"res0", ResBlock>, Named<"res1", ResBlock>,
                              Named<"res2", ResBlock>, Named<"tail", Conv2d<F, C, 3>>>;

struct Options {
  std::string data, val, out = "out/denoise", load;
  int steps = 300, batch = 8, crop = 48, max_side = 256, val_max_side = 256, val_count = 0, tile = 256, threads = 0;
  float lr = 1e-3f, sigma = 25.0f;
  std::uint64_t seed = 1;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Clean RGB photo [1, 3, H, W] (0..1) and the same with N(0, sigma/255) noise, from a fixed seed.
struct Pair {
  Tensor<float, Cpu> clean, noisy;
};
Pair noisy_photo(const fs::path& file, int max_side, float sigma, std::uint64_t seed) {
  const io::Image img = io::load_image_downscaled(file, max_side);
  Pair p{Tensor<float, Cpu>(Shape::nchw(1, C, img.height, img.width)),
         Tensor<float, Cpu>(Shape::nchw(1, C, img.height, img.width))};
  io::rgb_to_planes(img, p.clean.span(), C);
  Rng rng(seed);
  for (std::size_t i = 0; i < p.clean.numel(); ++i) p.noisy[i] = p.clean[i] + rng.normal() * sigma / 255.0f;
  return p;
}

struct Scores {
  double psnr_noisy = 0, psnr_denoised = 0, ssim_noisy = 0, ssim_denoised = 0;
  std::vector<float> first_output;  // the first photo's denoised values (the reload check)
};

// Every validation photo, whole, through the tiled eval-plan inference.
Scores validate(Network<DenoiseNet>& net, const std::vector<fs::path>& files, const Options& o) {
  Scores s;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const Pair p = noisy_photo(files[i], o.val_max_side, o.sigma, 1000 + i);
    const Tensor<float, Cpu> noise = infer_image(net, p.noisy, TileOptions{.tile = o.tile});
    Tensor<float, Cpu> denoised(p.clean.shape());
    for (std::size_t k = 0; k < denoised.numel(); ++k) denoised[k] = std::clamp(p.noisy[k] - noise[k], 0.0f, 1.0f);
    Tensor<float, Cpu> noisy01(p.noisy.shape());  // the noisy photo as it would be stored (clipped)
    for (std::size_t k = 0; k < noisy01.numel(); ++k) noisy01[k] = std::clamp(p.noisy[k], 0.0f, 1.0f);
    const int w = int(p.clean.shape().w()), h = int(p.clean.shape().h());
    s.psnr_noisy += train::psnr(noisy01.span(), p.clean.span());
    s.psnr_denoised += train::psnr(denoised.span(), p.clean.span());
    s.ssim_noisy += train::ssim(noisy01.span(), p.clean.span(), w, h, C);
    s.ssim_denoised += train::ssim(denoised.span(), p.clean.span(), w, h, C);
    if (i == 0) s.first_output = denoised.to_vector();
  }
  const double n = double(std::max<std::size_t>(files.size(), 1));
  s.psnr_noisy /= n;
  s.psnr_denoised /= n;
  s.ssim_noisy /= n;
  s.ssim_denoised /= n;
  return s;
}

io::MetadataChecks denoise_checks(const Options& o) {
  return {{"task", "denoise", true, "kiln-denoise loads only its own checkpoints"},
          {"denoise.sigma", std::to_string(int(o.sigma)), false, "trained for another noise level"}};
}

int run(const Options& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  manual_seed(o.seed);
  std::vector<fs::path> train_files = io::ImageFolderDataset(o.data).files(), val_files;
  if (!o.val.empty()) {
    val_files = io::ImageFolderDataset(o.val).files();
  } else {  // the last fifth of the folder (at least one photo)
    const std::size_t k = std::max<std::size_t>(1, train_files.size() / 5);
    val_files.assign(train_files.end() - std::ptrdiff_t(k), train_files.end());
    if (train_files.size() > k) train_files.resize(train_files.size() - k);
  }
  if (o.val_count > 0 && val_files.size() > std::size_t(o.val_count)) val_files.resize(std::size_t(o.val_count));
  std::printf("kiln-denoise: %s, %zu parameters, sigma %g/255; %zu training photos, %zu validation photos\n",
              "DenoiseNet (Conv-ReLU, 3 x Residual<Conv-BN-ReLU-Conv>, Conv; 32 features)", DenoiseNet::parameter_count,
              double(o.sigma), train_files.size(), val_files.size());

  auto net = std::make_unique<Network<DenoiseNet>>();
  fs::create_directories(o.out);
  const fs::path ckpt = fs::path(o.out) / "denoise.safetensors";
  if (!o.load.empty()) {
    const auto info = io::load_checkpoint(o.load, *net, denoise_checks(o));
    std::printf("loaded %s (trained %s steps)\n", o.load.c_str(), info.get("denoise.steps").c_str());
  }

  if (o.steps > 0) {
    io::PairOptions po;
    po.batch = o.batch;
    po.crop = o.crop;
    po.scales = {1.0f, 0.75f, 0.5f};
    po.max_side = o.max_side;
    po.seed = o.seed;
    po.input_channels = po.target_channels = C;
    const float sd = o.sigma / 255.0f;
    io::PairLoader loader(train_files, po,
                          [sd](const io::Image& crop, Rng& rng, std::span<float> in, std::span<float> target) {
                            io::rgb_to_planes(crop, in, C);
                            for (std::size_t i = 0; i < in.size(); ++i) {
                              target[i] = rng.normal() * sd;  // what the network learns to predict
                              in[i] += target[i];
                            }
                          });
    Adam<Cpu> adam(collect_parameters(*net), AdamOptions{.lr = o.lr});
    Loss<Cpu> mse(LossKind::mse);
    const auto start = std::chrono::steady_clock::now();
    double loss_sum = 0;
    for (int step = 1; step <= o.steps; ++step) {
      const io::PairBatch b = loader.next();
      net->zero_grad();
      const auto& y = net->forward(b.input, Mode::train);  // a view into the arena: read before the next forward
      loss_sum += mse.forward(y, b.target);
      net->backward(mse.backward());
      adam.step();
      if (step % 50 == 0 || step == o.steps) {
        std::printf("step %4d  loss %.6f (noise MSE; sigma^2 = %.6f)  %.1f img/s\n", step,
                    loss_sum / (step % 50 ? step % 50 : 50), double(sd) * sd,
                    double(step) * o.batch / seconds_since(start));
        std::fflush(stdout);
        loss_sum = 0;
      }
    }
    std::printf("trained %d steps of %d crops of %d px in %.1f s\n", o.steps, o.batch, o.crop, seconds_since(start));
    io::save_checkpoint(ckpt, *net,
                        {{"task", "denoise"},
                         {"denoise.sigma", std::to_string(int(o.sigma))},
                         {"denoise.input", "RGB 0..1 plus Gaussian noise"},
                         {"denoise.output", "the noise (denoised = input - output)"},
                         {"denoise.steps", std::to_string(o.steps)}});
    std::printf("wrote %s\n", ckpt.string().c_str());
  }

  const Scores before = validate(*net, val_files, o);
  // Reload the checkpoint into a fresh network: the same whole-photo output, bit for bit.
  const fs::path reload_from = o.steps > 0 ? ckpt : fs::path(o.load);
  if (!reload_from.empty()) {
    auto fresh = std::make_unique<Network<DenoiseNet>>();
    io::load_checkpoint(reload_from, *fresh, denoise_checks(o));
    const Scores again = validate(*fresh, val_files, o);
    const bool same = again.first_output == before.first_output && again.psnr_denoised == before.psnr_denoised;
    std::printf("reload of %s: %s\n", reload_from.string().c_str(), same ? "identical output" : "DIFFERENT output");
    if (!same) return 1;
  }
  std::printf(
      "validation (%zu whole photos, long side <= %d, sigma %g/255): PSNR noisy %.2f dB -> denoised %.2f dB; "
      "SSIM noisy %.4f -> denoised %.4f\n",
      val_files.size(), o.val_max_side, double(o.sigma), before.psnr_noisy, before.psnr_denoised, before.ssim_noisy,
      before.ssim_denoised);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  kiln::programs::CommandLine app{
      "kiln-denoise: train a residual denoiser on a folder of photos, checkpoint, reload, validate"};
  app.add_option("--data", o.data, "folder of training photos (with --val absent: the last fifth validates)")
      ->required();
  app.add_option("--val", o.val, "folder of validation photos");
  app.add_option("--steps", o.steps, "training steps (0: validate --load only)")->capture_default_str();
  app.add_option("--batch", o.batch, "crops per step")->capture_default_str();
  app.add_option("--crop", o.crop, "crop side in pixels")->capture_default_str();
  app.add_option("--lr", o.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--sigma", o.sigma, "noise standard deviation on the 0..255 scale")->capture_default_str();
  app.add_option("--max-side", o.max_side, "training photos are cached downscaled to this long side")
      ->capture_default_str();
  app.add_option("--val-max-side", o.val_max_side, "validation photos are downscaled to this long side (0: full size)")
      ->capture_default_str();
  app.add_option("--val-count", o.val_count, "use at most this many validation photos (0: all)")->capture_default_str();
  app.add_option("--tile", o.tile, "tile side for whole-photo inference")->capture_default_str();
  app.add_option("--seed", o.seed, "seed (weights, crops, noise)")->capture_default_str();
  app.add_option("--threads", o.threads, "OpenMP threads (0: all)")->capture_default_str();
  app.add_option("--out", o.out, "output folder (denoise.safetensors)")->capture_default_str();
  app.add_option("--load", o.load, "start from this checkpoint");
  if (const std::optional<int> stop = app.parse_cli11_style(argc, argv)) return *stop;
  try {
    if (o.steps < 0 || o.batch < 1 || o.crop < 8) throw kiln::Error("--steps must be >= 0, --batch >= 1, --crop >= 8");
    if (o.steps == 0 && o.load.empty()) throw kiln::Error("--steps 0 needs --load CHECKPOINT");
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln-denoise: %s\n", e.what());
    return 1;
  }
}
