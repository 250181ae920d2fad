// The CPU convolutions' operand rounding (kiln/cpu/conv_rounding.hpp), the CUDA tensor-core
// numerics simulated on the CPU:
//   * the rounding functions bit by bit (ties to even for BF16, away from zero for TF32, NaN, inf,
//     overflow);
//   * forward, input gradient and weight gradient under BF16 and TF32 against loops in double on
//     the rounded operands (only the fp32 accumulation may differ: normalised error < 2e-6), and
//     against the fp32 convolution, which they must miss by the format's amount: BF16 (u = 2^-8)
//     between 1e-3 and 2u = 2^-7, TF32 between 1e-4 and 2^-9 (a deliberate check that the rounding
//     happened, and that it was not BF16's);
//   * the bias gradient from the unrounded dy (bit for bit fp32's), K = 5 left alone, the scope.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/cpu/conv2d.hpp"
#include "kiln/cpu/conv_rounding.hpp"
#include "normalised_error.hpp"

namespace {

using kiln::ConvShape;
using kiln::cpu::ConvRounding;
using kiln_test::normalised_error;

std::vector<float> rounding_test_values(std::size_t n, std::uint64_t seed, float lo, float hi) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 7;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = lo + (hi - lo) * static_cast<float>((s >> 40) & 0xffffff) / 16777216.0f;
  }
  return v;
}

float bits_to_float(std::uint32_t u) { return std::bit_cast<float>(u); }
std::uint32_t float_bits(float x) { return std::bit_cast<std::uint32_t>(x); }

// What the mode's tensor core multiplies: weights and activations (x, dy) may be rounded differently.
float weight_operand(ConvRounding r, float v) {
  return r == ConvRounding::bf16 ? kiln::cpu::round_bf16(v) : kiln::cpu::round_tf32(v);
}
float activation_operand(ConvRounding r, float v) {
  return r == ConvRounding::bf16 ? kiln::cpu::round_bf16(v) : kiln::cpu::truncate_tf32(v);
}

struct ConvPasses {
  std::vector<float> y, dx, dw, db;
};

// y, dx and dw (from dw0) in double on the rounded operands; db from the unrounded dy.
ConvPasses rounded_operand_reference(ConvRounding r, const ConvShape& s, const std::vector<float>& x,
                                     const std::vector<float>& w, const std::vector<float>& b,
                                     const std::vector<float>& dy, const std::vector<float>& dw0) {
  const std::int64_t K = s.k, P = K / 2, H = s.h, W = s.w;
  std::vector<double> y(dy.size()), dx(x.size(), 0.0), dw(dw0.begin(), dw0.end()), db(b.size(), 0.0);
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j) {
          const auto yi = static_cast<std::size_t>(((n * s.c_out + o) * H + i) * W + j);
          const double g = activation_operand(r, dy[yi]);
          db[static_cast<std::size_t>(o)] += dy[yi];
          double acc = b[static_cast<std::size_t>(o)];
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < K; ++u)
              for (std::int64_t v = 0; v < K; ++v) {
                const std::int64_t ii = i + u - P, jj = j + v - P;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                const auto xi = static_cast<std::size_t>(((n * s.c_in + c) * H + ii) * W + jj);
                const auto wi = static_cast<std::size_t>(((o * s.c_in + c) * K + u) * K + v);
                const double xr = activation_operand(r, x[xi]), wr = weight_operand(r, w[wi]);
                acc += xr * wr;
                dx[xi] += g * wr;
                dw[wi] += g * xr;
              }
          y[yi] = acc;
        }
  return {std::vector<float>(y.begin(), y.end()), std::vector<float>(dx.begin(), dx.end()),
          std::vector<float>(dw.begin(), dw.end()), std::vector<float>(db.begin(), db.end())};
}

// The CPU entry points (conv2d_forward / conv2d_backward) under the setting in force.
ConvPasses cpu_conv(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                    const std::vector<float>& b, const std::vector<float>& dy, const std::vector<float>& dw0) {
  std::vector<float> ws(kiln::cpu::conv2d_workspace_floats(s) + 1);
  ConvPasses out{std::vector<float>(dy.size()), std::vector<float>(x.size()), dw0, std::vector<float>(b.size(), 0.5f)};
  kiln::cpu::conv2d_forward(s, x.data(), w.data(), b.data(), out.y.data(), ws.data());
  kiln::cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), out.dx.data(), out.dw.data(), out.db.data(), ws.data());
  return out;
}

std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

