// BF16 storage of activations (kernels/conv2d_mma_bf16.cuh): the NHWC BF16 copy of an NCHW fp32
// activation and the BF16 mma.sync forward that stages it with 16-byte cp.async and ldmatrix, on
// the lane-accurate emulation of mma.sync m16n8k16 / ldmatrix, against
//   * a CPU copy bit by bit (round to nearest, ties to even; zeros in the padded channels);
//   * loops in double on the operands the tensor cores see (x and w rounded to BF16): only the
//     fp32 accumulation order may differ, normalised error < 2e-6;
//   * the CPU reference convolution in fp32 with BF16's bound 2^-7 (test_conv_mma_bf16.cpp says
//     why), and above 1e-3, which TF32 stays under: the BF16 path really ran;
//   * a deliberate bug (channels 0 and 8 of every pixel swapped in the copy, what a wrong chunk
//     index does) that the bound must catch;
// and Backend<Cuda>::conv2d_forward under MathMode::bf16 launching these kernels.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "conv2d_mma_bf16.cuh"
#include "emu/conv_taps.hpp"
#include "emu/launch_log.hpp"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/cuda.hpp"
#include "kiln/gpu/gpu.hpp"
#include "normalised_error.hpp"
#include "test_emulator_support.hpp"

namespace {

using kiln::ConvShape;
using kiln_emu_test::DeviceBuffer;
using kiln_emu_test::uniform;
using kiln_test::normalised_error;
namespace mb = kiln::cuda::kernels::mma_bf16;

constexpr double nhwc_bf16_bound = 1.0 / 128;  // 2u, u = 2^-8
constexpr double nhwc_tf32_level = 1e-3;

std::uint16_t bf16_bits(float x) { return __float2bfloat16_rn(x).bits; }
double bf16_value(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// The NHWC copy on the CPU: xh[p][c], channels padded to 16 with zeros.
std::vector<std::uint16_t> nhwc_reference(std::int64_t n, std::int64_t c, std::int64_t hw,
                                          const std::vector<float>& x) {
  const std::int64_t cp = kiln::cuda::kernels::mma_conv::channels_padded(c);
  std::vector<std::uint16_t> h(static_cast<std::size_t>(n * hw * cp), 0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t q = 0; q < hw; ++q)
        h[static_cast<std::size_t>((i * hw + q) * cp + ch)] =
            bf16_bits(x[static_cast<std::size_t>((i * c + ch) * hw + q)]);
  return h;
}

// dx in double on BF16-rounded operands (dy and w).
std::vector<float> nhwc_exact_dx(const ConvShape& s, const std::vector<float>& w, const std::vector<float>& dy) {
  std::vector<double> dx(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 0.0);
  kiln_emu_test::for_each_conv_tap(
      s, [&](std::size_t yi, std::size_t xi, std::size_t wi) { dx[xi] += bf16_value(dy[yi]) * bf16_value(w[wi]); });
  return std::vector<float>(dx.begin(), dx.end());
}

// y in double on BF16-rounded operands (x and w), plus the bias.
std::vector<float> nhwc_exact_forward(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                                      const std::vector<float>& b) {
  const std::size_t hw = static_cast<std::size_t>(s.h * s.w);
  std::vector<double> y(static_cast<std::size_t>(s.n * s.c_out) * hw);
  for (std::size_t q = 0; q < y.size(); ++q) y[q] = b[q / hw % static_cast<std::size_t>(s.c_out)];
  kiln_emu_test::for_each_conv_tap(
      s, [&](std::size_t yi, std::size_t xi, std::size_t wi) { y[yi] += bf16_value(x[xi]) * bf16_value(w[wi]); });
  return std::vector<float>(y.begin(), y.end());
}

void check_nhwc_copy(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, std::uint64_t seed) {
  INFO("N=" << n << " C=" << c << " " << h << "x" << w);
  auto x = uniform(static_cast<std::size_t>(n * c * h * w), seed, -3.0f, 3.0f);
  x[0] = std::bit_cast<float>(0x3f818000u);                    // ties: to even, up (0x3f82) ...
  if (x.size() > 1) x[1] = std::bit_cast<float>(0x3f808000u);  // ... and down (0x3f80)
  const auto want = nhwc_reference(n, c, h * w, x);
  DeviceBuffer<float> d_x(x);
  DeviceBuffer<std::uint16_t> d_h(std::vector<std::uint16_t>(want.size(), 0xffffu));  // padding must be written
  mb::to_nhwc(n, c, h * w, d_x.get(), reinterpret_cast<__nv_bfloat16*>(d_h.get()));
  const auto got = d_h.download();
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < got.size(); ++i) wrong += got[i] != want[i] ? 1 : 0;
  CHECK(wrong == 0);
  const auto cp = static_cast<std::size_t>(kiln::cuda::kernels::mma_conv::channels_padded(c));
  CHECK(got[0] == 0x3f82);
  CHECK(got.size() == static_cast<std::size_t>(n * h * w) * cp);
  if (x.size() > 1 && h * w > 1) CHECK(got[cp] == 0x3f80);
}

// The forward and the input gradient on the NHWC path, under both schedules, on 128 x bn tiles
// (0: the launcher's choice, mma_bf16::block_n).
[[maybe_unused]] void check_nhwc_forward(const ConvShape& s, std::uint64_t seed, int bn = 0) {
  namespace mc = kiln::cuda::kernels::mma_conv;
  INFO("N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w
            << ": forward tile 128x" << (bn ? bn : mb::block_n(s)) << ", dgrad 128x"
            << (bn ? bn : mb::block_n(mc::transposed(s))));
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto b = uniform(static_cast<std::size_t>(s.c_out), seed + 2, -1.0f, 1.0f);
  const auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), seed + 3, -1.0f, 1.0f);
  const auto want = nhwc_exact_forward(s, x, w, b), want_dx = nhwc_exact_dx(s, w, dy);
  std::vector<float> strict(want.size()), strict_dx(x.size()), strict_dw(w.size());
  kiln::cpu::reference::conv2d_forward(s, x.data(), w.data(), b.data(), strict.data());
  kiln::cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), strict_dx.data(), strict_dw.data(), nullptr);
  REQUIRE(mb::supports(s));
  REQUIRE(mb::supports(mc::transposed(s)));
  DeviceBuffer<float> d_x(x), d_w(w), d_b(b), d_y(want.size()), d_dy(dy), d_dx(x.size()),
      work(static_cast<std::size_t>(
          std::max(mb::packed_weight_floats(s) + mb::nhwc_floats(s), mb::dgrad_workspace_floats(s))));
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    d_y.upload(std::vector<float>(want.size(), std::nanf("")));  // every output must be written
    mb::forward(s, d_x.get(), d_w.get(), d_b.get(), d_y.get(), work.get(), nullptr, bn);
    const auto y = d_y.download();
    CHECK(normalised_error(y, want) < 2e-6);
    const double vs_fp32 = normalised_error(y, strict);
    CHECK(vs_fp32 < nhwc_bf16_bound);
    CHECK(vs_fp32 > nhwc_tf32_level);

    d_dx.upload(std::vector<float>(x.size(), std::nanf("")));
    mb::backward_data(s, d_w.get(), d_dy.get(), d_dx.get(), work.get(), nullptr, bn);
    const auto dx = d_dx.download();
    CHECK(normalised_error(dx, want_dx) < 2e-6);
    const double dx_vs_fp32 = normalised_error(dx, strict_dx);
    CHECK(dx_vs_fp32 < nhwc_bf16_bound);
    CHECK(dx_vs_fp32 > nhwc_tf32_level);
  }
}

