// Colour as classification: SoftmaxCrossEntropy, AbSoftEncode, AnnealedMean (hand values and
// finite differences) and the bins with their rebalancing weights (kiln/color/ab_bins.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "gradcheck.hpp"
#include "kiln/color/ab_bins.hpp"
#include "kiln/color/ab_soft_encode.hpp"
#include "kiln/color/colour_classifier.hpp"

using namespace kiln;
using kiln::test::relative_error;

namespace {
Tensor<float, Cpu> tensor(const Shape& s, std::vector<float> v) { return Tensor<float, Cpu>::from_host(s, v); }

// A 5 x 4 grid of centres 0.5 apart, around 0 (in the units of the test's ab).
std::vector<float> grid_centres() {
  std::vector<float> c;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) c.push_back(-1.0f + 0.5f * i), c.push_back(-0.75f + 0.5f * j);
  return c;
}

// Random soft targets over the first `classes` of C channels (each pixel sums to 1).
Tensor<float, Cpu> soft_targets(const Shape& s, std::int64_t classes, Rng& rng) {
  Tensor<float, Cpu> t(s);
  const std::int64_t hw = s.h() * s.w();
  for (std::int64_t i = 0; i < s.n(); ++i)
    for (std::int64_t p = 0; p < hw; ++p) {
      double total = 0;
      std::vector<float> v(std::size_t(s.c()), 0.0f);
      for (std::int64_t k = 0; k < classes; ++k) total += v[std::size_t(k)] = rng.uniform(0.0f, 1.0f);
      for (std::int64_t k = 0; k < s.c(); ++k) t.data()[(i * s.c() + k) * hw + p] = float(v[std::size_t(k)] / total);
    }
  return t;
}
}  // namespace

TEST_CASE("SoftmaxCrossEntropy: hand values, weights, and logits far from 0") {
  const Shape s = Shape::nchw(1, 2, 1, 2);
  // pixel 0: z = (0, ln 3) -> softmax (1/4, 3/4), target class 1; pixel 1: z = (0, 0), target (1/2, 1/2)
  auto z = tensor(s, {0.0f, 0.0f, std::log(3.0f), 0.0f});
  auto t = tensor(s, {0.0f, 0.5f, 1.0f, 0.5f});
  SoftmaxCrossEntropy<> xent;
  const double want = (-std::log(0.75) + std::log(2.0)) / 2.0;
  CHECK(xent.forward(z, t) == doctest::Approx(want).epsilon(1e-6));
  // dz = (softmax * sum t - t) / P
  CHECK(relative_error(xent.backward().to_vector(), {0.125f, 0.0f, -0.125f, 0.0f}) < 1e-6);
  auto w = tensor(Shape::nchw(1, 1, 1, 2), {2.0f, 0.0f});
  CHECK(xent.forward(z, t, &w) == doctest::Approx(-std::log(0.75)).epsilon(1e-6));
  // Shifting every logit by 1000 changes nothing (the max is subtracted): finite and equal.
  auto far = tensor(s, {1000.0f, -1000.0f, 1000.0f + std::log(3.0f), -1000.0f});
  CHECK(xent.forward(far, t) == doctest::Approx(want).epsilon(1e-5));
  for (float g : xent.backward().to_vector()) CHECK(std::isfinite(g));
  // Shapes that differ are refused with a sentence.
  auto other = tensor(Shape::nchw(1, 3, 1, 2), std::vector<float>(6, 0.0f));
  CHECK_THROWS_WITH(xent.forward(other, t), doctest::Contains("differ in shape"));
}

TEST_CASE("SoftmaxCrossEntropy: gradient against finite differences; channels past `classes` get 0") {
  const Shape s = Shape::nchw(2, 7, 3, 2);
  Rng rng(5);
  auto z = kiln::test::random_tensor(s, rng, -3.0f, 3.0f);
  auto t = soft_targets(s, 5, rng);
  auto w = kiln::test::random_tensor(Shape::nchw(2, 1, 3, 2), rng, 0.2f, 3.0f);
  SoftmaxCrossEntropy<> xent(5);
  xent.forward(z, t, &w);
  const std::vector<float> analytic = xent.backward().to_vector();
  std::vector<float> numeric(z.numel());
  const float eps = 1e-2f;
  for (std::size_t i = 0; i < z.numel(); ++i) {
    const float saved = z[i];
    z[i] = saved + eps;
    const double up = xent.forward(z, t, &w);
    z[i] = saved - eps;
    const double down = xent.forward(z, t, &w);
    z[i] = saved;
    numeric[i] = float((up - down) / (2.0 * eps));
  }
  INFO("relative error ", relative_error(analytic, numeric));
  CHECK(relative_error(analytic, numeric) < 1e-2);
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t k = 5; k < 7; ++k)
      for (std::int64_t p = 0; p < 6; ++p) CHECK(analytic[std::size_t((i * 7 + k) * 6 + p)] == 0.0f);
}

