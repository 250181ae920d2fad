#pragma once
// Kernel cases for colour as classification: the library's per-pixel softmax cross-entropy
// (kernels/softmax_xent.cuh: value and dlogits, with and without pixel weights, classes < channels),
// and the colour module's kernels (include/kiln/color/kernels/*.cuh, launched by ColourOps<Cuda>):
// the ab soft encoding (targets, pixel weights, dab), the annealed-mean decoding (ab, dlogits) and
// sRGB <-> Lab, each on the emulated Cuda device against the CPU (Backend<Cpu>, ColourOps<Cpu>). Included only by
// tests/emu/cases/layers_colour.cpp; add_colour_cases(t) appends to the table (tiny cases for the
// ThreadSanitizer subset).
#include <vector>

#include "kiln/color/ab_soft_encode.hpp"
#include "kiln/color/annealed_mean.hpp"
#include "kiln/color/cuda.hpp"

namespace kiln_test {

// A 5 x 4 grid of bin centres 0.5 apart (the units of ab in the cases: random in [-2, 2]).
inline std::vector<float> colour_case_centres() {
  std::vector<float> c;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) c.push_back(-1.0f + 0.5f * i), c.push_back(-0.75f + 0.5f * j);
  return c;
}

// Default-constructible layers with the grid's bins (layer_case builds them itself).
template <class D>
struct GridAnnealedMean : kiln::color::AnnealedMean<23, D> {
  GridAnnealedMean() : kiln::color::AnnealedMean<23, D>(colour_case_centres(), 0.38f) {}
};
template <class D>
struct GridAnnealedMeanAll : kiln::color::AnnealedMean<20, D> {
  GridAnnealedMeanAll() : kiln::color::AnnealedMean<20, D>(colour_case_centres(), 1.0f) {}
};

// Softmax cross-entropy: C channels of which `classes` take part; soft targets; weights or not.
inline void softmax_xent_case(Report& report, const Shape& s, std::int64_t classes, bool weighted, std::uint64_t seed) {
  kiln::Rng rng(seed);
  const auto zv = random_vector(s.numel(), rng, -4.0f, 4.0f);
  std::vector<float> tv(s.numel(), 0.0f);
  const std::int64_t hw = s.h() * s.w();
  for (std::int64_t i = 0; i < s.n(); ++i)
    for (std::int64_t p = 0; p < hw; ++p) {
      float total = 0.0f;
      for (std::int64_t k = 0; k < classes; ++k)
        total += tv[std::size_t((i * s.c() + k) * hw + p)] = rng.uniform(0.0f, 1.0f);
      for (std::int64_t k = 0; k < classes; ++k) tv[std::size_t((i * s.c() + k) * hw + p)] /= total;
    }
  const Shape ws = Shape::nchw(s.n(), 1, s.h(), s.w());
  const auto wv = random_vector(ws.numel(), rng, 0.1f, 3.0f);
  kiln::SoftmaxCrossEntropy<Cpu> cpu(classes);
  kiln::SoftmaxCrossEntropy<Cuda> cuda(classes);
  const auto zc = kiln::Tensor<float, Cpu>::from_host(s, zv), tc = kiln::Tensor<float, Cpu>::from_host(s, tv);
  const auto zg = kiln::Tensor<float, Cuda>::from_host(s, zv), tg = kiln::Tensor<float, Cuda>::from_host(s, tv);
  const auto wc = kiln::Tensor<float, Cpu>::from_host(ws, wv);
  const auto wg = kiln::Tensor<float, Cuda>::from_host(ws, wv);
  report.compare("loss", {cuda.forward(zg, tg, weighted ? &wg : nullptr)},
                 {cpu.forward(zc, tc, weighted ? &wc : nullptr)}, tight);
  report.compare("dlogits", cuda.backward(), cpu.backward(), tight);
}

// ab -> soft targets (K channels, the grid's 20 bins, weights per bin), pixel weights, and dab.
template <int K>
void ab_encode_case(Report& report, std::int64_t n, std::int64_t h, std::int64_t w, std::uint64_t seed) {
  kiln::Rng rng(seed);
  const auto centres = colour_case_centres();
  const auto bin_weights = random_vector(centres.size() / 2, rng, 0.2f, 5.0f);
  kiln::color::AbSoftEncode<K, Cpu> cpu(centres, bin_weights, 0.3f, 5);
  kiln::color::AbSoftEncode<K, Cuda> cuda(centres, bin_weights, 0.3f, 5);
  const Shape in = Shape::nchw(n, 2, h, w);
  kiln::Arena<Cpu> arena_cpu;
  kiln::Arena<Cuda> arena_cuda;
  arena_cpu.begin();
  arena_cuda.begin();
  const Shape out = cpu.plan(in, arena_cpu, "case");
  cuda.plan(in, arena_cuda, "case");
  arena_cpu.finalize();
  arena_cuda.finalize();
  for (int pass = 0; pass < 2; ++pass) {
    const std::string p = pass ? " (pass 2)" : "";
    const auto xv = random_vector(in.numel(), rng, -2.0f, 2.0f), gv = random_vector(out.numel(), rng);
    const auto xc = kiln::Tensor<float, Cpu>::from_host(in, xv);
    const auto xg = kiln::Tensor<float, Cuda>::from_host(in, xv);
    report.compare("targets" + p, cuda.forward(xg, kiln::Mode::train), cpu.forward(xc, kiln::Mode::train), tight);
    report.compare("pixel weights" + p, cuda.pixel_weights(), cpu.pixel_weights(), tight);
    report.compare("dab" + p, cuda.backward(kiln::Tensor<float, Cuda>::from_host(out, gv)),
                   cpu.backward(kiln::Tensor<float, Cpu>::from_host(out, gv)), tight);
  }
}