// The forward with its k steps in `splits` slices (mma_bf16::launch_packed, the tile's last slice
// adding the partials): the same 2e-6 against the exact sums under both schedules, and the counters
// left at zero for the next launch. `stale`: one tile's counter not zero at launch (a deliberate
// bug); returns the worst normalised error.
[[maybe_unused]] double check_nhwc_split(const ConvShape& s, int splits, std::uint64_t seed, unsigned stale = 0,
                                         int bn = 0) {
  if (bn == 0) bn = mb::block_n(s);
  INFO("N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w << ", " << splits
            << " slices of " << kiln::cuda::kernels::mma_conv::k_steps(s) << " k steps, tile 128x" << bn);
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto b = uniform(static_cast<std::size_t>(s.c_out), seed + 2, -1.0f, 1.0f);
  const auto want = nhwc_exact_forward(s, x, w, b);
  DeviceBuffer<float> d_x(x), d_w(w), d_b(b), d_y(want.size()),
      work(static_cast<std::size_t>(mb::packed_weight_floats(s) + mb::nhwc_floats(s))),
      partials(static_cast<std::size_t>(mb::partial_floats(s, splits, bn)));
  std::vector<unsigned> zero(static_cast<std::size_t>(mb::tiles(s, bn)), 0u);
  DeviceBuffer<unsigned> counters(zero);
  mb::forward(s, d_x.get(), d_w.get(), d_b.get(), d_y.get(), work.get());  // packs w and copies x
  const auto* wp = reinterpret_cast<const __nv_bfloat16*>(work.get());
  const auto* xh = reinterpret_cast<const __nv_bfloat16*>(work.get() + mb::packed_weight_floats(s));
  double worst = 0.0;
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    if (stale > 0) {
      auto c = zero;
      c.back() = stale;
      counters.upload(c);
    }
    d_y.upload(std::vector<float>(want.size(), std::nanf("")));
    mb::launch_packed(s, xh, wp, d_b.get(), d_y.get(), nullptr, splits, partials.get(), counters.get(), bn);
    auto y = d_y.download();
    for (auto& v : y) v = std::isnan(v) ? 1e30f : v;  // an unwritten tile counts as wrong
    const double err = normalised_error(y, want);
    worst = std::max(worst, err);
    if (stale == 0) {
      CHECK(err < 2e-6);
      CHECK(counters.download() == zero);
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("conv2d_nhwc_bf16_kernel: NCHW fp32 -> NHWC BF16 bit by bit, ties to even, channels padded with zeros") {
  check_nhwc_copy(2, 3, 5, 7, 11);   // a channel tail (3 of 16), pixel groups spanning images
  check_nhwc_copy(1, 17, 4, 4, 12);  // 32 padded channels: 4 chunks, one warp's chunk group
  check_nhwc_copy(3, 40, 3, 3, 13);  // 48 padded channels: a second chunk group, half used
  check_nhwc_copy(1, 1, 1, 1, 14);   // one pixel, one channel
  CHECK(mb::nhwc_floats({2, 3, 8, 5, 7, 3}) == 2 * 5 * 7 * 16 / 2);
}

TEST_CASE("conv2d_mma_pack_weights_bf16_kernel: BF16 to nearest even, natural channel order, zeros past Cin") {
  const ConvShape s{1, 5, 2, 4, 4, 3};
  CHECK(mb::packed_weight_floats(s) == 2 * 9 * 16 / 2);
  auto w = uniform(static_cast<std::size_t>(2 * 5 * 9), 21, -1.0f, 1.0f);
  w[(1 * 5 + 4) * 9 + 2] = std::bit_cast<float>(0x3f818000u);  // o 1, c 4, tap 2: a tie, to even (0x3f82)
  DeviceBuffer<float> d_w(w), packed(static_cast<std::size_t>(mb::packed_weight_floats(s)));
  KILN_LAUNCH((kiln::cuda::kernels::conv2d_mma_pack_weights_bf16_kernel<3>), dim3(2), dim3(128), 0, nullptr, s,
              d_w.get(), reinterpret_cast<__nv_bfloat16*>(packed.get()));
  const auto p = packed.download();
  std::vector<std::uint16_t> h(p.size() * 2);
  std::memcpy(h.data(), p.data(), h.size() * 2);
  int wrong = 0;
  for (int o = 0; o < 2; ++o)
    for (int t = 0; t < 9; ++t)
      for (int c = 0; c < 16; ++c) {
        const std::uint16_t want = c < 5 ? bf16_bits(w[static_cast<std::size_t>((o * 5 + c) * 9 + t)]) : 0;
        wrong += h[static_cast<std::size_t>((o * 9 + t) * 16 + c)] != want ? 1 : 0;
      }
  CHECK(wrong == 0);
  CHECK(h[(1 * 9 + 2) * 16 + 4] == 0x3f82);
}

namespace {

// Both BF16 packings against their definitions, bit for bit, for any grid and block size (the
// tiles staged through shared memory: channel tails, short row tiles, grid-stride over tiles);
// blocks 0: the launchers' grids (mma_conv::pack_weight_blocks).
template <int K>
int bf16_packing_mismatches(int cin, int cout, unsigned blocks, unsigned threads) {
  constexpr int KK = K * K;
  const ConvShape s{1, cin, cout, 4, 4, K};
  const auto w = uniform(static_cast<std::size_t>(cout * cin * KK), 43, -1.0f, 1.0f);
  namespace mc = kiln::cuda::kernels::mma_conv;
  const int cin_pad = mc::channels_padded(cin), cout_pad = mc::channels_padded(cout);
  DeviceBuffer<std::uint16_t> fwd(static_cast<std::size_t>(cout * KK * cin_pad)),
      dgrad(static_cast<std::size_t>(cin * KK * cout_pad));
  DeviceBuffer<float> d_w(w);
  const dim3 fwd_grid(blocks > 0 ? blocks : mc::pack_weight_blocks<K, false>(s)),
      dgrad_grid(blocks > 0 ? blocks : mc::pack_weight_blocks<K, true>(s));
  KILN_LAUNCH((kiln::cuda::kernels::conv2d_mma_pack_weights_bf16_kernel<K>), fwd_grid, dim3(threads), 0, nullptr, s,
              static_cast<const float*>(d_w.get()), reinterpret_cast<__nv_bfloat16*>(fwd.get()));
  KILN_LAUNCH((kiln::cuda::kernels::conv2d_mma_pack_weights_dgrad_bf16_kernel<K>), dgrad_grid, dim3(threads), 0,
              nullptr, s, static_cast<const float*>(d_w.get()), reinterpret_cast<__nv_bfloat16*>(dgrad.get()));
  const auto f = fwd.download(), d = dgrad.download();
  int wrong = 0;
  for (int o = 0; o < cout; ++o)
    for (int t = 0; t < KK; ++t)
      for (int c = 0; c < cin_pad; ++c) {
        const std::uint16_t want = c < cin ? bf16_bits(w[static_cast<std::size_t>((o * cin + c) * KK + t)]) : 0;
        wrong += f[static_cast<std::size_t>((o * KK + t) * cin_pad + c)] != want ? 1 : 0;
      }
  for (int c = 0; c < cin; ++c)
    for (int t = 0; t < KK; ++t)
      for (int o = 0; o < cout_pad; ++o) {
        const std::uint16_t want =
            o < cout ? bf16_bits(w[static_cast<std::size_t>((o * cin + c) * KK + (KK - 1 - t))]) : 0;
        wrong += d[static_cast<std::size_t>((c * KK + t) * cout_pad + o)] != want ? 1 : 0;
      }
  return wrong;
}

}  // namespace

TEST_CASE("conv2d_mma BF16 packings (forward, dgrad): staged tiles equal the definitions, any grid and block") {
  CHECK(bf16_packing_mismatches<3>(40, 3, 1, 256) == 0);   // Cin 40 (48: a 32 and a 16 chunk), 5 row tiles
  CHECK(bf16_packing_mismatches<3>(20, 40, 3, 128) == 0);  // dgrad row tiles of 8, 8, 4
  CHECK(bf16_packing_mismatches<3>(5, 17, 2, 256) == 0);   // dgrad: all of Cin in a tile (one run of w)
  CHECK(bf16_packing_mismatches<1>(70, 33, 2, 256) == 0);  // K = 1: dgrad row tiles of 64 and 6
  // The launchers' grids, one block per tile
  CHECK(bf16_packing_mismatches<3>(40, 20, 0, kiln::cuda::kernels::mma_conv::pack_threads) == 0);
  CHECK(bf16_packing_mismatches<1>(70, 33, 0, kiln::cuda::kernels::mma_conv::pack_threads) == 0);
}

// Not in OS-thread mode (ThreadSanitizer builds): 64-128 std::threads meet at every mma.
#if !KILN_EMU_THREADS
TEST_CASE(
    "conv2d_mma_bf16_forward_kernel (NHWC BF16 staging), forward and input gradient: U-Net shapes and channel tails") {
  check_nhwc_forward({2, 32, 32, 8, 8, 3}, 1);       // a U-Net level (width 32): the 128x64 tile
  check_nhwc_forward({1, 64, 32, 8, 8, 1}, 2);       // the 1x1 reduce 2C -> C
  check_nhwc_forward({1, 3, 5, 4, 5, 3}, 3);         // Cin 3: one k step per tap, mostly zeros; H*W = 20
  check_nhwc_forward({2, 17, 66, 6, 6, 1}, 4);       // Cin 17: a partial second step; Cout 66: 2 tiles of 128x64
  check_nhwc_forward({2, 17, 66, 6, 6, 1}, 4, 128);  // the 128x128 tile (the launcher's on wide, shallow levels)
  check_nhwc_forward({3, 16, 8, 7, 9, 3}, 5);        // pixel tiles ending inside an image (3 x 63 pixels)
#if !KILN_EMU_ASAN  // the sanitizer build emulates every lane's mma ~10x slower: the small shapes only
  check_nhwc_forward({1, 96, 130, 4, 8, 3}, 6, 128);  // the 128x128 tile, 6 k steps per tap, a Cout tail
#endif
}

TEST_CASE(
    "conv2d_mma_bf16_forward_kernel split-K: slices across taps summed by the tile's last slice, counters reset") {
  namespace mc = kiln::cuda::kernels::mma_conv;
  const ConvShape narrow{2, 32, 32, 8, 8, 3};
  CHECK(mc::k_steps(narrow) == 18);  // 2 steps per tap: 4 slices of 4-5 steps start inside taps
  check_nhwc_split(narrow, 4, 71);
  check_nhwc_split({1, 20, 24, 6, 6, 1}, 2, 72);  // K = 1, Cin 20: 2 steps, one per slice
#if !KILN_EMU_ASAN
  const ConvShape wide{1, 96, 130, 4, 8, 3};
  check_nhwc_split(wide, 5, 73, 0, 128);  // the 128x128 tile: 2 tiles, 54 steps
  check_nhwc_split(wide, 3, 75);          // the launcher's 128x64 tile on a deep level: 3 tiles
#endif
  // The deep levels of UNet<1,2,32,4> at batch 16, 64^2 crops take split-K; the shallow ones not.
  CHECK(mb::splits({16, 256, 256, 4, 4, 3}) > 1);
  CHECK(mb::splits({16, 128, 128, 8, 8, 3}) > 1);
  CHECK(mb::splits({16, 32, 32, 64, 64, 3}) == 1);
}

// A count of `slices` left behind (a launch that stopped early): no slice sees slices - 1, so the
// tile is never written. (A count of 1 would make a slice that is not the last add the partials,
// some perhaps written by then: which ones depends on how the emulator's workers interleave.)
TEST_CASE(
    "conv2d_mma_bf16_forward_kernel split-K: a counter not zero at launch leaves a tile unwritten (deliberate bug)") {
  const double buggy = check_nhwc_split({2, 32, 32, 8, 8, 3}, 4, 74, 4);
  MESSAGE("normalised error with one stale counter: ", buggy);
  CHECK(buggy > 1e-3);
}

TEST_CASE(
    "conv2d_mma_bf16_forward_kernel: the 2^-7 bound catches channels 0 and 8 swapped in the copy (deliberate bug)") {
  const ConvShape s{1, 32, 32, 8, 8, 3};
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 31, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), 32, -1.0f, 1.0f);
  std::vector<float> strict(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w));
  kiln::cpu::reference::conv2d_forward(s, x.data(), w.data(), nullptr, strict.data());
  DeviceBuffer<float> d_x(x), d_w(w), d_y(strict.size()),
      work(static_cast<std::size_t>(mb::packed_weight_floats(s) + mb::nhwc_floats(s)));
  mb::forward(s, d_x.get(), d_w.get(), nullptr, d_y.get(), work.get());
  CHECK(normalised_error(d_y.download(), strict) < nhwc_bf16_bound);
  // The bug: in every pixel's 16 channels, 0 and 8 swapped (a chunk index that ignores the
  // swizzle would mix the chunks like this).
  auto ws = work.download();
  auto* h = reinterpret_cast<std::uint16_t*>(ws.data() + mb::packed_weight_floats(s));
  for (std::int64_t p = 0; p < s.n * s.h * s.w * 2; ++p) std::swap(h[p * 16], h[p * 16 + 8]);
  work.upload(ws);
  const auto* wp = reinterpret_cast<const __nv_bfloat16*>(work.get());
  mb::launch_packed(s, reinterpret_cast<const __nv_bfloat16*>(work.get() + mb::packed_weight_floats(s)), wp, nullptr,
                    d_y.get());
  const double buggy = normalised_error(d_y.download(), strict);
  MESSAGE("normalised error with channels 0 and 8 swapped: ", buggy);
  CHECK(buggy > nhwc_bf16_bound);
}

