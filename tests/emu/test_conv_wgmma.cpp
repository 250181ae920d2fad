// The wgmma TF32 forward convolution (kernels/conv2d_wgmma.cuh) on the emulator's warpgroup MMAs
// (kiln/gpu/wgmma.hpp), against the mma.sync forward (conv2d_mma.cuh) on the same packed weights:
// the same products summed in the same k order (per 8-k instruction from the accumulator, the
// emulator's order for both), so the two must agree bit for bit; against the CPU reference in fp32
// at TF32 level. Shapes: the U-Net's levels at small sizes, 3x3 and 1x1, every block tile width,
// channels that are not multiples of 16 or of the tile, pixel tiles across images and past the
// last pixel. A weight changed after the mma.sync run must show (the comparison can fail).
// The wgmma weight gradient (conv2d_mma_wgrad.cuh's conv2d_wgmma_wgrad_kernel and its stream-K
// schedule) likewise against the mma.sync weight gradient on the same tile and splits: bit for bit,
// every place the splits are added (unsplit, the reduction launch, the GEMM's launch, stream-K), and
// a changed dy value shows.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "conv2d_mma.cuh"
#include "conv2d_mma_wgrad.cuh"
#include "conv2d_wgmma.cuh"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/gpu/gpu.hpp"
#include "launch_log.hpp"
#include "normalised_error.hpp"
#include "test_emulator_support.hpp"

