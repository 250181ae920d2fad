// sRGB <-> Lab against published reference values, round-trip bounds and gamut clamping.
#include <doctest/doctest.h>

#include <kiln/color/scaling.hpp>
#include <kiln/io/color.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace kiln::io;

namespace {

void check_close(Lab got, float L, float a, float b, float tolerance) {
  INFO("got L=" << got.L << " a=" << got.a << " b=" << got.b << ", expected " << L << " " << a << " " << b);
  CHECK(std::fabs(got.L - L) <= tolerance);
  CHECK(std::fabs(got.a - a) <= tolerance);
  CHECK(std::fabs(got.b - b) <= tolerance);
}

}  // namespace

TEST_CASE("color: sRGB primaries and greys match published CIE Lab (D65) values") {
  // Reference values: Bruce Lindbloom's calculator / colormine, sRGB D65, 2° observer.
  check_close(srgb8_to_lab(255, 255, 255), 100.0f, 0.0f, 0.0f, 0.01f);
  check_close(srgb8_to_lab(0, 0, 0), 0.0f, 0.0f, 0.0f, 1e-4f);
  check_close(srgb8_to_lab(255, 0, 0), 53.2408f, 80.0925f, 67.2032f, 0.02f);
  check_close(srgb8_to_lab(0, 255, 0), 87.7347f, -86.1827f, 83.1793f, 0.02f);
  check_close(srgb8_to_lab(0, 0, 255), 32.2970f, 79.1875f, -107.8602f, 0.03f);
  check_close(srgb8_to_lab(128, 128, 128), 53.5850f, 0.0f, 0.0f, 0.02f);
  check_close(srgb8_to_lab(255, 255, 0), 97.1393f, -21.5537f, 94.4780f, 0.03f);
  check_close(srgb8_to_lab(0, 255, 255), 91.1132f, -48.0875f, -14.1312f, 0.03f);
  check_close(srgb8_to_lab(255, 0, 255), 60.3242f, 98.2343f, -60.8249f, 0.03f);
}

TEST_CASE("color: the sRGB transfer curve hits its defining points") {
  CHECK(srgb_to_linear(0.0f) == 0.0f);
  CHECK(srgb_to_linear(1.0f) == doctest::Approx(1.0f).epsilon(1e-6));
  CHECK(srgb_to_linear(0.04045f) == doctest::Approx(0.04045f / 12.92f).epsilon(1e-5));
  CHECK(srgb_to_linear(0.5f) == doctest::Approx(0.2140411f).epsilon(1e-5));
  CHECK(linear_to_srgb(0.2140411f) == doctest::Approx(0.5f).epsilon(1e-5));
  CHECK(linear_to_srgb(0.0031308f) == doctest::Approx(0.0031308f * 12.92f).epsilon(1e-4));
  // the curve is continuous at its break
  CHECK(std::fabs(srgb_to_linear(0.04045f) - srgb_to_linear(0.0404501f)) < 1e-6f);
  // no NaN for slightly negative inputs (resampling filters overshoot)
  CHECK(std::isfinite(srgb_to_linear(-0.01f)));
  CHECK(std::isfinite(linear_to_srgb(-0.01f)));
}

TEST_CASE("color: CIE f(t) and its inverse agree on both sides of the 6/29 break") {
  for (float t : {0.0f, 0.001f, kLabDelta3 * 0.999f, kLabDelta3 * 1.001f, 0.1f, 0.5f, 1.0f}) {
    CHECK(lab_f_inverse(lab_f(t)) == doctest::Approx(t).epsilon(1e-4).scale(1e-6));
  }
  CHECK(std::fabs(lab_f(kLabDelta3) - kLabDelta) < 1e-6f);  // continuous at the break
}

TEST_CASE("color: 8-bit RGB -> Lab -> RGB round trip stays within 1e-3 on a grid of every 5th level") {
  float worst = 0.0f;
  for (int r = 0; r <= 255; r += 5)
    for (int g = 0; g <= 255; g += 5)
      for (int b = 0; b <= 255; b += 5) {
        const Rgb in{from_8bit(std::uint8_t(r)), from_8bit(std::uint8_t(g)), from_8bit(std::uint8_t(b))};
        const Rgb out = lab_to_srgb(srgb_to_lab(in));
        worst = std::max({worst, std::fabs(out.r - in.r), std::fabs(out.g - in.g), std::fabs(out.b - in.b)});
      }
  INFO("worst round-trip error " << worst);
  CHECK(worst < 1e-3f);
}