// sRGB <-> Lab on [N, 3, H, W]: ColourOps<Cuda> against ColourOps<Cpu> (kiln::io's planar loops).
inline void colour_case(Report& report, std::int64_t n, std::int64_t h, std::int64_t w, std::uint64_t seed) {
  kiln::Rng rng(seed);
  const Shape s = Shape::nchw(n, 3, h, w);
  auto rgb = random_vector(s.numel(), rng, 0.0f, 1.0f);
  rgb[0] = 0.0f;  // black, white and a value in the linear part of the curve
  rgb[1] = 1.0f;
  rgb[2] = 0.02f;
  const auto rgb_cpu = kiln::Tensor<float, Cpu>::from_host(s, rgb);
  kiln::Tensor<float, Cpu> lab_cpu(s), back_cpu(s);
  kiln::color::ColourOps<Cpu>::srgb_to_lab(rgb_cpu, lab_cpu);
  kiln::color::ColourOps<Cpu>::lab_to_srgb(lab_cpu, back_cpu);
  const auto rgb_cuda = kiln::Tensor<float, Cuda>::from_host(s, rgb);
  kiln::Tensor<float, Cuda> lab_cuda(s), back_cuda(s);
  kiln::color::ColourOps<Cuda>::srgb_to_lab(rgb_cuda, lab_cuda);
  report.compare("srgb_to_lab", lab_cuda.to_vector(), lab_cpu.to_vector(), tight);
  // Lab -> sRGB from the CPU's Lab values, so the two directions are tested independently.
  const auto lab_in = kiln::Tensor<float, Cuda>::from_host(s, lab_cpu.to_vector());
  kiln::color::ColourOps<Cuda>::lab_to_srgb(lab_in, back_cuda);
  report.compare("lab_to_srgb", back_cuda.to_vector(), back_cpu.to_vector(), tight);
}

void add_colour_cases(std::vector<KernelCase>& t) {
  using kiln::Mode;
  t.push_back({"sRGB <-> Lab N=3 13x11", [](Report& r) { colour_case(r, 3, 13, 11, 101); }});
  // 323 pixels per image: two blocks of the pixel grid per image, the second partly idle.
  t.push_back({"sRGB <-> Lab N=2 19x17", [](Report& r) { colour_case(r, 2, 19, 17, 103); }});
  t.push_back({"SoftmaxCrossEntropy 6 channels, 6 classes, weighted, 2x19x17",
               [](Report& r) { softmax_xent_case(r, Shape::nchw(2, 6, 19, 17), 6, true, 405); }});
  t.push_back({"AbSoftEncode<23> N=2 19x17", [](Report& r) { ab_encode_case<23>(r, 2, 19, 17, 423); }});
  t.push_back({"AnnealedMean<23> (20 bins, T 0.38) N=2 19x17 train", [](Report& r) {
                 layer_case<GridAnnealedMean<Cpu>, GridAnnealedMean<Cuda>>(r, Shape::nchw(2, 23, 19, 17), Mode::train,
                                                                           425, tight, tight);
               }});
  t.push_back({"SoftmaxCrossEntropy 7 channels, 5 classes, weighted, 3x13x11",
               [](Report& r) { softmax_xent_case(r, Shape::nchw(3, 7, 13, 11), 5, true, 401); }});
  t.push_back({"SoftmaxCrossEntropy 313 classes 1x9x7",
               [](Report& r) { softmax_xent_case(r, Shape::nchw(1, 313, 9, 7), 313, false, 409); }});
  t.push_back({"AbSoftEncode<23> N=3 13x11", [](Report& r) { ab_encode_case<23>(r, 3, 13, 11, 419); }});
  t.push_back({"AnnealedMean<23> (20 bins, T 0.38) N=3 13x11 train", [](Report& r) {
                 layer_case<GridAnnealedMean<Cpu>, GridAnnealedMean<Cuda>>(r, Shape::nchw(3, 23, 13, 11), Mode::train,
                                                                           421, tight, tight);
               }});
  t.push_back({"AnnealedMean<20> (T 1) N=2 5x7", [](Report& r) {
                 layer_case<GridAnnealedMeanAll<Cpu>, GridAnnealedMeanAll<Cuda>>(r, Shape::nchw(2, 20, 5, 7),
                                                                                 Mode::train, 431, tight, tight);
               }});
  t.push_back({"tiny sRGB <-> Lab", [](Report& r) { colour_case(r, 1, 3, 5, 229); }, true});
  t.push_back({"tiny SoftmaxCrossEntropy",
               [](Report& r) { softmax_xent_case(r, Shape::nchw(1, 3, 2, 3), 2, true, 433); }, true});
  t.push_back({"tiny AbSoftEncode", [](Report& r) { ab_encode_case<20>(r, 1, 2, 3, 439); }, true});
  t.push_back({"tiny AnnealedMean",
               [](Report& r) {
                 layer_case<GridAnnealedMeanAll<Cpu>, GridAnnealedMeanAll<Cuda>>(r, Shape::nchw(1, 20, 2, 3),
                                                                                 Mode::train, 443, tight, tight);
               },
               true});
}

}  // namespace kiln_test