namespace {

using kiln::ConvShape;
using kiln_emu_test::DeviceBuffer;
using kiln_emu_test::uniform;
namespace mc = kiln::cuda::kernels::mma_conv;
namespace wc = kiln::cuda::kernels::wgmma_conv;
namespace mw = kiln::cuda::kernels::mma_wgrad;

int differing(const std::vector<float>& a, const std::vector<float>& b) {
  int n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0 ? 1 : 0;
  return n;
}

// The mma.sync forward (128 x 64 tiles) and the wgmma one on rows x bn tiles (rows 128, or 64: the
// short tile), same packing, both in `splits` slices of the k steps (the same slices: the same sums in
// the same order).
[[maybe_unused]] void check_shape(const ConvShape& s, int bn, std::uint64_t seed, bool perturb = false, int splits = 1,
                                  int rows = wc::bm) {  // unused in OS-thread mode
  std::ostringstream name;
  name << "N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w << " tile "
       << rows << "x" << bn << " in " << splits << " slices";
  INFO(name.str());
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto b = uniform(static_cast<std::size_t>(s.c_out), seed + 2, -1.0f, 1.0f);
  const std::size_t ny = static_cast<std::size_t>(s.n * s.c_out * s.h * s.w);
  std::vector<float> strict(ny);
  kiln::cpu::reference::conv2d_forward(s, x.data(), w.data(), b.data(), strict.data());

  const std::size_t floats = static_cast<std::size_t>(
      std::max(mc::workspace_floats(s, splits, 64), mc::workspace_floats(s, splits, bn, rows)));
  DeviceBuffer<float> dx(x), dw(w), db(b), dy(ny), work(floats);
  dy.upload(std::vector<float>(ny, std::nanf("")));
  mc::forward(s, dx.get(), dw.get(), db.get(), dy.get(), work.get(), nullptr, splits, 64);
  const auto mma_sync = dy.download();
  if (perturb) {  // one packed weight of output channel 0 changed: every output of that channel moves
    std::vector<float> packed = work.download();
    packed[1] += 0.5f;
    work.upload(packed);
  }
  if (splits > 1) {  // the counters for this tile width, zeroed by its packing
    mc::pack_weights(s, dw.get(), work.get(), nullptr, splits, bn, rows);
    if (perturb) {
      std::vector<float> packed = work.download();
      packed[1] += 0.5f;
      work.upload(packed);
    }
  }
  dy.upload(std::vector<float>(ny, std::nanf("")));  // every output must be written
  wc::launch_packed(s, dx.get(), work.get(), db.get(), dy.get(), bn, nullptr, splits, rows);
  const auto got = dy.download();
  if (perturb) {
    CHECK(differing(got, mma_sync) > 0);
    return;
  }
  CHECK(differing(got, mma_sync) == 0);
  const double vs_fp32 = kiln_test::normalised_error(got, strict);
  CHECK(vs_fp32 < 2e-3);
  CHECK(vs_fp32 > 1e-5);  // TF32, not strict fp32
}

// Where a weight gradient's splits are added: unsplit (into dw), the reduction's own launch, the
// GEMM's launch (the tile's last split), stream-K's pieces (the tile's last piece), or a cluster of
// the tile's splits on chip (wgmma only: against mma.sync's one-launch sum, the same order), or
// clusters of 2 splits whose sums the reduction launch adds (against mma.sync's reduction launch of
// all the splits: another order, so within rounding, and the same bits from run to run).
enum class Sum { unsplit, reduction_launch, one_launch, stream_k, cluster, clusters_of_two };

// dw from the wgmma weight gradient (mma_wgrad::backward_weight(..., wgmma = true)) against the
// mma.sync one, both on the shape's tile (mma_wgrad::geometry) with the same splits: the same bits
// under both block orders, and TF32-close to the CPU reference; with `perturb`, one dy value changed
// before the wgmma run must show.
[[maybe_unused]] void check_wgrad(const ConvShape& s, Sum sum, int splits, std::uint64_t seed, bool perturb = false) {
  const mw::Geometry g = mw::geometry(s);
  REQUIRE(mw::wgmma_tile(g));
  mw::Splits sp = sum == Sum::stream_k ? mw::stream_k_of(s, g, splits) : mw::splits_of(s, g, splits);
  sp.one_launch = sum == Sum::one_launch || sum == Sum::stream_k;
  mw::Splits reference = sp;  // mma.sync's
  if (sum == Sum::cluster) {
    sp.cluster = splits;
    reference.one_launch = true;
  }
  if (sum == Sum::clusters_of_two) sp.cluster = 2;
  const bool exact = sum != Sum::clusters_of_two;
  INFO("N=", s.n, " ", s.c_in, "->", s.c_out, " K=", s.k, " ", s.h, "x", s.w, ", tile ", g.bm, "x", g.taps, "*", g.ct,
       g.tail ? " (channel tail)" : "", ", ", sp.count, sp.stream_k ? " stream-K blocks" : " splits",
       sp.one_launch ? ", added in the launch" : "", sp.cluster > 1 ? ", added in clusters" : "");
  REQUIRE(sp.count == splits);
  REQUIRE(sp.stream_k == (sum == Sum::stream_k));
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), seed + 1, -1.0f, 1.0f);
  const auto dw0 = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 2, -1.0f, 1.0f);
  std::vector<float> strict = dw0, unused(x.size());
  kiln::cpu::reference::conv2d_backward(s, x.data(), dw0.data(), dy.data(), unused.data(), strict.data(), nullptr);

  const std::vector<unsigned> zeros(static_cast<std::size_t>(mw::tiles(s, g)), 0u);
  CHECK(mw::partial_floats(s, g, sp) <= mw::partial_floats(s, g, reference));
  DeviceBuffer<float> dx(x), ddy(dy), ddw(dw0.size()),
      work(static_cast<std::size_t>(mw::partial_floats(s, g, reference)) + 1);
  DeviceBuffer<unsigned> counters(zeros);
  unsigned* counters_used = sp.one_launch ? counters.get() : nullptr;
  ddw.upload(dw0);
  mw::backward_weight(s, g, reference, dx.get(), ddy.get(), ddw.get(), work.get(), nullptr,
                      reference.one_launch ? counters.get() : nullptr);
  const std::vector<float> mma_sync = ddw.download();
  if (perturb) {
    dy[dy.size() / 2] += 0.5f;
    ddy.upload(dy);
  }
  const std::string kernel = sp.stream_k ? "conv2d_wgmma_wgrad_stream_k_kernel" : "conv2d_wgmma_wgrad_kernel";
  std::vector<float> first;
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    ddw.upload(dw0);
    kiln_test::record_launches(true);
    mw::backward_weight(s, g, sp, dx.get(), ddy.get(), ddw.get(), work.get(), nullptr, counters_used, true);
    const std::set<std::string> launched = kiln_test::launched_kernels();
    kiln_test::record_launches(false);
    CHECK(launched.count(kernel) == 1);
    CHECK(launched.count("conv2d_mma_wgrad_kernel") + launched.count("conv2d_mma_wgrad_stream_k_kernel") == 0);
    CHECK(launched.count("conv2d_mma_wgrad_reduce_kernel") ==
          (sum == Sum::reduction_launch || sum == Sum::clusters_of_two ? 1u : 0u));
    const std::vector<float> got = ddw.download();
    if (perturb) {
      CHECK(differing(got, mma_sync) > 0);
      return;
    }
    if (exact) {
      CHECK(differing(got, mma_sync) == 0);
    } else {
      CHECK(kiln_test::normalised_error(got, mma_sync) < 1e-6);
      if (first.empty()) first = got;
      CHECK(differing(got, first) == 0);  // the other block order: the same sums in the same order
    }
    const double vs_fp32 = kiln_test::normalised_error(got, strict);
    CHECK(vs_fp32 < 2e-3);
    CHECK(vs_fp32 > 1e-6);  // TF32, not strict fp32
    CHECK(counters.download() == zeros);
  }
}

}  // namespace