TEST_CASE("color: planar bulk conversion equals the scalar one and round-trips") {
  std::vector<float> r, g, b;
  for (int i = 0; i < 64; ++i) {
    r.push_back(float(i) / 63.0f);
    g.push_back(float((i * 7) % 64) / 63.0f);
    b.push_back(float((i * 13) % 64) / 63.0f);
  }
  const std::size_t n = r.size();
  std::vector<float> L(n), a(n), bb(n), r2(n), g2(n), b2(n);
  rgb_to_lab_planar(r.data(), g.data(), b.data(), L.data(), a.data(), bb.data(), n);
  lab_to_rgb_planar(L.data(), a.data(), bb.data(), r2.data(), g2.data(), b2.data(), n);
  for (std::size_t i = 0; i < n; ++i) {
    const Lab s = srgb_to_lab({r[i], g[i], b[i]});
    CHECK(L[i] == s.L);
    CHECK(a[i] == s.a);
    CHECK(bb[i] == s.b);
    CHECK(std::fabs(r2[i] - r[i]) < 1e-3f);
    CHECK(std::fabs(g2[i] - g[i]) < 1e-3f);
    CHECK(std::fabs(b2[i] - b[i]) < 1e-3f);
  }
  // in place (full aliasing) is allowed
  std::vector<float> x = r, y = g, z = b;
  rgb_to_lab_planar(x.data(), y.data(), z.data(), x.data(), y.data(), z.data(), n);
  CHECK(x == L);
  CHECK(y == a);
  CHECK(z == bb);
}

TEST_CASE("color: out-of-gamut Lab clamps to valid sRGB, never NaN") {
  for (Lab lab : {Lab{50, 127, 127}, Lab{50, -128, -128}, Lab{100, 100, 0}, Lab{0, 100, -100}, Lab{-10, 0, 0},
                  Lab{120, 0, 0}, Lab{75, 0, 200}}) {
    const Rgb c = lab_to_srgb(lab);
    for (float v : {c.r, c.g, c.b}) {
      CHECK(std::isfinite(v));
      CHECK(v >= 0.0f);
      CHECK(v <= 1.0f);
    }
  }
  const Rgb saturated = lab_to_srgb({50, 127, 0});  // far beyond sRGB red-magenta
  CHECK(saturated.r == doctest::Approx(1.0f));
  CHECK(lab_to_srgb({120, 0, 0}).g == doctest::Approx(1.0f));
  CHECK(lab_to_srgb({-10, 0, 0}).g == 0.0f);
}

TEST_CASE("color: a grey level's L equals the L of any colour with the same luminance") {
  CHECK(srgb_grey_to_L(128.0f / 255.0f) == doctest::Approx(srgb8_to_lab(128, 128, 128).L).epsilon(1e-6));
  // L of red equals L of the grey whose linear value is red's luminance
  const float y = linear_rgb_luminance(1.0f, 0.0f, 0.0f);
  CHECK(srgb_grey_to_L(linear_to_srgb(y)) == doctest::Approx(srgb8_to_lab(255, 0, 0).L).epsilon(1e-5));
}

TEST_CASE("color: network scaling maps L 0..100 to -1..1 and ab by 1/110") {
  CHECK(kiln::color::normalise_L(0.0f) == -1.0f);
  CHECK(kiln::color::normalise_L(50.0f) == 0.0f);
  CHECK(kiln::color::normalise_L(100.0f) == 1.0f);
  CHECK(kiln::color::denormalise_L(kiln::color::normalise_L(37.5f)) == doctest::Approx(37.5f));
  CHECK(kiln::color::normalise_ab(110.0f) == 1.0f);
  CHECK(kiln::color::normalise_ab(-55.0f) == -0.5f);
  CHECK(kiln::color::denormalise_ab(0.5f) == 55.0f);
  CHECK(kiln::color::denormalise_ab(kiln::color::normalise_ab(-107.86f)) == doctest::Approx(-107.86f));
  // every in-gamut colour's ab lands within [-1, 1] after scaling
  for (int r = 0; r <= 255; r += 51)
    for (int g = 0; g <= 255; g += 51)
      for (int b = 0; b <= 255; b += 51) {
        const Lab lab = srgb8_to_lab(std::uint8_t(r), std::uint8_t(g), std::uint8_t(b));
        CHECK(std::fabs(kiln::color::normalise_ab(lab.a)) <= 1.0f);
        CHECK(std::fabs(kiln::color::normalise_ab(lab.b)) <= 1.0f);
      }
}

TEST_CASE("color: 8-bit quantisation rounds and clamps") {
  CHECK(to_8bit(0.0f) == 0);
  CHECK(to_8bit(1.0f) == 255);
  CHECK(to_8bit(-0.5f) == 0);
  CHECK(to_8bit(2.0f) == 255);
  CHECK(to_8bit(NAN) == 0);
  for (int v = 0; v < 256; ++v) CHECK(to_8bit(from_8bit(std::uint8_t(v))) == v);
}
