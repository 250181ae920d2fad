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
// The bodies are in colour_head.cpp (compiled once per program).
#include <kiln/core/tensor.hpp>
#include <kiln/io/dataset.hpp>
#include <kiln/color/ab_bins.hpp>

#include <cstddef>
#include <map>
#include <string>

namespace kiln::programs {

inline constexpr float kAbScale = 1.0f / 110.0f;  // network units per Lab unit (kiln/color/scaling.hpp)

struct ColourHead {
  bool classify = false;
  train::AbBins bins;  // Lab units
  float sigma = 5.0f, lambda = 0.5f, temperature = 0.38f;
  int neighbours = 5;

  void add_metadata(std::map<std::string, std::string>& m, const std::string& loss) const;
  // From a checkpoint's metadata; `file` names it in errors. `channels`: the model's outputs.
  static ColourHead from_metadata(const std::map<std::string, std::string>& m, const std::string& file, int channels);
  // Host decoding of [N,K,H,W] logits to [N,2,H,W] ab/110 (the identity for regression).
  Tensor<float, Cpu> to_ab(const Tensor<float, Cpu>& pred) const;
};

// The bins and weights of the training images' colours: every image shrunk to at most
// `max_side` pixels, every second pixel in each direction.
ColourHead classify_head_from_data(const io::ImageFolderDataset& train, std::size_t max_bins, int max_side = 256);

}  // namespace kiln::programs
