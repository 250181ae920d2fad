#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "kiln/color/lab_tensor.hpp"
#include "kiln/color/metrics.hpp"
#include "kiln/color/scaling.hpp"

using namespace kiln;

TEST_CASE("metrics: ab_mse is in Lab units (x110) over all pixels and both channels") {
  // Prediction offset by 0.1 (normalised) = 11 Lab units everywhere: MSE = 121.
  Tensor<float, Cpu> truth(Shape::nchw(2, 2, 3, 4)), pred(Shape::nchw(2, 2, 3, 4));
  for (std::size_t i = 0; i < truth.numel(); ++i) {
    truth[i] = 0.01f * float(i % 7) - 0.03f;
    pred[i] = truth[i] + 0.1f;
  }
  CHECK(color::ab_mse(pred, truth) == doctest::Approx(121.0).epsilon(1e-5));
  CHECK(color::ab_mse(truth, truth) == 0.0);
  // Half the values off by 0.2 (22 units), half exact: (484 + 0) / 2.
  for (std::size_t i = 0; i < pred.numel(); ++i) pred[i] = truth[i] + (i % 2 ? 0.2f : 0.0f);
  CHECK(color::ab_mse(pred, truth) == doctest::Approx(242.0).epsilon(1e-5));
  CHECK_THROWS_WITH_AS(color::ab_mse(pred, Tensor<float, Cpu>(Shape::nchw(1, 2, 3, 4))),
                       doctest::Contains("differ in shape"), kiln::Error);
}

TEST_CASE("metrics: PSNR of a known difference") {
  io::Image a{4, 2, 3, std::vector<float>(24, 0.5f)}, b = a;
  for (float& v : b.pixels) v += 0.1f;  // MSE 0.01 -> 20 dB
  CHECK(color::psnr_rgb(a, b) == doctest::Approx(20.0).epsilon(1e-4));
  b = a;
  b.pixels[0] = 0.5f + 0.6f;  // one value off by 0.6 of 24: MSE 0.015
  CHECK(color::psnr_rgb(a, b) == doctest::Approx(10.0 * std::log10(1.0 / 0.015)).epsilon(1e-4));
  CHECK(std::isinf(color::psnr_rgb(a, a)));
}

TEST_CASE("metrics: colorfulness (Hasler & Suesstrunk)") {
  io::Image grey{3, 3, 3, std::vector<float>(27, 0.37f)};
  CHECK(color::colorfulness(grey) == doctest::Approx(0.0).epsilon(1e-9));
  // A uniform pure red: rg = 255, yb = 127.5, no spread: M = 0.3 * sqrt(255^2 + 127.5^2).
  io::Image red{2, 2, 3, {1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0}};
  CHECK(color::colorfulness(red) == doctest::Approx(0.3 * std::sqrt(255.0 * 255.0 + 127.5 * 127.5)));
  // Half red, half green: rg = +-255 (mean 0, sd 255), yb = 127.5 (mean 127.5, sd 0).
  io::Image mix{2, 1, 3, {1, 0, 0, 0, 1, 0}};
  CHECK(color::colorfulness(mix) == doctest::Approx(255.0 + 0.3 * 127.5));
}

TEST_CASE("metrics: the validation accumulator") {
  Tensor<float, Cpu> L(Shape::nchw(2, 1, 2, 2)), ab(Shape::nchw(2, 2, 2, 2));
  for (std::size_t i = 0; i < L.numel(); ++i) L[i] = 0.2f;
  for (std::size_t i = 0; i < ab.numel(); ++i) ab[i] = 0.1f;
  Tensor<float, Cpu> pred(ab.shape());
  for (std::size_t i = 0; i < pred.numel(); ++i) pred[i] = 0.15f;  // 5.5 Lab units off
  color::ValidationMetrics m;
  m.add(L, pred, ab);
  m.add(L, ab, ab);
  CHECK(m.images() == 4);
  CHECK(m.ab_mse() == doctest::Approx(5.5 * 5.5 / 2).epsilon(1e-4));
  CHECK(m.psnr() > 20.0);
  CHECK(m.colorfulness_true() > 0.0);
  m.reset();
  CHECK(m.images() == 0);
}

TEST_CASE("lab_tensor: image -> L/ab -> image round trip and scaling") {
  io::Image img{3, 2, 3, {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0.5f, 0.25f, 0.75f}};
  Tensor<float, Cpu> L(Shape::nchw(2, 1, 2, 3)), ab(Shape::nchw(2, 2, 2, 3));
  color::image_to_lab(img, L, &ab, 1);
  CHECK(L.at(0, 0, 0, 0) == 0.0f);                                 // slot 0 untouched
  CHECK(L.at(1, 0, 1, 0) == doctest::Approx(1.0).epsilon(1e-4));   // white: L = 100 -> 1
  CHECK(L.at(1, 0, 1, 1) == doctest::Approx(-1.0).epsilon(1e-4));  // black: L = 0 -> -1
  CHECK(ab.at(1, 0, 0, 0) == doctest::Approx(io::srgb_to_lab({1, 0, 0}).a / 110.0f));
  const io::Image back = color::lab_to_image(L, ab, 1);
  for (std::size_t i = 0; i < img.pixels.size(); ++i)
    CHECK(back.pixels[i] == doctest::Approx(img.pixels[i]).epsilon(2e-3));
  CHECK_THROWS_AS(color::image_to_lab(img, L, &ab, 2), io::IoError);
  std::map<std::string, std::string> meta;
  color::add_scaling_metadata(meta);
  CHECK(meta["kiln.input_scaling"] == "L/50-1");
  CHECK(meta["kiln.output_scaling"] == "ab/110");
}