struct Band {
  double exact, lo, hi;  // against the rounded-operand loops; the band around fp32
};

void check_rounded_conv(ConvRounding r, const ConvShape& s, std::uint64_t seed, Band band) {
  std::ostringstream name;
  name << kiln::cpu::conv_rounding_name(r) << " N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " "
       << s.h << "x" << s.w;
  INFO(name.str());
  const auto x = rounding_test_values(static_cast<std::size_t>(s.n * s.c_in * s.hw()), seed, -2.0f, 2.0f);
  const auto w = rounding_test_values(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto b = rounding_test_values(static_cast<std::size_t>(s.c_out), seed + 2, -1.0f, 1.0f);
  const auto dy = rounding_test_values(static_cast<std::size_t>(s.n * s.c_out * s.hw()), seed + 3, -1.0f, 1.0f);
  const auto dw0 = rounding_test_values(w.size(), seed + 4, -1.0f, 1.0f);
  const ConvPasses fp32 = cpu_conv(s, x, w, b, dy, dw0);
  ConvPasses got;
  {
    kiln::cpu::ConvRoundingScope scope(r);
    got = cpu_conv(s, x, w, b, dy, dw0);
  }
  const ConvPasses want = rounded_operand_reference(r, s, x, w, b, dy, dw0);
  const std::vector<float> grad = minus(got.dw, dw0), want_grad = minus(want.dw, dw0), fp32_grad = minus(fp32.dw, dw0);
  const double errors[3] = {normalised_error(got.y, want.y), normalised_error(got.dx, want.dx),
                            normalised_error(grad, want_grad)};
  const double off_fp32[3] = {normalised_error(got.y, fp32.y), normalised_error(got.dx, fp32.dx),
                              normalised_error(grad, fp32_grad)};
  const char* pass[3] = {"forward", "input gradient", "weight gradient"};
  MESSAGE(name.str(), ": vs the rounded-operand loops ", errors[0], " / ", errors[1], " / ", errors[2], ", vs fp32 ",
          off_fp32[0], " / ", off_fp32[1], " / ", off_fp32[2], " (forward / input gradient / weight gradient)");
  for (int i = 0; i < 3; ++i) {
    INFO(pass[i], ": vs the rounded-operand loops ", errors[i], ", vs fp32 ", off_fp32[i]);
    CHECK(errors[i] < band.exact);
    CHECK(off_fp32[i] > band.lo);
    CHECK(off_fp32[i] < band.hi);
  }
  // The bias gradient comes from the fp32 dy: fp32's bits, added to what db held.
  CHECK(got.db == fp32.db);
  CHECK(normalised_error(minus(got.db, std::vector<float>(b.size(), 0.5f)), want.db) < 1e-6);
}

constexpr Band bf16_band{2e-6, 1e-3, 1.0 / 128};
constexpr Band tf32_band{2e-6, 1e-4, 1.0 / 512};

}  // namespace

TEST_CASE("round_bf16: to nearest, ties to even; NaN stays a quiet NaN, overflow gives inf") {
  using kiln::cpu::round_bf16;
  CHECK(round_bf16(1.0f) == 1.0f);
  CHECK(round_bf16(1.0f + 0x1p-8f) == 1.0f);                       // a tie, to the even 1.0
  CHECK(round_bf16(1.0f + 0x1p-7f + 0x1p-8f) == 1.0f + 0x1p-6f);   // a tie, to the even 1 + 2^-6
  CHECK(round_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f);  // past the tie: up
  CHECK(round_bf16(-(1.0f + 0x1p-8f + 0x1p-20f)) == -(1.0f + 0x1p-7f));
  CHECK(float_bits(round_bf16(-0.0f)) == 0x80000000u);
  CHECK(round_bf16(std::numeric_limits<float>::max()) == std::numeric_limits<float>::infinity());
  CHECK(round_bf16(-std::numeric_limits<float>::infinity()) == -std::numeric_limits<float>::infinity());
  const float nan = bits_to_float(0x7f800001u);  // a signalling NaN whose payload is in the low bits only
  CHECK(std::isnan(round_bf16(nan)));
  CHECK(float_bits(round_bf16(nan)) == 0x7fc00000u);
  CHECK(float_bits(round_bf16(bits_to_float(0x00008000u))) == 0x00000000u);  // a subnormal tie, to even
  CHECK(float_bits(round_bf16(bits_to_float(0x00018000u))) == 0x00020000u);
}