TEST_CASE(
    "Backend<Cuda>::conv2d_forward under MathMode::bf16 runs the NHWC BF16 kernels when the workspace holds the copy") {
  using B = kiln::Backend<kiln::Cuda>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::bf16);
  const ConvShape s{2, 20, 24, 6, 6, 3};
  CHECK(B::conv2d_forward_workspace_floats(s) ==
        static_cast<std::size_t>(mb::packed_weight_floats(s) + mb::nhwc_floats(s)));
  CHECK(B::conv2d_workspace_floats(s) >= B::conv2d_forward_workspace_floats(s));
  const auto xv = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 41, -2.0f, 2.0f);
  const auto wv = uniform(static_cast<std::size_t>(s.c_out * s.c_in * 9), 42, -1.0f, 1.0f);
  const auto bv = uniform(static_cast<std::size_t>(s.c_out), 43, -1.0f, 1.0f);
  kiln::Tensor<float, kiln::Cuda> x(kiln::Shape::nchw(s.n, s.c_in, s.h, s.w)), w(kiln::Shape{s.c_out, s.c_in, 3, 3}),
      b(kiln::Shape{s.c_out}), y(kiln::Shape::nchw(s.n, s.c_out, s.h, s.w)),
      ws(kiln::Shape{static_cast<std::int64_t>(B::conv2d_forward_workspace_floats(s))});
  x.copy_from_host(xv);
  w.copy_from_host(wv);
  b.copy_from_host(bv);
  auto launched = [&](kiln::Tensor<float, kiln::Cuda>& workspace) {
    kiln_test::record_launches(true);
    B::conv2d_forward(s, x, w, b, y, workspace);
    kiln_test::record_launches(false);
    return kiln_test::launched_kernel_names();
  };
  const auto names = launched(ws);
  CHECK(names.count("conv2d_mma_bf16_forward_kernel<3, 64>") == 1);
  CHECK(names.count("conv2d_nhwc_bf16_kernel<float>") == 1);
  CHECK(normalised_error(y.to_vector(), nhwc_exact_forward(s, xv, wv, bv)) < 2e-6);
  // The input gradient: dy's NHWC copy and the NHWC kernel on the transposed shape (24 -> 20: 128x64).
  CHECK(B::conv2d_workspace_floats(s) >= static_cast<std::size_t>(mb::dgrad_workspace_floats(s)));
  const auto dyv = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), 44, -1.0f, 1.0f);
  kiln::Tensor<float, kiln::Cuda> dy(y.shape()), dx(x.shape()), no_dw, no_db,
      wsb(kiln::Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s))});
  dy.copy_from_host(dyv);
  kiln_test::record_launches(true);
  B::conv2d_backward(s, x, w, dy, dx, no_dw, no_db, wsb);
  kiln_test::record_launches(false);
  const auto backward = kiln_test::launched_kernel_names();
  CHECK(backward.count("conv2d_mma_pack_weights_dgrad_bf16_kernel<3>") == 1);
  CHECK(backward.count("conv2d_mma_bf16_forward_kernel<3, 64>") == 1);
  CHECK(normalised_error(dx.to_vector(), nhwc_exact_dx(s, wv, dyv)) < 2e-6);
}

