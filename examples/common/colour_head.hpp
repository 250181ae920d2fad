#pragma once
// What a colorization checkpoint's output channels mean, shared by kiln-train and kiln-colorize:
//   regression (2 channels): ab/110 directly (the MSE reference recipe);
//   classification (kColourClasses channels): logits over ab bins found in the training data
//   (Zhang et al. 2016), decoded by the annealed mean. The bins, their rebalancing weights, the
//   soft-encoding sigma and the decoding temperature travel in the checkpoint's metadata:
//     kiln.colour.loss         "classify" (absent or "mse"/"l1"/"huber": regression)
//     kiln.colour.bin_size     10            kiln.colour.sigma        5 (Lab units)
//     kiln.colour.neighbours   5             kiln.colour.lambda       0.5
//     kiln.colour.temperature  0.38          kiln.colour.centres      a0,b0,a1,b1,... (Lab units)
//     kiln.colour.weights      w0,w1,...     kiln.colour.prior        p0,p1,...
#include "models.hpp"  // first: it brings <kiln/cuda.hpp> before the other kiln headers
#include <kiln/io/color.hpp>
#include <kiln/io/dataset.hpp>
#include <kiln/io/image.hpp>
#include <kiln/kiln.hpp>
#include <kiln/color/ab_bins.hpp>

#include <algorithm>
#include <map>
#include <string>

namespace kiln::programs {

inline constexpr float kAbScale = 1.0f / 110.0f;  // network units per Lab unit (kiln/color/scaling.hpp)

struct ColourHead {
  bool classify = false;
  train::AbBins bins;  // Lab units
  float sigma = 5.0f, lambda = 0.5f, temperature = 0.38f;
  int neighbours = 5;

  void add_metadata(std::map<std::string, std::string>& m, const std::string& loss) const {
    m["kiln.colour.loss"] = classify ? "classify" : loss;
    if (!classify) return;
    m["kiln.colour.bin_size"] = train::join_numbers({bins.bin_size});
    m["kiln.colour.sigma"] = train::join_numbers({sigma});
    m["kiln.colour.neighbours"] = std::to_string(neighbours);
    m["kiln.colour.lambda"] = train::join_numbers({lambda});
    m["kiln.colour.temperature"] = train::join_numbers({temperature});
    m["kiln.colour.centres"] = train::join_numbers(bins.centres);
    m["kiln.colour.weights"] = train::join_numbers(bins.weights);
    m["kiln.colour.prior"] = train::join_numbers(bins.prior);
  }

  // From a checkpoint's metadata; `file` names it in errors. `channels`: the model's outputs.
  static ColourHead from_metadata(const std::map<std::string, std::string>& m, const std::string& file, int channels) {
    ColourHead h;
    const auto it = m.find("kiln.colour.loss");
    h.classify = it != m.end() && it->second == "classify";
    if (!h.classify) {
      if (channels != 2)
        throw ProgramError(file, "has " + std::to_string(channels) +
                                     " output channels but no kiln.colour.loss = classify metadata (its bin centres): "
                                     "not a checkpoint kiln-train wrote");
      return h;
    }
    auto get = [&](const char* key) {
      const auto f = m.find(key);
      if (f == m.end()) throw ProgramError(file, std::string("a classification checkpoint without ") + key + " in its metadata");
      return f->second;
    };
    try {
      h.bins.centres = train::parse_numbers(get("kiln.colour.centres"), "kiln.colour.centres");
      h.bins.weights = train::parse_numbers(get("kiln.colour.weights"), "kiln.colour.weights");
      h.bins.bin_size = train::parse_numbers(get("kiln.colour.bin_size"), "kiln.colour.bin_size").at(0);
      h.sigma = train::parse_numbers(get("kiln.colour.sigma"), "kiln.colour.sigma").at(0);
      h.temperature = train::parse_numbers(get("kiln.colour.temperature"), "kiln.colour.temperature").at(0);
    } catch (const ProgramError&) {
      throw;
    } catch (const std::exception& e) {
      throw ProgramError(file, e.what());
    }
    const std::size_t bins = h.bins.centres.size() / 2;
    if (h.bins.centres.size() % 2 || bins == 0 || bins > std::size_t(channels) || h.bins.weights.size() != bins)
      throw ProgramError(file, "kiln.colour.centres holds " + std::to_string(h.bins.centres.size()) +
                                   " numbers and kiln.colour.weights " + std::to_string(h.bins.weights.size()) +
                                   ": expected (a, b) pairs for 1 to " + std::to_string(channels) +
                                   " bins and one weight per bin");
    if (!(h.temperature > 0.0f) || !(h.sigma > 0.0f))
      throw ProgramError(file, "kiln.colour.temperature and kiln.colour.sigma must be positive");
    return h;
  }

  // Host decoding of [N,K,H,W] logits to [N,2,H,W] ab/110 (the identity for regression).
  Tensor<float, Cpu> to_ab(const Tensor<float, Cpu>& pred) const {
    if (!classify) return pred;
    const Shape& s = pred.shape();
    Tensor<float, Cpu> ab(Shape::nchw(s.n(), 2, s.h(), s.w()));
    const std::vector<float> c = bins.scaled_centres(kAbScale);
    cpu::annealed_mean_forward({s.n(), s.c(), std::int64_t(bins.size()), s.h() * s.w(), temperature}, pred.data(),
                               c.data(), ab.data());
    return ab;
  }
};

// The bins and weights of the training images' colours: every image shrunk to at most
// `max_side` pixels, every second pixel in each direction.
inline ColourHead classify_head_from_data(const io::ImageFolderDataset& train, std::size_t max_bins, int max_side = 256) {
  train::AbHistogram h(10.0f);
  for (std::size_t i = 0; i < train.size(); ++i) {
    io::Image im = train.load_rgb(i);
    const int long_side = std::max(im.width, im.height);
    if (long_side > max_side)
      im = io::resize(im, std::max(1, im.width * max_side / long_side), std::max(1, im.height * max_side / long_side));
    h.add_image(im, 2);
  }
  ColourHead head;
  head.classify = true;
  head.bins = train::make_ab_bins(h, max_bins, head.lambda, head.sigma);
  return head;
}

}  // namespace kiln::programs
