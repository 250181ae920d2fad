// What a colorization checkpoint's output channels mean (colour_head.hpp).
#include "colour_head.hpp"

#include <kiln/color/cpu/colour_classes.hpp>
#include <kiln/io/color.hpp>
#include <kiln/io/image.hpp>

#include <algorithm>

#include "cli.hpp"

namespace kiln::programs {

void ColourHead::add_metadata(std::map<std::string, std::string>& m, const std::string& loss) const {
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

ColourHead ColourHead::from_metadata(const std::map<std::string, std::string>& m, const std::string& file,
                                     int channels) {
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
    if (f == m.end())
      throw ProgramError(file, std::string("a classification checkpoint without ") + key + " in its metadata");
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

Tensor<float, Cpu> ColourHead::to_ab(const Tensor<float, Cpu>& pred) const {
  if (!classify) return pred;
  const Shape& s = pred.shape();
  Tensor<float, Cpu> ab(Shape::nchw(s.n(), 2, s.h(), s.w()));
  const std::vector<float> c = bins.scaled_centres(kAbScale);
  color::cpu::annealed_mean_forward({s.n(), s.c(), std::int64_t(bins.size()), s.h() * s.w(), temperature}, pred.data(),
                                    c.data(), ab.data());
  return ab;
}

ColourHead classify_head_from_data(const io::ImageFolderDataset& train, std::size_t max_bins, int max_side) {
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