TEST_CASE(
    "Backend<Cuda>::conv2d_forward under MathMode::bf16 without room for the copy: TF32 mma.sync, then implicit GEMM") {
  using B = kiln::Backend<kiln::Cuda>;
  using Tensor = kiln::Tensor<float, kiln::Cuda>;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::bf16);
  const ConvShape s{2, 20, 24, 12, 12, 3};  // x's copy (4608 floats) outweighs the halved weights
  const auto tf32_packed = kiln::cuda::kernels::mma_conv::packed_weight_floats(s);
  REQUIRE(tf32_packed < static_cast<std::int64_t>(B::conv2d_forward_workspace_floats(s)));
  const auto xv = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 45, -2.0f, 2.0f);
  const auto wv = uniform(static_cast<std::size_t>(s.c_out * s.c_in * 9), 46, -1.0f, 1.0f);
  const auto bv = uniform(static_cast<std::size_t>(s.c_out), 47, -1.0f, 1.0f);
  std::vector<float> strict(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w));
  kiln::cpu::reference::conv2d_forward(s, xv.data(), wv.data(), bv.data(), strict.data());
  Tensor x(kiln::Shape::nchw(s.n, s.c_in, s.h, s.w)), w(kiln::Shape{s.c_out, s.c_in, 3, 3}), b(kiln::Shape{s.c_out}),
      y(kiln::Shape::nchw(s.n, s.c_out, s.h, s.w));
  x.copy_from_host(xv);
  w.copy_from_host(wv);
  b.copy_from_host(bv);
  auto launched = [&](std::int64_t ws_floats) {
    Tensor ws(kiln::Shape{ws_floats});
    y.copy_from_host(std::vector<float>(strict.size(), std::nanf("")));
    kiln_test::record_launches(true);
    B::conv2d_forward(s, x, w, b, y, ws);
    kiln_test::record_launches(false);
    return kiln_test::launched_kernel_names();
  };
  // A workspace planned under TF32 (the TF32 packed weights, no room for the copy): the TF32 mma.sync
  // kernel stands in (the fp32-staged BF16 kernel is retired), at TF32's accuracy.
  const auto tf32 = launched(tf32_packed);
  CHECK(tf32.count("conv2d_mma_forward_kernel<3, 64, false>") == 1);
  CHECK(tf32.count("conv2d_mma_bf16_forward_kernel<3, 64>") == 0);
  CHECK(tf32.count("conv2d_nhwc_bf16_kernel<float>") == 0);
  CHECK(normalised_error(y.to_vector(), strict) < 2e-3);
  // Less than that (the BF16 packed weights only): the TF32 implicit GEMM, as with no workspace.
  const auto igemm = launched(mb::packed_weight_floats(s));
  CHECK(igemm.count("conv2d_igemm_forward_kernel<3>") == 1);
  CHECK(igemm.count("conv2d_mma_forward_kernel<3, 64, false>") == 0);
  CHECK(normalised_error(y.to_vector(), strict) < 2e-3);
  // The planned workspace: the NHWC BF16 kernel.
  const auto planned = launched(static_cast<std::int64_t>(B::conv2d_forward_workspace_floats(s)));
  CHECK(planned.count("conv2d_mma_bf16_forward_kernel<3, 64>") == 1);
  CHECK(normalised_error(y.to_vector(), strict) < nhwc_bf16_bound);
}
#endif