// OS-thread mode (ThreadSanitizer builds) runs the kernel table's tiny wgmma case instead: a block
// of 256 OS threads per launch made these cases the TSan stage's longest (206 s).
#if !KILN_EMU_THREADS
TEST_CASE("wgmma forward: bit for bit the mma.sync forward, every block tile width") {
  for (int bn : {64, 128, 256}) {
    check_shape({2, 32, 64, 12, 12, 3}, bn, 11);
    check_shape({1, 48, 96, 9, 7, 3}, bn, 12);  // a channel tail (48 = 3 x 16), Cout past a 64-wide tile
  }
  check_shape({2, 16, 40, 8, 8, 1}, 64, 13);      // 1x1, Cout 40 (a partial tile)
  check_shape({3, 64, 128, 10, 11, 3}, 128, 14);  // pixel tiles across images, the last one partial
  check_shape({1, 20, 24, 6, 6, 3}, 256, 15);     // Cin 20: the tap's last step reads [4, 20)
}

TEST_CASE("wgmma forward split-K: bit for bit the mma.sync forward in the same slices") {
  check_shape({2, 64, 96, 8, 8, 3}, 128, 31, false, 3);
  check_shape({1, 48, 200, 6, 6, 3}, 256, 32, false, 4);  // a channel tail, Cout past one tile
  check_shape({1, 32, 64, 6, 6, 1}, 64, 33, false, 2);
  check_shape({2, 64, 96, 8, 8, 3}, 128, 34, true, 3);  // a changed weight shows through the slices too
}

TEST_CASE("wgmma forward on the short 64 x 128 tile: bit for bit the mma.sync forward, split-K too") {
  check_shape({2, 32, 64, 12, 12, 3}, 128, 41, false, 1, wc::short_bm);  // 288 pixels: 5 tiles, the last partial
  check_shape({1, 48, 136, 9, 7, 3}, 128, 42, false, 1, wc::short_bm);   // channel tail, a second column tile
  check_shape({2, 64, 96, 8, 8, 3}, 128, 43, false, 3, wc::short_bm);    // 2 tiles in 3 slices
  check_shape({2, 64, 96, 8, 8, 3}, 128, 44, true, 3, wc::short_bm);     // a changed weight shows
}
#endif

#if !KILN_EMU_THREADS
TEST_CASE("wgmma weight gradient: bit for bit the mma.sync one, wherever the splits are added") {
  const ConvShape square{1, 128, 128, 8, 12, 3};  // 128 x 128 tiles, 6 k steps of 16 pixels
  check_wgrad(square, Sum::unsplit, 1, 51);
  check_wgrad(square, Sum::reduction_launch, 2, 52);
  check_wgrad(square, Sum::one_launch, 3, 53);  // three splits: any other order of the sum shows
  check_wgrad(square, Sum::stream_k, 5, 54);    // 54 k steps on 5 blocks: pieces across tiles
  // a tap pair of 64 channels, Cout 100 of 128 (clamped rows), the ninth tap alone (zeroed rows)
  check_wgrad({1, 64, 100, 8, 8, 3}, Sum::one_launch, 2, 55);
  check_wgrad({2, 64, 72, 4, 8, 3}, Sum::reduction_launch, 4, 56);
  check_wgrad({1, 96, 72, 8, 8, 3}, Sum::one_launch, 2, 57);  // Cin 96 of 128: a channel tail
  check_wgrad({1, 160, 136, 4, 8, 1}, Sum::unsplit, 1, 58);   // 1 x 1; Cin 160: the second column tile shifted
  check_wgrad({1, 160, 200, 4, 8, 3}, Sum::stream_k, 7, 59);  // 2 x 2 tiles per tap, both tails
}

TEST_CASE("wgmma weight gradient in clusters of a tile's splits: bit for bit mma.sync's one-launch sum") {
  check_wgrad({1, 128, 128, 8, 12, 3}, Sum::cluster, 3, 71);
  check_wgrad({1, 64, 100, 8, 8, 3}, Sum::cluster, 2, 72);            // a tap pair, the ninth tap alone, Cout 100
  check_wgrad({1, 96, 72, 8, 8, 3}, Sum::cluster, 4, 73);             // a channel tail, 4 splits of one k step
  check_wgrad({1, 160, 136, 4, 8, 1}, Sum::cluster, 2, 74);           // 1 x 1: 2 x 2 tiles, each its own cluster
  check_wgrad({2, 128, 128, 8, 8, 3}, Sum::cluster, 8, 75);           // the largest portable cluster
  check_wgrad({1, 128, 128, 8, 12, 3}, Sum::cluster, 3, 76, true);    // a changed dy value shows
  check_wgrad({1, 128, 128, 8, 12, 3}, Sum::clusters_of_two, 6, 77);  // 3 clusters per tile: 3 partial sums
  check_wgrad({2, 64, 72, 4, 8, 3}, Sum::clusters_of_two, 4, 78);     // a tap pair, 2 clusters per tile
}