TEST_CASE("AbSoftEncode: a Gaussian over the 5 nearest bins, summing to 1, and the nearest bin's weight") {
  const std::vector<float> c = grid_centres();
  std::vector<float> weights(20);
  for (int q = 0; q < 20; ++q) weights[std::size_t(q)] = 1.0f + q;
  color::AbSoftEncode<22> enc(c, weights, 0.25f, 5);
  Arena<Cpu> arena;
  arena.begin();
  enc.plan(Shape::nchw(1, 2, 1, 2), arena, "enc");
  arena.finalize();
  // pixel 0 exactly on the centre of bin 5 (-0.5, -0.25), inside the grid; pixel 1 at (0.1, 0.3)
  auto ab = tensor(Shape::nchw(1, 2, 1, 2), {-0.5f, 0.1f, -0.25f, 0.3f});
  const auto t = enc.forward(ab, Mode::train).to_vector();
  for (int p = 0; p < 2; ++p) {
    double sum = 0;
    int nonzero = 0;
    for (int k = 0; k < 22; ++k) sum += t[std::size_t(k * 2 + p)], nonzero += t[std::size_t(k * 2 + p)] > 0;
    CHECK(sum == doctest::Approx(1.0));
    CHECK(nonzero == 5);
    CHECK(t[std::size_t(20 * 2 + p)] == 0.0f);  // channels past the bins stay 0
  }
  // On a centre: its 4 grid neighbours are 0.5 away, so t = 1 / (1 + 4 exp(-0.5^2 / (2 * 0.25^2))).
  const double g = std::exp(-0.25 / (2 * 0.0625));
  CHECK(t[5 * 2 + 0] == doctest::Approx(1.0 / (1.0 + 4.0 * g)));
  CHECK(t[1 * 2 + 0] == doctest::Approx(g / (1.0 + 4.0 * g)));
  // (0.1, 0.3): nearest centre is (0, 0.25), bin 2 * 4 + 2 = 10, weight 11.
  CHECK(enc.pixel_weights().to_vector() == std::vector<float>{6.0f, 11.0f});
}

TEST_CASE("AbSoftEncode and AnnealedMean: gradients against finite differences") {
  {
    color::AbSoftEncode<23> enc(grid_centres(), {}, 0.4f, 5);
    kiln::test::check_gradients(enc, Shape::nchw(2, 2, 3, 3), 11, 2e-2, 1e-3f);
  }
  {
    color::AnnealedMean<23> dec(grid_centres(), 0.38f);
    kiln::test::check_gradients(dec, Shape::nchw(2, 23, 3, 2), 13, 2e-2, 1e-2f);
  }
  {
    color::AnnealedMean<20> dec(grid_centres(), 1.0f);
    kiln::test::check_gradients(dec, Shape::nchw(1, 20, 2, 3), 17, 2e-2, 1e-2f);
  }
}

TEST_CASE("AnnealedMean: T = 1 is the mean, T -> 0 the mode; channels past the bins are ignored") {
  const std::vector<float> c = {0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 2.0f};
  color::AnnealedMean<4> dec(c, 1.0f);
  Arena<Cpu> arena;
  arena.begin(Mode::eval);
  dec.plan(Shape::nchw(1, 4, 1, 1), arena, "dec");
  arena.finalize();
  // logits (0, ln 2, ln 1, 100): softmax over 3 bins (1/4, 1/2, 1/4); channel 3 ignored.
  auto z = tensor(Shape::nchw(1, 4, 1, 1), {0.0f, std::log(2.0f), 0.0f, 100.0f});
  auto ab = dec.forward(z, Mode::eval).to_vector();
  CHECK(ab[0] == doctest::Approx(0.5));
  CHECK(ab[1] == doctest::Approx(0.5));
  dec.set_temperature(0.01f);
  ab = dec.forward(z, Mode::eval).to_vector();
  CHECK(ab[0] == doctest::Approx(1.0).epsilon(1e-4));
  CHECK(ab[1] == doctest::Approx(0.0).epsilon(1e-4));
  CHECK_THROWS_WITH(dec.set_temperature(0.0f), doctest::Contains("positive"));
  CHECK_THROWS_WITH(color::AnnealedMean<2>{c}, doctest::Contains("1 to 2 bin centres"));
}