TEST_CASE("round_tf32: to nearest, ties away from zero (cvt.rna); truncate_tf32 drops the 13 low bits") {
  using kiln::cpu::round_tf32;
  using kiln::cpu::truncate_tf32;
  CHECK(round_tf32(1.0f + 0x1p-11f) == 1.0f + 0x1p-10f);  // a tie: away from zero
  CHECK(round_tf32(-(1.0f + 0x1p-11f)) == -(1.0f + 0x1p-10f));
  CHECK(round_tf32(1.0f + 0x1p-12f) == 1.0f);
  CHECK(truncate_tf32(1.0f + 0x1p-10f + 0x1p-11f + 0x1p-12f) == 1.0f + 0x1p-10f);
  CHECK(truncate_tf32(-(1.0f + 0x1p-11f)) == -1.0f);
  CHECK(round_tf32(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(round_tf32(std::nanf(""))));
}

TEST_CASE("CPU convolutions under ConvRounding::bf16 multiply BF16-rounded operands in fp32") {
  check_rounded_conv(ConvRounding::bf16, {2, 16, 12, 9, 10, 3}, 1, bf16_band);  // the im2col path
  check_rounded_conv(ConvRounding::bf16, {1, 8, 16, 20, 20, 3}, 2, bf16_band);  // rows >= 16: the padded path
  check_rounded_conv(ConvRounding::bf16, {2, 24, 8, 8, 8, 1}, 3, bf16_band);    // 1x1
  check_rounded_conv(ConvRounding::bf16, {1, 16, 2, 12, 12, 1}, 4, bf16_band);  // 1x1, H*W > 64: the dot wgrad
  check_rounded_conv(ConvRounding::bf16, {2, 1, 16, 16, 16, 3}, 5, bf16_band);  // the U-Net's first layer
}

TEST_CASE(
    "CPU convolutions under ConvRounding::tf32: weights to nearest, x and dy truncated, as the mma.sync kernels") {
  check_rounded_conv(ConvRounding::tf32, {2, 16, 12, 9, 10, 3}, 11, tf32_band);
  check_rounded_conv(ConvRounding::tf32, {2, 24, 8, 8, 8, 1}, 12, tf32_band);
}

TEST_CASE("ConvRounding leaves K = 5 and the default alone; the scope restores; names parse") {
  const ConvShape s{1, 4, 3, 7, 6, 5};
  const auto x = rounding_test_values(static_cast<std::size_t>(s.n * s.c_in * s.hw()), 21, -2.0f, 2.0f);
  const auto w = rounding_test_values(static_cast<std::size_t>(s.c_out * s.c_in * 25), 22, -1.0f, 1.0f);
  const auto b = rounding_test_values(3, 23, -1.0f, 1.0f);
  const auto dy = rounding_test_values(static_cast<std::size_t>(s.n * s.c_out * s.hw()), 24, -1.0f, 1.0f);
  const std::vector<float> dw0(w.size(), 0.0f);
  CHECK(kiln::cpu::conv_rounding() == ConvRounding::none);
  const ConvPasses fp32 = cpu_conv(s, x, w, b, dy, dw0);
  {
    kiln::cpu::ConvRoundingScope scope(ConvRounding::bf16);
    CHECK(kiln::cpu::conv_rounding() == ConvRounding::bf16);
    const ConvPasses k5 = cpu_conv(s, x, w, b, dy, dw0);
    CHECK(k5.y == fp32.y);
    CHECK(k5.dx == fp32.dx);
    CHECK(k5.dw == fp32.dw);
    CHECK(kiln::cpu::rounds_operands(ConvRounding::bf16, {1, 4, 3, 7, 6, 3}));
    CHECK_FALSE(kiln::cpu::rounds_operands(ConvRounding::bf16, s));
    CHECK_FALSE(kiln::cpu::rounds_operands(ConvRounding::none, {1, 4, 3, 7, 6, 3}));
  }
  CHECK(kiln::cpu::conv_rounding() == ConvRounding::none);
  CHECK(kiln::cpu::parse_conv_rounding("bf16") == ConvRounding::bf16);
  CHECK(kiln::cpu::parse_conv_rounding("tf32") == ConvRounding::tf32);
  CHECK(kiln::cpu::parse_conv_rounding("fp32") == ConvRounding::none);
  CHECK(std::string(kiln::cpu::conv_rounding_name(ConvRounding::bf16)) == "bf16");
  CHECK_THROWS_WITH_AS(kiln::cpu::parse_conv_rounding("fp16"), doctest::Contains("use fp32, tf32 or bf16"),
                       kiln::Error);
}