// The wgmma plan (mma_wgrad::wgmma_splits) on the U-Net's 128^2 shapes: down.3.conv1 (18 tiles, 256 k
// steps) moves from 7 splits added by the batched reduction to one cluster of 7 per tile (no
// workspace); down.2.conv2 (9 tiles) keeps its 14 splits as 2 clusters of 7 (2 partial sums to add,
// not 14), down.2.conv1 (5 tap-pair tiles) takes 25 as 5 clusters of 5; the 64 x 64 tiles keep splits().
TEST_CASE("wgmma weight gradient plan: clusters where the model prefers them") {
  const ConvShape deep{16, 128, 256, 16, 16, 3}, level2{16, 128, 128, 32, 32, 3}, pair{16, 64, 128, 32, 32, 3},
      narrow{16, 32, 64, 64, 64, 3};
  const mw::Splits d = mw::wgmma_splits(deep, mw::geometry(deep));
  CHECK(d.cluster == 7);
  CHECK(d.count == 7);
  CHECK(mw::partial_floats(deep, mw::geometry(deep), d) == 0);
  CHECK(mw::splits(deep).cluster == 0);  // (mma.sync's plan: the batched reduction)
  const mw::Splits l = mw::wgmma_splits(level2, mw::geometry(level2));
  CHECK(l.cluster == 7);
  CHECK(l.count == 14);
  CHECK(mw::partial_floats(level2, mw::geometry(level2), l) == 2 * 128 * 128 * 9);
  CHECK(mw::workspace_floats(level2) >= mw::partial_floats(level2, mw::geometry(level2), l));
  const mw::Splits p = mw::wgmma_splits(pair, mw::geometry(pair));
  CHECK(p.cluster == 5);
  CHECK(p.count == 25);
  CHECK(mw::wgmma_splits(narrow, mw::geometry(narrow)).cluster == 0);
  for (int c = 2; c <= 8; ++c)  // the tail grows with the cluster: (C - 1) / C of a 64 KiB tile
    CHECK(mw::cluster_tail_seconds(c, mw::geometry(deep)) > mw::cluster_tail_seconds(c - 1, mw::geometry(deep)));
}

TEST_CASE("wgmma weight gradient: a changed dy value shows, and other tiles are refused") {
  check_wgrad({1, 128, 128, 8, 8, 3}, Sum::one_launch, 2, 61, true);
  DeviceBuffer<float> any(16);
  const ConvShape small{1, 64, 64, 4, 4, 3};  // a 64 x 64 tile: no wgmma variant
  CHECK_FALSE(mw::wgmma_tile(mw::geometry(small)));
  CHECK_THROWS_AS(mw::backward_weight(small, mw::geometry(small), mw::splits_of(small, mw::geometry(small), 1),
                                      any.get(), any.get(), any.get(), any.get(), nullptr, nullptr, true),
                  kiln::gpu::Error);
}
#endif

TEST_CASE("wgmma forward: a changed weight shows, and unsupported shapes are refused") {
#if !KILN_EMU_THREADS
  check_shape({1, 32, 64, 8, 8, 3}, 128, 21, true);
#endif
  DeviceBuffer<float> any(16);
  CHECK_THROWS_AS(wc::launch_packed({1, 8, 16, 4, 4, 3}, any.get(), any.get(), nullptr, any.get(), 64),
                  kiln::gpu::Error);  // Cin < 16
  CHECK_THROWS_AS(wc::launch_packed({1, 16, 16, 4, 4, 3}, any.get(), any.get(), nullptr, any.get(), 96),
                  kiln::gpu::Error);  // no such tile
  CHECK_THROWS_AS(
      wc::launch_packed({1, 16, 16, 4, 4, 3}, any.get(), any.get(), nullptr, any.get(), 64, nullptr, 1, wc::short_bm),
      kiln::gpu::Error);  // the short tile is 128 wide
  CHECK_THROWS_AS(
      wc::launch_packed({1, 16, 16, 4, 4, 1}, any.get(), any.get(), nullptr, any.get(), 128, nullptr, 1, wc::short_bm),
      kiln::gpu::Error);  // ... and 3 x 3
}