TEST_CASE("make_ab_bins: the occupied bins, a prior, and rebalancing weights with E[w] = 1") {
  color::AbHistogram h(10.0f);
  for (int i = 0; i < 90; ++i) h.add(1.0f, -2.0f);  // bin (0, 0)
  for (int i = 0; i < 9; ++i) h.add(23.0f, 4.0f);   // bin (20, 0)
  h.add(-61.0f, 79.0f);                             // bin (-60, 80)
  const color::AbBins b = color::make_ab_bins(h, 313, 0.5, 5.0);
  REQUIRE(b.size() == 3);
  CHECK(b.centres == std::vector<float>{-60, 80, 0, 0, 20, 0});  // grid order (a, then b)
  CHECK(b.prior == std::vector<float>{0.01f, 0.9f, 0.09f});
  // Bins 20 apart barely smooth into each other with sigma 5: w ~ 1 / (0.5 p + 0.5 / 3), E_p~[w] = 1.
  CHECK(b.weights[0] > b.weights[2]);
  CHECK(b.weights[2] > b.weights[1]);
  double e = 0;
  for (std::size_t q = 0; q < 3; ++q) e += b.prior[q] * b.weights[q];
  CHECK(e == doctest::Approx(1.0).epsilon(1e-3));
  // lambda = 1: uniform weights; max_bins keeps the most frequent.
  for (float w : color::make_ab_bins(h, 313, 1.0, 5.0).weights) CHECK(w == doctest::Approx(1.0));
  const color::AbBins two = color::make_ab_bins(h, 2);
  CHECK(two.centres == std::vector<float>{0, 0, 20, 0});
  // Numbers round-trip through the metadata text exactly; junk is refused.
  CHECK(color::parse_numbers(color::join_numbers(b.weights), "w") == b.weights);
  CHECK_THROWS_WITH(color::parse_numbers("1,x", "kiln.colour.weights"), doctest::Contains("'x' (item 2)"));
}

TEST_CASE("ColourClassifier: the U-Net's state under the same names, the annealed mean on its logits, same reach") {
  using Logits = UNet<1, 20, 4, 2>;
  static_assert(ReceptiveField<color::ColourClassifier<Logits>>::radius == ReceptiveField<Logits>::radius);
  Network<Logits> bare;
  Network<color::ColourClassifier<Logits>> wrapped;
  Rng rng(21);
  bare.reset_parameters(rng);
  std::vector<std::string> names_bare, names_wrapped;
  std::vector<std::vector<float>> values;
  bare.visit([&](StateRef<Cpu> r) {
    names_bare.push_back(r.name);
    values.push_back(r.value ? r.value->to_vector() : std::vector<float>{});
  });
  std::size_t i = 0;
  wrapped.visit([&](StateRef<Cpu> r) {
    names_wrapped.push_back(r.name);
    if (r.value) r.value->copy_from_host(values.at(i));
    ++i;
  });
  CHECK(names_bare == names_wrapped);
  wrapped.layers().decoder().set_bins(grid_centres(), 0.38f);
  const auto x = kiln::test::random_tensor(Shape::nchw(1, 1, 8, 8), rng);
  const auto logits = bare.forward(x, Mode::eval).clone();
  color::AnnealedMean<20> dec(grid_centres(), 0.38f);
  Arena<Cpu> arena;
  arena.begin(Mode::eval);
  dec.plan(logits.shape(), arena, "dec");
  arena.finalize();
  CHECK(relative_error(wrapped.forward(x, Mode::eval).to_vector(), dec.forward(logits, Mode::eval).to_vector()) < 1e-6);
}

TEST_CASE("ColourOps<Cpu>: sRGB <-> Lab image by image equals the scalar conversion; other shapes are refused") {
  const Shape s = Shape::nchw(2, 3, 2, 3);
  Rng rng(61);
  std::vector<float> v(std::size_t(s.numel()));
  for (auto& e : v) e = rng.uniform(0.0f, 1.0f);
  const Tensor<float, Cpu> rgb = tensor(s, v);
  Tensor<float, Cpu> lab(s), back(s);
  color::ColourOps<Cpu>::srgb_to_lab(rgb, lab);
  color::ColourOps<Cpu>::lab_to_srgb(lab, back);
  const std::int64_t hw = 6;
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t p = 0; p < hw; ++p) {
      const float* in = v.data() + i * 3 * hw + p;
      const color::Lab want = color::srgb_to_lab({in[0], in[hw], in[2 * hw]});
      const float* got = lab.data() + i * 3 * hw + p;
      CHECK(got[0] == want.L);
      CHECK(got[hw] == want.a);
      CHECK(got[2 * hw] == want.b);
      for (int c = 0; c < 3; ++c)
        CHECK(back.data()[i * 3 * hw + c * hw + p] == doctest::Approx(in[c * hw]).epsilon(1e-4));
    }
  Tensor<float, Cpu> two(Shape::nchw(1, 2, 2, 3)), other(Shape::nchw(2, 3, 3, 2));
  CHECK_THROWS_WITH_AS(color::ColourOps<Cpu>::srgb_to_lab(two, two),
                       doctest::Contains("ColourOps<Cpu>::srgb_to_lab: expected two [N, 3, H, W] tensors"), Error);
  CHECK_THROWS_WITH_AS(color::ColourOps<Cpu>::lab_to_srgb(lab, other), doctest::Contains("[2, 3, 3, 2]"), Error);
}
