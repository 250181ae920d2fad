// The mma.sync TF32 implicit-GEMM forward convolution (kernels/conv2d_mma.cuh) on the lane-accurate
// emulation of mma.sync / ldmatrix (kiln/gpu/mma.hpp), against
//   * plain loops in double on the operands the tensor cores see (weights rounded to TF32 to
//     nearest by the packing kernel, activations truncated to TF32 by the mma): only the fp32
//     accumulation order may differ, normalised error < 2e-6;
//   * the CPU reference convolution in fp32 (kiln::cpu::reference::conv2d_forward): TF32 level,
//     normalised error < 2e-3, and visibly not strict fp32 (> 1e-5, so the TF32 path really runs).
// Shapes: U-Net levels at small sizes (both block tiles, 3x3 and 1x1), the first layer with one
// input channel, channels that are not multiples of 16 or of the tile, pixel tiles that end
// inside an image or span several, under both thread schedules.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../../bench/split_k_tail_probe.cuh"
#include "conv2d_mma.cuh"
#include "conv2d_mma_bf16.cuh"
#include "conv2d_mma_wgrad.cuh"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/gpu/gpu.hpp"
#include "launch_log.hpp"
#include "normalised_error.hpp"
#include "test_emulator_support.hpp"

namespace {

using kiln::ConvShape;
using kiln_emu_test::DeviceBuffer;
namespace mc = kiln::cuda::kernels::mma_conv;
namespace mw = kiln::cuda::kernels::mma_wgrad;
using kiln_emu_test::uniform;
using kiln_test::normalised_error;

double tf32_truncated(float x) { return std::bit_cast<float>(std::bit_cast<std::uint32_t>(x) & 0xffffe000u); }
double tf32_rounded(float x) { return std::bit_cast<float>(kiln::gpu::mma::float_to_tf32(x)); }

// y in double from the operands the tensor cores multiply.
std::vector<float> tensor_core_reference(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                                         const std::vector<float>* b) {
  const std::int64_t K = s.k, P = K / 2, H = s.h, W = s.w;
  std::vector<float> y(static_cast<std::size_t>(s.n * s.c_out * H * W));
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j) {
          double acc = b ? (*b)[o] : 0.0;
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < K; ++u)
              for (std::int64_t v = 0; v < K; ++v) {
                const std::int64_t ii = i + u - P, jj = j + v - P;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                acc += tf32_truncated(x[((n * s.c_in + c) * H + ii) * W + jj]) *
                       tf32_rounded(w[((o * s.c_in + c) * K + u) * K + v]);
              }
          y[((n * s.c_out + o) * H + i) * W + j] = static_cast<float>(acc);
        }
  return y;
}

// bn, rows: the block tile (0: the plan's, mma_conv::block_n and block_m).
[[maybe_unused]] void check_shape(const ConvShape& s, std::uint64_t seed, bool with_bias = true, int bn = 0,
                                  int rows = 0) {  // unused in OS-thread mode
  std::ostringstream name;
  name << "N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w << " block tile "
       << (bn != 0 ? (rows != 0 ? rows : mc::bm) : mc::block_m(s)) << "x" << (bn != 0 ? bn : mc::block_n(s))
       << (with_bias ? "" : " no bias");
  INFO(name.str());
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto b = uniform(static_cast<std::size_t>(s.c_out), seed + 2, -1.0f, 1.0f);
  const auto want = tensor_core_reference(s, x, w, with_bias ? &b : nullptr);
  std::vector<float> strict(want.size());
  kiln::cpu::reference::conv2d_forward(s, x.data(), w.data(), with_bias ? b.data() : nullptr, strict.data());

  DeviceBuffer<float> dx(x), dw(w), db(b), dy(want.size()),
      packed(static_cast<std::size_t>(mc::packed_weight_floats(s)));
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    dy.upload(std::vector<float>(want.size(), std::nanf("")));  // every output must be written
    mc::forward(s, dx.get(), dw.get(), with_bias ? db.get() : nullptr, dy.get(), packed.get(), nullptr, 1, bn, rows);
    const auto got = dy.download();
    CHECK(normalised_error(got, want) < 2e-6);
    const double vs_fp32 = normalised_error(got, strict);
    CHECK(vs_fp32 < 2e-3);
    CHECK(vs_fp32 > 1e-5);
  }
}

// dx and dw (from dw0) in double on the operands the tensor cores see: dgrad multiplies truncated
// dy by rounded weights, wgrad truncated dy by truncated x.
struct Gradients {
  std::vector<float> dx, dw;
};
Gradients tensor_core_gradients(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                                const std::vector<float>& dy, const std::vector<float>& dw0) {
  const std::int64_t K = s.k, P = K / 2, H = s.h, W = s.w;
  std::vector<double> dx(static_cast<std::size_t>(s.n * s.c_in * H * W), 0.0), dw(dw0.begin(), dw0.end());
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j) {
          const double g = tf32_truncated(dy[((n * s.c_out + o) * H + i) * W + j]);
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < K; ++u)
              for (std::int64_t v = 0; v < K; ++v) {
                const std::int64_t ii = i + u - P, jj = j + v - P;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                const auto xi = static_cast<std::size_t>(((n * s.c_in + c) * H + ii) * W + jj);
                const auto wi = static_cast<std::size_t>(((o * s.c_in + c) * K + u) * K + v);
                dx[xi] += g * tf32_rounded(w[wi]);
                dw[wi] += g * tf32_truncated(x[xi]);
              }
        }
  return {std::vector<float>(dx.begin(), dx.end()), std::vector<float>(dw.begin(), dw.end())};
}

// The input gradient (mma_conv::backward_data: transposed, rotated weights into the forward
// kernel) and the weight gradient (mma_wgrad::backward_weight, split and unsplit), both schedules.
[[maybe_unused]] void check_gradients(const ConvShape& s, std::uint64_t seed) {  // unused in OS-thread mode
  std::ostringstream name;
  name << "N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w
       << " dgrad tile 128x" << mc::block_n(mc::transposed(s)) << ", wgrad tile " << mw::geometry(s).bm << "x"
       << mw::geometry(s).taps << "*" << mw::geometry(s).ct << ", " << mw::splits(s).count << " splits";
  INFO(name.str());
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), seed + 2, -1.0f, 1.0f);
  const auto dw0 = uniform(w.size(), seed + 3, -1.0f, 1.0f);
  const Gradients want = tensor_core_gradients(s, x, w, dy, dw0);
  std::vector<float> strict_dx(x.size()), strict_dw = dw0;
  kiln::cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), strict_dx.data(), strict_dw.data(), nullptr);

  REQUIRE(mw::supports(s));
  DeviceBuffer<float> dx_(x), dw_(w), ddy(dy), ddx(x.size()), ddw(dw0.size()),
      packed(static_cast<std::size_t>(mc::packed_dgrad_weight_floats(s))),
      work(static_cast<std::size_t>(std::max(mw::workspace_floats(s), mw::workspace_floats(s, mw::single_tap(s)))) + 1);
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    ddx.upload(std::vector<float>(x.size(), std::nanf("")));  // every input gradient must be written
    mc::backward_data(s, dw_.get(), ddy.get(), ddx.get(), packed.get());
    const auto got_dx = ddx.download();
    CHECK(normalised_error(got_dx, want.dx) < 2e-6);
    const double dx_vs_fp32 = normalised_error(got_dx, strict_dx);
    CHECK(dx_vs_fp32 < 2e-3);
    CHECK(dx_vs_fp32 > 1e-5);
    for (bool unsplit : {false, true}) {
      INFO("split-K: ", unsplit ? "no (into dw)" : "yes (through the workspace)");
      ddw.upload(dw0);
      mw::backward_weight(s, dx_.get(), ddy.get(), ddw.get(), work.get(), unsplit);
      const auto got_dw = ddw.download();
      CHECK(normalised_error(got_dw, want.dw) < 2e-6);
      const double dw_vs_fp32 = normalised_error(got_dw, strict_dw);
      CHECK(dw_vs_fp32 < 2e-3);
      CHECK(dw_vs_fp32 > 1e-6);
      if (mw::geometry(s).taps == 2) {  // the one-tap tile the pair replaced (the benchmark's comparison row)
        ddw.upload(dw0);
        mw::backward_weight(s, mw::single_tap(s), dx_.get(), ddy.get(), ddw.get(), work.get(), unsplit);
        CHECK(normalised_error(ddw.download(), want.dw) < 2e-6);
      }
    }
  }
}

// The bits of a float vector (NaN-safe equality).
[[maybe_unused]] std::vector<std::uint32_t> bits_of(const std::vector<float>& v) {
  std::vector<std::uint32_t> out(v.size());
  std::transform(v.begin(), v.end(), out.begin(), [](float f) { return std::bit_cast<std::uint32_t>(f); });
  return out;
}

// Random x and dy of shape s, a starting dw0 (seeds seed .. seed + 3), and the dw the tensor cores
// must give from them (tensor_core_gradients).
struct WgradInputs {
  std::vector<float> x, dy, dw0, want;
};
[[maybe_unused]] WgradInputs wgrad_inputs(const ConvShape& s, std::uint64_t seed) {
  WgradInputs in;
  in.x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  in.dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), seed + 2, -1.0f, 1.0f);
  in.dw0 = uniform(w.size(), seed + 3, -1.0f, 1.0f);
  in.want = tensor_core_gradients(s, in.x, w, in.dy, in.dw0).dw;
  return in;
}

// The weight gradient with its `splits` added in the GEMM's launch (mma_wgrad::Splits::one_launch):
// bit for bit the reduction launch's dw under both schedules (the tile's last split, whose own
// partial comes from its registers, is the highest under one and split 0 under the other; with 3 or
// more splits any other order of the sum shows), within the TF32 bound of the reference, no
// reduction launched, the counters left at 0.
[[maybe_unused]] void check_wgrad_one_launch(const ConvShape& s, int splits, std::uint64_t seed) {
  const mw::Geometry g = mw::geometry(s);
  const mw::Splits sp = mw::splits(s, g);
  INFO("N=", s.n, " ", s.c_in, "->", s.c_out, " ", s.h, "x", s.w, ", tile ", g.bm, "x", g.taps, "*", g.ct, ", ",
       sp.count, " splits");
  REQUIRE(sp.count == splits);
  REQUIRE(sp.one_launch);
  const WgradInputs in = wgrad_inputs(s, seed);
  const std::vector<float>&x = in.x, &dy = in.dy, &dw0 = in.dw0, &want = in.want;
  const std::vector<unsigned> zeros(static_cast<std::size_t>(mw::tiles(s, g)), 0u);
  DeviceBuffer<float> dx_(x), ddy(dy), ddw(dw0.size()), work(static_cast<std::size_t>(mw::workspace_floats(s, g)) + 1);
  DeviceBuffer<unsigned> counters(zeros);
  CHECK(mw::workspace_floats(s, g) == splits * mw::tiles(s, g) * mw::tile_floats(g));
  ddw.upload(dw0);
  mw::backward_weight(s, g, dx_.get(), ddy.get(), ddw.get(), work.get());  // no counters: the reduction launch
  const std::vector<float> two_launches = ddw.download();
  CHECK(normalised_error(two_launches, want) < 2e-6);
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    ddw.upload(dw0);
    kiln_test::record_launches(true);
    mw::backward_weight(s, g, dx_.get(), ddy.get(), ddw.get(), work.get(), false, nullptr, counters.get());
    const std::set<std::string> launched = kiln_test::launched_kernels();
    kiln_test::record_launches(false);
    CHECK(launched == std::set<std::string>{"conv2d_mma_wgrad_kernel"});
    const std::vector<float> got = ddw.download();
    CHECK(bits_of(got) == bits_of(two_launches));
    CHECK(normalised_error(got, want) < 2e-6);
    CHECK(counters.download() == zeros);
  }
}

// dw from the weight gradient's stream-K schedule on `blocks` blocks (mma_wgrad::stream_k_of) against
// the reference, with the same bits whichever block of a tile finishes last (the emulator's block
// order forward and reversed), the counters left at 0; `slots`: the most pieces of a tile expected.
[[maybe_unused]] void check_wgrad_stream_k(const ConvShape& s, int blocks, int slots, std::uint64_t seed) {
  const mw::Geometry g = mw::geometry(s);
  const mw::Splits sp = mw::stream_k_of(s, g, blocks);
  INFO("N=", s.n, " ", s.c_in, "->", s.c_out, " ", s.h, "x", s.w, ", K=", s.k, ", tile ", g.bm, "x", g.taps, "*", g.ct,
       ", ", mw::tiles(s, g), " tiles, stream-K on ", sp.count, " blocks of ", sp.steps_per_split, " k steps");
  REQUIRE(sp.stream_k);
  REQUIRE(sp.count == blocks);
  CHECK(sp.slots == slots);
  const WgradInputs in = wgrad_inputs(s, seed);
  const std::vector<float>&x = in.x, &dy = in.dy, &dw0 = in.dw0, &want = in.want;
  const std::vector<unsigned> zeros(static_cast<std::size_t>(mw::tiles(s, g)), 0u);
  DeviceBuffer<float> dx_(x), ddy(dy), ddw(dw0.size()), work(static_cast<std::size_t>(mw::partial_floats(s, g, sp)));
  DeviceBuffer<unsigned> counters(zeros);
  std::vector<std::uint32_t> first_bits;
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    ddw.upload(dw0);
    kiln_test::record_launches(true);
    mw::backward_weight(s, g, sp, dx_.get(), ddy.get(), ddw.get(), work.get(), nullptr, counters.get());
    const std::set<std::string> launched = kiln_test::launched_kernels();
    kiln_test::record_launches(false);
    CHECK(launched == std::set<std::string>{"conv2d_mma_wgrad_stream_k_kernel"});
    const std::vector<float> got = ddw.download();
    CHECK(normalised_error(got, want) < 2e-6);
    if (first_bits.empty())
      first_bits = bits_of(got);
    else
      CHECK(bits_of(got) == first_bits);
    CHECK(counters.download() == zeros);
  }
  // Without counters the grid's split-K plan runs (the workspace has room for it: workspace_floats).
  DeviceBuffer<float> grid_work(static_cast<std::size_t>(mw::workspace_floats(s, g)) + 1);
  ddw.upload(dw0);
  kiln_test::record_launches(true);
  mw::backward_weight(s, g, sp, dx_.get(), ddy.get(), ddw.get(), grid_work.get());
  CHECK(kiln_test::launched_kernels().count("conv2d_mma_wgrad_stream_k_kernel") == 0);
  kiln_test::record_launches(false);
  CHECK(normalised_error(ddw.download(), want) < 2e-6);
}

// y from the split-K partial tiles a forward left in its workspace `ws` (mma_conv::partials_offset
// on: [tile][slice][float4 q * threads + tid], acc[i][j] of thread tid as float4 q = i * 8 + j), the
// slices added in order 0, 1, ... (all but `skip`), then the bias: what the tile's last block must store.
[[maybe_unused]] std::vector<float> from_partials(const ConvShape& s, const std::vector<float>& ws, int splits,
                                                  const float* bias, int bn, int skip = -1) {
  const int threads = 32 * (mc::bm / mc::warp_tile) * (bn / mc::warp_tile);
  const std::int64_t hw_count = s.h * s.w, pixels = s.n * hw_count;
  const std::int64_t gx = (pixels + mc::bm - 1) / mc::bm, gy = (s.c_out + bn - 1) / bn;
  std::vector<float> y(static_cast<std::size_t>(pixels * s.c_out), std::nanf(""));
  for (std::int64_t by = 0; by < gy; ++by)
    for (std::int64_t bx = 0; bx < gx; ++bx)
      for (int tid = 0; tid < threads; ++tid) {
        const int warp = tid / 32, lane = tid % 32, wm = warp % 2, wn = warp / 2, g = lane / 4, t = lane % 4;
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 8; ++j)
            for (int e = 0; e < 4; ++e) {
              const std::int64_t p = bx * mc::bm + wm * 64 + i * 16 + (e / 2) * 8 + g;
              const std::int64_t o = by * bn + wn * 64 + j * 8 + 2 * t + e % 2;
              if (p >= pixels || o >= s.c_out) continue;
              float sum = 0.0f;
              bool first = true;
              for (int sl = 0; sl < splits; ++sl) {
                if (sl == skip) continue;
                const std::int64_t at =
                    mc::partials_offset(s) +
                    (((by * gx + bx) * splits + sl) * threads * 32 + (i * 8 + j) * threads + tid) * 4 + e;
                const float v = ws[static_cast<std::size_t>(at)];
                sum = first ? v : sum + v;
                first = false;
              }
              y[static_cast<std::size_t>(((p / hw_count) * s.c_out + o) * hw_count + p % hw_count)] =
                  sum + (bias != nullptr ? bias[o] : 0.0f);
            }
      }
  return y;
}

// The forward with its k steps in `splits` slices (split-K, reduced in the launch by each tile's
// last slice): y against the tensor-core and fp32 references as check_shape; the same bits under the
// forward, reverse and random schedules and on every run; exactly the partial tiles left in the
// workspace added in slice order plus the bias; and, as deliberate bugs, a slice left out of that
// sum or a tile finalised before its last slice landed (its counter not zeroed) are caught.
// bn: the block tile width (0: the plan's, mma_conv::block_n).
[[maybe_unused]] void check_split(const ConvShape& s, int splits, std::uint64_t seed,
                                  int bn = 0) {  // OS-thread: unused
  if (bn == 0) bn = mc::block_n(s);
  std::ostringstream name;
  name << "N=" << s.n << " " << s.c_in << "->" << s.c_out << " K=" << s.k << " " << s.h << "x" << s.w
       << " block tile 128x" << bn << ", " << mc::tiles(s, bn) << " tiles, " << splits << " slices of "
       << mc::k_steps(s) << " k steps";
  INFO(name.str());
  REQUIRE(splits > 1);
  REQUIRE(splits * mc::stages <= mc::k_steps(s));
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto b = uniform(static_cast<std::size_t>(s.c_out), seed + 2, -1.0f, 1.0f);
  const auto want = tensor_core_reference(s, x, w, &b);
  std::vector<float> strict(want.size());
  kiln::cpu::reference::conv2d_forward(s, x.data(), w.data(), b.data(), strict.data());
  DeviceBuffer<float> dx(x), dw(w), db(b), dy(want.size()),
      work(static_cast<std::size_t>(mc::workspace_floats(s, splits, bn)));
  std::vector<std::uint32_t> first;
  for (auto schedule :
       {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse, kiln::gpu::emu::Schedule::random}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    for (int run = 0; run < 2; ++run) {
      dy.upload(std::vector<float>(want.size(), std::nanf("")));  // every output must be written
      mc::forward(s, dx.get(), dw.get(), db.get(), dy.get(), work.get(), nullptr, splits, bn);
      const auto got = dy.download();
      if (first.empty()) {
        first = bits_of(got);
        CHECK(normalised_error(got, want) < 2e-6);
        const double vs_fp32 = normalised_error(got, strict);
        CHECK(vs_fp32 < 2e-3);
        CHECK(vs_fp32 > 1e-5);
      } else {
        CHECK(bits_of(got) == first);  // deterministic: whichever slice of a tile finishes last
      }
    }
  }
  const auto ws = work.download();
  CHECK(bits_of(from_partials(s, ws, splits, b.data(), bn)) == first);
  // Deliberate bugs: a slice left out (the first or the last) is far off the reference.
  for (const int skip : {0, splits - 1})
    CHECK(normalised_error(from_partials(s, ws, splits, b.data(), bn, skip), want) > 1e-2);
  // ... and counters not zero at launch (left at S by a launch that stopped early): no slice sees
  // S - 1, so no tile is written. (A count of 1 would finalise a tile one slice early, reading a
  // partial its last slice may or may not have written by then: it depends on how the emulator's
  // workers interleave the blocks.)
  auto stale = ws;
  for (std::int64_t c = 0; c < mc::counter_count(s, splits, bn); ++c)
    stale[static_cast<std::size_t>(mc::counters_offset(s, splits, bn) + c)] =
        std::bit_cast<float>(static_cast<unsigned>(splits));
  work.upload(stale);
  dy.upload(std::vector<float>(want.size(), std::nanf("")));
  mc::launch_packed(s, dx.get(), work.get(), db.get(), dy.get(), nullptr, splits, bn);
  CHECK(!(normalised_error(dy.download(), want) < 1e-2));  // NaN: unwritten
}

// The input gradient with split-K (the forward kernel on the transposed shape), against the
// tensor-core reference, bit-identical on a second run.
[[maybe_unused]] void check_split_dgrad(const ConvShape& s, int splits, std::uint64_t seed) {  // OS-thread mode: unused
  const ConvShape t = mc::transposed(s);
  INFO("dgrad N=", s.n, " ", s.c_in, "->", s.c_out, " K=", s.k, " ", s.h, "x", s.w, ", ", splits, " slices");
  REQUIRE(splits * mc::stages <= mc::k_steps(t));
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), seed, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), seed + 1, -1.0f, 1.0f);
  const auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), seed + 2, -1.0f, 1.0f);
  const Gradients want = tensor_core_gradients(s, x, w, dy, std::vector<float>(w.size(), 0.0f));
  std::vector<float> strict_dx(x.size()), strict_dw(w.size(), 0.0f);
  kiln::cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), strict_dx.data(), strict_dw.data(), nullptr);
  DeviceBuffer<float> dw_(w), ddy(dy), ddx(x.size()), work(static_cast<std::size_t>(mc::workspace_floats(t, splits)));
  std::vector<std::uint32_t> first;
  for (int run = 0; run < 2; ++run) {
    ddx.upload(std::vector<float>(x.size(), std::nanf("")));
    mc::backward_data(s, dw_.get(), ddy.get(), ddx.get(), work.get(), nullptr, splits);
    const auto got = ddx.download();
    if (run == 0) {
      first = bits_of(got);
      CHECK(normalised_error(got, want.dx) < 2e-6);
      const double vs_fp32 = normalised_error(got, strict_dx);
      CHECK(vs_fp32 < 2e-3);
      CHECK(vs_fp32 > 1e-5);
    } else {
      CHECK(bits_of(got) == first);
    }
  }
}

}  // namespace

TEST_CASE("conv2d_mma split-K plan: deep U-Net levels split to fill the SMs' warp schedulers, the others not") {
  struct Plan {
    ConvShape s;
    int splits;
  };
  for (const Plan& p : {Plan{{16, 256, 256, 8, 8, 3}, 8},    // level 3: 32 tiles (128x64, 2 warps), 144 k steps
                        Plan{{16, 256, 512, 4, 4, 3}, 8},    // bottleneck conv1: 16 tiles, sqrt(72)
                        Plan{{16, 512, 512, 4, 4, 3}, 12},   // bottleneck conv2: 288 k steps, sqrt(144)
                        Plan{{16, 64, 128, 16, 16, 3}, 4},   // level 2: 64 tiles, 36 k steps
                        Plan{{16, 128, 256, 16, 16, 3}, 2},  // up.1.conv1's input gradient: 64 tiles of 128x128
                        Plan{{16, 512, 256, 8, 8, 1}, 4},    // a 1x1 at 8x8: 32 tiles, 32 k steps, sqrt(16)
                        Plan{{16, 64, 64, 32, 32, 3}, 1},    // level 1: 128 tiles, a block on 97 % of the SMs
                        Plan{{16, 128, 64, 32, 32, 3}, 2},   // 128 tiles of 2 warps (half the schedulers), 72 k steps
                        Plan{{16, 32, 32, 64, 64, 3}, 1},    // level 0: 512 tiles
                        Plan{{16, 64, 128, 32, 32, 3}, 1},   // 128 tiles of 128x128, 4 warps each: 97 %
                        Plan{{16, 1, 32, 64, 64, 3}, 1},     // the first layer
                        Plan{{1, 3, 5, 4, 4, 3}, 2},         // one tile, 9 k steps: floor(sqrt(4.5))
                        Plan{{1, 3, 5, 4, 4, 1}, 1}}) {      // one k step
    INFO("N=", p.s.n, " ", p.s.c_in, "->", p.s.c_out, " K=", p.s.k, " ", p.s.h, "x", p.s.w);
    const int splits = mc::splits(p.s);
    CHECK(splits == p.splits);
    const std::int64_t warps = mc::tiles(p.s) * (mc::block_n(p.s) == 128 ? 4 : 2);  // the unsplit grid's
    CHECK(splits * warps <= std::max<std::int64_t>(mc::fill_warps, warps));
    CHECK(mc::k_steps(p.s) / splits >= (splits > 1 ? mc::stages : 1));
    CHECK(2 * splits * splits <= std::max(mc::k_steps(p.s), 2));  // the last block's reduction tail
    CHECK(mc::workspace_floats(p.s) == (splits > 1
                                            ? (mc::packed_weight_floats(p.s) + 3) / 4 * 4 +
                                                  splits * mc::tiles(p.s) * mc::bm * mc::block_n(p.s) + mc::tiles(p.s)
                                            : mc::packed_weight_floats(p.s)));
  }
  // The rule on 128 x 128 tiles (the benchmarks' comparison rows): the plan before the deep levels
  // took 128 x 64 tiles, 132 / tiles.
  CHECK(mc::splits_for({16, 256, 256, 8, 8, 3}, 128) == 8);   // 16 tiles
  CHECK(mc::splits_for({16, 64, 128, 16, 16, 3}, 128) == 4);  // 32 tiles
  CHECK(mc::splits_for({16, 128, 256, 16, 16, 3}, 128) == mc::splits({16, 128, 256, 16, 16, 3}));
  // A wave of 2-warp tiles splits in two only with 32 k steps a slice or more, and not under BF16.
  CHECK(mc::splits_for({16, 128, 64, 32, 32, 3}, 64, 2, false) == 1);
  CHECK(kiln::cuda::kernels::mma_bf16::splits({16, 128, 64, 32, 32, 3}) == 1);
  CHECK(mc::splits({16, 96, 64, 32, 32, 3}) == 1);  // 54 k steps
}

// Not in OS-thread mode (ThreadSanitizer builds): 64-128 std::threads meet at every mma.
#if !KILN_EMU_THREADS
TEST_CASE("mma.sync TF32 conv forward split-K: deep shapes, tails, deterministic, the slices in order") {
  check_split({2, 64, 128, 8, 8, 3}, 4, 51);  // a deep level: two 128x64 tiles, 36 k steps in 4 slices
  check_split({1, 20, 66, 6, 7, 3}, 3, 52);   // Cin tail, Cout 66 (a 128x64 tile of 2 channels), 42 pixels
  check_split({3, 96, 40, 5, 9, 1}, 2, 53);   // 1x1, 135 pixels: two pixel tiles, the second nearly empty
  check_split({1, 3, 5, 5, 5, 3}, 3, 54);     // NarrowCin: one k step per tap, a slice per kernel row
#if !KILN_EMU_ASAN
  check_split({16, 64, 64, 4, 4, 3}, 9, 55);  // 256 pixels, Cout 64 (128x64): 2 tiles, 9 slices of 4 k steps
#endif
  // The 128 x 128 tile's split path, which the plan (block_n) no longer takes: one tile of 128
  // pixels x 128 channels in 4 slices, and a Cout tail of 66 in 3.
  check_split({2, 64, 128, 8, 8, 3}, 4, 56, 128);
  check_split({1, 20, 66, 6, 7, 3}, 3, 57, 128);
}

TEST_CASE("mma.sync TF32 conv input gradient split-K: deterministic, against the references") {
  check_split_dgrad({1, 128, 64, 8, 8, 3}, 6, 61);  // dy's 64 channels in, dx's 128 out: two 128x64 tiles
  check_split_dgrad({2, 20, 17, 4, 4, 3}, 3, 62);   // Cout 17 (dy's channel tail), Cin 20
}
#endif

// Not in OS-thread mode (ThreadSanitizer builds): 64-128 std::threads meet at every mma.
#if !KILN_EMU_THREADS
TEST_CASE("mma.sync TF32 implicit-GEMM conv forward: U-Net shapes, both block tiles") {
  check_shape({2, 32, 32, 16, 16, 3}, 1);  // a U-Net level (width 32) at 16x16: 4 pixel tiles, 128x64
  check_shape({1, 64, 128, 8, 8, 3}, 2);   // 128 output channels: the 128x128 tile, 4 warps
  check_shape({1, 64, 32, 8, 8, 1}, 3);    // the 1x1 reduce 2C -> C
}

// The tall 256 x 64 tile (conv2d_mma_forward_tall_kernel: 4 warps in M, the stage's second half
// for warps 2 and 3): a partial last tile spanning images, a channel tail, K = 1, two column tiles;
// against the same references and on both schedules. The plan takes it where 128 x 64 tiles run
// unsplit and the busiest SM's work shrinks (mma_conv::tall); deliberate bug: a 128-row kernel
// on the tall grid leaves half the output unwritten.
TEST_CASE("mma.sync TF32 conv forward on the tall 256 x 64 tile") {
  check_shape({1, 16, 32, 16, 17, 3}, 11, true, 64, mc::tall_bm);  // 272 pixels: a second, partial tile
  check_shape({2, 40, 64, 12, 11, 1}, 12, true, 64, mc::tall_bm);  // Cin 40 (a tail), K = 1, across images
  check_shape({1, 32, 70, 9, 9, 3}, 13, false, 64, mc::tall_bm);   // Cout 70: a second column tile of 6
  // The plan (batch 16, UNet<1, 2, 32, 4>): up.2.conv1 at 64 x 64 (128^2 crops: 512 tiles of 128 x 64 in
  // 4 waves, 256 tall ones in 2) and level 0's 32 channels at 128 x 128 take it; the same layer at
  // 32 x 32 (128 tiles: one wave either way, the tall tiles on 64 SMs), deep levels (split) and Cin < 16 not.
  CHECK(mc::tall({16, 128, 64, 64, 64, 3}));
  CHECK(mc::block_m({16, 128, 64, 64, 64, 3}) == mc::tall_bm);
  CHECK(mc::tall({16, 32, 32, 128, 128, 3}));
  CHECK(!mc::tall({16, 128, 64, 32, 32, 3}));
  CHECK(!mc::tall({16, 256, 256, 16, 16, 3}));  // 128 x 128 tiles
  CHECK(!mc::tall({16, 512, 256, 8, 8, 3}));    // 128 x 64, split-K
  CHECK(!mc::tall({16, 1, 32, 128, 128, 3}));   // NarrowCin
  CHECK(mc::splits({16, 128, 64, 64, 64, 3}) == 1);
  CHECK(mc::grid({16, 128, 64, 64, 64, 3}, 1).x == 256);
  CHECK_THROWS_WITH_AS(
      mc::launch_packed({1, 3, 64, 16, 16, 3}, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 64, mc::tall_bm),
      doctest::Contains("Cin >= 16"), kiln::gpu::Error);
  // The deliberate bug: a 128-row kernel on the tall grid covers half of each tile's pixels.
  const ConvShape s{1, 16, 32, 16, 32, 3};  // 512 pixels: 2 tall tiles
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 14, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k), 15, -1.0f, 1.0f);
  const auto want = tensor_core_reference(s, x, w, nullptr);
  DeviceBuffer<float> dx(x), dw(w), dy(std::vector<float>(want.size(), 0.0f)),
      packed(static_cast<std::size_t>(mc::packed_weight_floats(s)));
  mc::forward(s, dx.get(), dw.get(), nullptr, dy.get(), packed.get(), nullptr, 1, 64, mc::tall_bm);
  CHECK(normalised_error(dy.download(), want) < 2e-6);
  dy.upload(std::vector<float>(want.size(), 0.0f));
  KILN_LAUNCH((kiln::cuda::kernels::conv2d_mma_forward_kernel<3, 64, false>), mc::grid(s, 1, 64, mc::tall_bm),
              dim3(mc::Tile<64>::threads), mc::Tile<64>::shared_bytes, nullptr, s, static_cast<const float*>(dx.get()),
              static_cast<const float*>(packed.get()), nullptr, dy.get(), nullptr, nullptr);
  CHECK(normalised_error(dy.download(), want) > 0.5);
}

TEST_CASE("mma.sync TF32 implicit-GEMM conv forward: odd shapes") {
  check_shape({1, 3, 5, 13, 11, 3}, 4);       // channels below one k step, pixel tile past the image
  check_shape({2, 1, 4, 9, 9, 3}, 5, false);  // the first layer: one input channel, no bias
  check_shape({2, 17, 66, 8, 8, 1}, 6);       // Cin 17: a second, partial channel step; Cout 66 > 64
  check_shape({3, 20, 130, 5, 7, 3}, 7);      // Cout 130: two 128-wide tiles, the second nearly empty
  check_shape({2, 16, 16, 12, 11, 3}, 8);     // 264 pixels: a tile spans two images, the last is partial
}

// Channel tails with Cin >= 16: the last step of each tap reads channels [Cin - 16, Cin) and the
// weights of the channels the step before already covered are packed as zeros (mma_conv::packed_channel).
TEST_CASE("mma.sync TF32 conv forward: channel tails read [Cin - 16, Cin) in the last step of each tap") {
  check_shape({1, 17, 24, 6, 5, 3}, 9);   // 15 of the last step's 16 channels overlap the first step
  check_shape({1, 17, 24, 6, 5, 1}, 10);  // the same, 1x1
  check_shape({2, 40, 20, 5, 6, 3}, 11);  // 8 overlap
  check_shape({1, 40, 72, 4, 4, 1}, 12);  // 8 overlap, the 128x128 tile
#if !KILN_EMU_ASAN
  check_shape({1, 100, 40, 4, 5, 3}, 13);  // 12 overlap, 7 steps per tap
  check_shape({1, 100, 80, 4, 4, 1}, 14);  // 12 overlap, the 128x128 tile
#endif
}

TEST_CASE("mma.sync TF32 conv gradients: channel tails of 17, 40 and 100 (dgrad: Cout; wgrad: Cin)") {
  check_gradients({1, 17, 40, 4, 4, 3}, 31);  // dgrad reads 40 channels (8 overlap), wgrad Cin 17 of 64
  check_gradients({2, 40, 17, 4, 4, 1}, 32);  // dgrad reads 17 (15 overlap), wgrad Cin 40 of 64
#if !KILN_EMU_ASAN
  check_gradients({1, 100, 70, 4, 4, 3}, 33);  // wgrad 128x128 with Cin 100 of 128; dgrad reads 70 (10 overlap)
  check_gradients({1, 24, 100, 4, 4, 1}, 34);  // dgrad reads 100 (12 overlap), 128x64
  check_gradients({1, 100, 20, 4, 4, 3}, 35);  // wgrad 64x64, Cin 100: the second column tile shifted to [36, 100)
#endif
}

TEST_CASE("mma.sync TF32 conv gradients: U-Net shapes") {
  check_gradients({1, 64, 32, 8, 8, 1}, 23);  // the 1x1 reduce 2C -> C
#if !KILN_EMU_ASAN  // the sanitizer build emulates every lane's mma ~10x slower: the small shapes only
  check_gradients({2, 32, 32, 16, 16, 3}, 21);  // a U-Net level at 16x16: dgrad 128x64, wgrad 64x64, split
  check_gradients({1, 96, 128, 8, 8, 3}, 22);   // 128 channels: dgrad 128x128 tile, wgrad 128x128 (Cin tail)
#endif
}

TEST_CASE("mma.sync TF32 weight gradient: tap pairs where a side has 64 channels") {
  check_gradients({1, 64, 128, 4, 4, 3}, 41);   // 128 x 2*64, 5 tap blocks (the last one tap)
  check_gradients({2, 64, 128, 8, 16, 3}, 42);  // 128 x 2*64, split
#if !KILN_EMU_ASAN
  check_gradients({1, 200, 40, 4, 4, 3},
                  43);  // 64 x 2*128: Cout 40 of 64, Cin 200: the second column tile at [72, 200)
  check_gradients({2, 64, 100, 6, 6, 3}, 44);  // 128 x 2*64, Cout 100 of 128, H*W = 36
  check_gradients({2, 128, 64, 8, 8, 3}, 45);  // 64 x 2*128, up.2.conv1's channels
#endif
}

TEST_CASE("split-K tail probe (kiln_bench_gpu's L2 read rate): each block sums its tile's slices as their last") {
  namespace kb = kiln::bench;
  const int tiles = 3, slices = 4;
  std::vector<float> partials(static_cast<std::size_t>(kb::tail_probe_floats(tiles, slices)));
  for (std::size_t q = 0; q < partials.size(); ++q)  // slot s of tile t: t + 10 s (slot 0 the block's own)
    partials[q] =
        static_cast<float>(q / kb::tail_probe_tile_floats / slices + 10 * (q / kb::tail_probe_tile_floats % slices));
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule order(schedule);
    DeviceBuffer<float> dp(partials), out(static_cast<std::size_t>(tiles * kb::tail_probe_tile_floats));
    DeviceBuffer<unsigned> counters(std::vector<unsigned>(tiles, 7u));  // whatever a launch finds
    KILN_LAUNCH(kb::split_k_tail_probe_kernel, dim3(tiles), dim3(kb::tail_probe_threads), kb::tail_probe_shared_bytes,
                nullptr, dp.get(), counters.get(), slices, 0.5f, out.get());
    const std::vector<float> sums = out.download();
    for (int t = 0; t < tiles; ++t) {  // 0.5 + the slots 1..3 of tile t: 3 t + 60
      const auto first = sums.begin() + t * kb::tail_probe_tile_floats;
      CHECK(std::all_of(first, first + kb::tail_probe_tile_floats,
                        [&](float v) { return v == 0.5f + static_cast<float>(3 * t + 60); }));
    }
    CHECK(counters.download() == std::vector<unsigned>(tiles, 0u));  // left for the next launch
    const std::vector<float> after = dp.download();                  // slot 0: the block's own partial
    CHECK(after[0] == 0.5f);
    CHECK(after[static_cast<std::size_t>(kb::tail_probe_tile_floats)] == 10.0f);  // slot 1 untouched
  }
}

TEST_CASE("mma.sync TF32 weight gradient in a split count of the caller's (the plan's comparison rows)") {
  const ConvShape s{1, 96, 72, 8, 16, 3};  // 128 x 128 tile, 8 k steps
  const mw::Geometry g = mw::geometry(s);
  const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 61, -2.0f, 2.0f);
  const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * 9), 62, -1.0f, 1.0f);
  const auto dy = uniform(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w), 63, -1.0f, 1.0f);
  const auto dw0 = uniform(w.size(), 64, -1.0f, 1.0f);
  const std::vector<float> want = tensor_core_gradients(s, x, w, dy, dw0).dw;
  for (const int n : {1, 3, 8}) {
    const mw::Splits sp = mw::splits_of(s, g, n);
    INFO(n, " splits asked, ", sp.count, " of ", sp.steps_per_split, " k steps");
    CHECK(sp.count == n);
    for (const bool one_launch : {false, true}) {
      DeviceBuffer<float> dx_(x), ddy(dy), ddw(dw0), work(static_cast<std::size_t>(mw::partial_floats(s, g, sp)) + 1);
      DeviceBuffer<unsigned> counters(std::vector<unsigned>(static_cast<std::size_t>(mw::tiles(s, g)), 0u));
      mw::backward_weight(s, g, sp, dx_.get(), ddy.get(), ddw.get(), work.get(), nullptr,
                          one_launch ? counters.get() : nullptr);
      CHECK(normalised_error(ddw.download(), want) < 2e-6);
    }
  }
  // The plan before the busiest-SM model, one block past a whole wave (kiln_bench_gpu's comparison).
  CHECK(mw::past_a_wave({16, 128, 128, 16, 16, 3}, mw::geometry({16, 128, 128, 16, 16, 3})).count == 15);  // 135
  CHECK(mw::past_a_wave({16, 32, 32, 64, 64, 3}, mw::geometry({16, 32, 32, 64, 64, 3})).count == 59);      // 531
  CHECK(mw::past_a_wave({16, 512, 512, 8, 8, 3}, mw::geometry({16, 512, 512, 8, 8, 3})).count == 1);       // 144
  CHECK(mw::past_a_wave({16, 512, 256, 16, 16, 3}, mw::geometry({16, 512, 256, 16, 16, 3})).count == 2);   // 144
}

TEST_CASE("mma.sync TF32 weight gradient: few splits added in the GEMM's launch, the same bits as the reduction's") {
  check_wgrad_one_launch({1, 64, 100, 16, 32, 3}, 3, 46);  // 128 x 2*64, Cout 100 of 128, 3 splits
#if !KILN_EMU_ASAN  // ~9 s each under the sanitizers: the 3-split shape (the order of the sum) only
  check_wgrad_one_launch({1, 96, 72, 16, 16, 3}, 2, 47);   // 128 x 128, Cin 96 of 128 (channel tail)
  check_wgrad_one_launch({1, 136, 40, 16, 16, 3}, 2, 48);  // 64 x 2*128 (60 KiB), Cin 136: second column tile shifted
#endif
}

TEST_CASE("mma.sync TF32 weight gradient, stream-K: pieces across tiles, added in k order by the tile's last") {
  // 128 x 128, Cin 96 (channel tail), 9 tiles of 16 k steps: 15 blocks of 10 (a tile in 3 pieces).
  check_wgrad_stream_k({1, 96, 72, 16, 16, 3}, 15, 3, 81);
#if !KILN_EMU_ASAN  // ~10 s each under the sanitizers: the three-piece shape only
  check_wgrad_stream_k({1, 96, 72, 16, 16, 3}, 5, 2, 82);    // 29 k steps: whole tiles in a block between pieces
  check_wgrad_stream_k({1, 160, 200, 8, 16, 3}, 13, 2, 83);  // 2 x 2 tiles per tap, the second column shifted
  check_wgrad_stream_k({2, 192, 160, 16, 16, 1}, 5, 2, 85);  // 1 x 1, 128 x 128, Cout and Cin tails
#endif
}

TEST_CASE("mma.sync TF32 conv gradients: odd shapes") {
  check_gradients({1, 3, 5, 4, 5, 3}, 24);    // channels below one k step, H*W = 20: a partial last step
  check_gradients({3, 17, 6, 2, 2, 3}, 25);   // 2x2 images: 4 images per k step, every tap mostly padding
  check_gradients({2, 20, 66, 6, 6, 1}, 26);  // Cout 66: Cin and Cout tails, 1x1, H*W = 36
#if !KILN_EMU_ASAN
  check_gradients({2, 130, 70, 4, 8, 3}, 27);  // Cin 130 > 128: two wgrad tiles, dgrad Cin = output tail
#endif
}
#endif

TEST_CASE("conv2d_mma: packed weights are tap-major, zero-padded to 16 channels, TF32-rounded") {
  const ConvShape s{1, 3, 2, 4, 4, 3};
  CHECK(mc::channels_padded(3) == 16);
  CHECK(mc::channels_padded(32) == 32);
  CHECK(mc::packed_weight_floats(s) == 2 * 9 * 16);
  CHECK(mc::supports(s));
  CHECK(!mc::supports({1, 3, 2, 4, 4, 5}));
  CHECK(mc::block_n({1, 3, 64, 4, 4, 3}) == 64);
  CHECK(mc::block_n({16, 32, 65, 32, 32, 3}) == 128);    // 128 tiles of 128 x 128
  CHECK(mc::block_n({16, 128, 256, 16, 16, 3}) == 128);  // 64: more than a quarter of the SMs
  CHECK(mc::block_n({16, 64, 128, 16, 16, 3}) == 64);    // level 2: 32
  CHECK(mc::block_n({16, 256, 256, 8, 8, 3}) == 64);     // level 3: 16
  CHECK(mc::wide_cout({1, 3, 65, 4, 4, 3}));             // the BF16 kernels' 128 x 128 tile
  auto w = uniform(54, 11, -1.0f, 1.0f);
  w[1 * 9 + 4] = std::bit_cast<float>(0x3f801000u);  // o 0, c 1, tap 4: a tie, rounds away from zero
  DeviceBuffer<float> dw(w), packed(2 * 9 * 16);
  KILN_LAUNCH(kiln::cuda::kernels::conv2d_mma_pack_weights_kernel<3>, dim3(2), dim3(128), 0, nullptr, s, dw.get(),
              packed.get(), nullptr, 0);
  const auto p = packed.download();
  int wrong = 0;
  for (int o = 0; o < 2; ++o)
    for (int t = 0; t < 9; ++t)
      for (int c = 0; c < 16; ++c) {
        const float want = c < 3 ? static_cast<float>(tf32_rounded(w[(o * 3 + c) * 9 + t])) : 0.0f;
        wrong += p[(o * 9 + t) * 16 + c] != want ? 1 : 0;
      }
  CHECK(wrong == 0);
  CHECK(std::bit_cast<std::uint32_t>(p[(0 * 9 + 4) * 16 + 1]) == 0x3f802000u);
  CHECK_THROWS_WITH_AS(mc::forward({1, 3, 2, 4, 4, 5}, nullptr, nullptr, nullptr, nullptr, nullptr),
                       doctest::Contains("K must be 1 or 3"), kiln::gpu::Error);
}

TEST_CASE("conv2d_mma: a channel tail's last step is packed as [Cin - 16, Cin), the overlap with zeros") {
  CHECK(mc::packed_channel(0, 3) == 0);
  CHECK(mc::packed_channel(2, 3) == 2);
  CHECK(mc::packed_channel(3, 3) == -1);  // Cin < 16: one step, channel c below Cin
  CHECK(mc::packed_channel(15, 17) == 15);
  CHECK(mc::packed_channel(16, 17) == -1);  // the last step reads channel 1 there: the first step had it
  CHECK(mc::packed_channel(30, 17) == -1);
  CHECK(mc::packed_channel(31, 17) == 16);  // ... and channel 16 at its last position, the only new one
  CHECK(mc::packed_channel(39, 40) == -1);
  CHECK(mc::packed_channel(40, 40) == 32);
  CHECK(mc::packed_channel(47, 40) == 39);
  for (int c = 0; c < 48; ++c) CHECK(mc::packed_channel(c, 48) == c);  // no tail: the natural order
  CHECK(mc::step_channel(0, 40) == 0);
  CHECK(mc::step_channel(16, 40) == 16);
  CHECK(mc::step_channel(32, 40) == 24);
  for (const int cin : {17, 40, 100}) {  // every channel exactly once per tap
    std::vector<int> seen(static_cast<std::size_t>(cin), 0);
    for (int c = 0; c < mc::channels_padded(cin); ++c)
      if (mc::packed_channel(c, cin) >= 0) ++seen[static_cast<std::size_t>(mc::packed_channel(c, cin))];
    CHECK(std::count(seen.begin(), seen.end(), 1) == cin);
  }
  // The kernel's packing of Cin 17 (K = 3) agrees, TF32-rounded.
  const ConvShape s{1, 17, 2, 4, 4, 3};
  const auto w = uniform(static_cast<std::size_t>(2 * 17 * 9), 12, -1.0f, 1.0f);
  DeviceBuffer<float> dw(w), packed(static_cast<std::size_t>(mc::packed_weight_floats(s)));
  KILN_LAUNCH(kiln::cuda::kernels::conv2d_mma_pack_weights_kernel<3>, dim3(2), dim3(128), 0, nullptr, s, dw.get(),
              packed.get(), nullptr, 0);
  const auto p = packed.download();
  int wrong = 0;
  for (int o = 0; o < 2; ++o)
    for (int t = 0; t < 9; ++t)
      for (int c = 0; c < 32; ++c) {
        const int ch = mc::packed_channel(c, 17);
        const float want =
            ch >= 0 ? static_cast<float>(tf32_rounded(w[static_cast<std::size_t>((o * 17 + ch) * 9 + t)])) : 0.0f;
        wrong += p[static_cast<std::size_t>((o * 9 + t) * 32 + c)] != want ? 1 : 0;
      }
  CHECK(wrong == 0);
}

#if !KILN_EMU_THREADS
TEST_CASE("conv2d_mma channel tails: the overlap must weigh zero, and the packing match the reads (deliberate bugs)") {
  for (const ConvShape s : {ConvShape{1, 17, 8, 6, 5, 3}, ConvShape{1, 40, 8, 4, 4, 1}}) {
    INFO("Cin ", s.c_in, " K=", s.k);
    const int cin = static_cast<int>(s.c_in), cin_pad = mc::channels_padded(s.c_in), kk = static_cast<int>(s.k * s.k);
    const auto x = uniform(static_cast<std::size_t>(s.n * s.c_in * s.h * s.w), 61, -2.0f, 2.0f);
    const auto w = uniform(static_cast<std::size_t>(s.c_out * s.c_in * kk), 62, -1.0f, 1.0f);
    std::vector<float> strict(static_cast<std::size_t>(s.n * s.c_out * s.h * s.w));
    kiln::cpu::reference::conv2d_forward(s, x.data(), w.data(), nullptr, strict.data());
    DeviceBuffer<float> d_x(x), d_w(w), d_y(strict.size()),
        packed(static_cast<std::size_t>(mc::packed_weight_floats(s)));
    mc::forward(s, d_x.get(), d_w.get(), nullptr, d_y.get(), packed.get());
    CHECK(normalised_error(d_y.download(), strict) < 2e-3);
    const auto good = packed.download();
    auto run_with = [&](const std::vector<float>& wp) {
      packed.upload(wp);
      mc::launch_packed(s, d_x.get(), packed.get(), nullptr, d_y.get(), nullptr);
      return normalised_error(d_y.download(), strict);
    };
    // Bug 1: the last step's overlap keeps its real weights (the channels are counted twice).
    auto twice = good;
    // Bug 2: the natural order (channel c at position c, zeros past Cin), as if the kernel still read
    // [cin_pad - 16, cin_pad) in the last step.
    auto natural = good;
    for (int o = 0; o < s.c_out; ++o)
      for (int t = 0; t < kk; ++t)
        for (int c = 0; c < cin_pad; ++c) {
          const auto i = static_cast<std::size_t>((o * kk + t) * cin_pad + c);
          const auto weight = [&](int ch) {
            return static_cast<float>(tf32_rounded(w[static_cast<std::size_t>((o * cin + ch) * kk + t)]));
          };
          const int last = cin_pad - 16, read = c < last ? c : cin - 16 + (c - last);
          twice[i] = weight(read);
          natural[i] = c < cin ? weight(c) : 0.0f;
        }
    const double counted_twice = run_with(twice), natural_order = run_with(natural);
    MESSAGE("Cin ", s.c_in, ": normalised error with the overlap weighted ", counted_twice, ", with the natural order ",
            natural_order);
    CHECK(counted_twice > 0.1);
    CHECK(natural_order > 0.1);
  }
}
#endif

TEST_CASE("conv2d_mma_wgrad: shapes taken, split-K plan, dgrad packing size") {
  CHECK(mw::supports({2, 3, 5, 4, 5, 3}));   // H*W = 20
  CHECK(!mw::supports({2, 3, 5, 5, 7, 3}));  // H*W = 35: dy's 4-pixel chunks would straddle images
  CHECK(!mw::supports({2, 3, 5, 4, 4, 5}));  // K = 5
  CHECK(mw::block_tile({1, 65, 65, 4, 4, 3}) == 128);
  CHECK(mw::block_tile({1, 64, 256, 4, 4, 3}) == 64);
  // Tap pairs (K = 3) where a side has 64 channels; one tap otherwise.
  CHECK(mw::geometry({1, 64, 128, 4, 4, 3}) == mw::Geometry{128, 64, 2, false});  // down.2.conv1
  CHECK(mw::geometry({1, 128, 64, 4, 4, 3}) == mw::Geometry{64, 128, 2, false});  // up.2.conv1
  CHECK(mw::geometry({1, 64, 64, 4, 4, 3}) == mw::Geometry{64, 64, 1, false});    // 64 both ways: one tap
  CHECK(mw::geometry({1, 128, 32, 4, 4, 3}) == mw::Geometry{64, 128, 2, false});  // Cout 32: rows clamped
  CHECK(mw::geometry({1, 100, 20, 4, 4, 3}) == mw::Geometry{64, 64, 1, false});   // Cin 65..127: one tap
  CHECK(mw::geometry({1, 32, 64, 4, 4, 3}) == mw::Geometry{64, 64, 1, true});     // Cin below 64
  CHECK(mw::geometry({1, 64, 128, 4, 4, 1}) == mw::Geometry{64, 64, 1, false});   // 1 x 1: one tap
  CHECK(mw::geometry({1, 128, 256, 4, 4, 3}) == mw::Geometry{128, 128, 1, false});
  CHECK(mw::single_tap({1, 64, 128, 4, 4, 3}) == mw::Geometry{64, 64, 1, false});  // the BF16 kernel's
  CHECK(mw::grid({1, 64, 128, 4, 4, 3}, mw::geometry({1, 64, 128, 4, 4, 3}), 3).y == 5);
  CHECK(mw::grid({1, 200, 40, 4, 4, 3}, mw::geometry({1, 200, 40, 4, 4, 3}), 1).x == 2);
  CHECK_THROWS_WITH_AS(
      mw::backward_weight({1, 64, 128, 4, 4, 1}, mw::Geometry{128, 64, 2, false}, nullptr, nullptr, nullptr, nullptr),
      doctest::Contains("tap pair"), kiln::gpu::Error);  // a pair for a 1 x 1
  CHECK_THROWS_WITH_AS(
      mw::backward_weight({1, 64, 128, 4, 4, 3}, mw::Geometry{64, 128, 2, false}, nullptr, nullptr, nullptr, nullptr),
      doctest::Contains("tap pair"), kiln::gpu::Error);  // Cin below the pair's 128
  CHECK(mc::packed_dgrad_weight_floats({1, 3, 5, 4, 4, 3}) == 3 * 9 * 16);
  for (const ConvShape s : {ConvShape{16, 32, 32, 64, 64, 3}, ConvShape{16, 256, 512, 4, 4, 3},
                            ConvShape{1, 3, 5, 4, 4, 1}, ConvShape{3, 17, 6, 2, 2, 3}}) {
    const mw::Splits sp = mw::splits(s);
    const std::int64_t steps = (s.n * s.h * s.w + mw::bk - 1) / mw::bk;
    INFO("N=", s.n, " ", s.c_in, "->", s.c_out, " ", s.h, "x", s.w, ": ", sp.count, " splits of ", sp.steps_per_split);
    CHECK(sp.count >= 1);
    CHECK(std::int64_t{sp.count} * sp.steps_per_split >= steps);     // every step in a split
    CHECK(std::int64_t{sp.count - 1} * sp.steps_per_split < steps);  // no empty split
    const std::int64_t partials = sp.one_launch
                                      ? sp.count * mw::tiles(s, mw::geometry(s)) * mw::tile_floats(mw::geometry(s))
                                      : sp.count * s.c_out * s.c_in * s.k * s.k;
    CHECK(mw::workspace_floats(s) == (sp.count > 1 ? partials : 0));
  }
  // One-warp 64 x 64 tiles: the most splits that give each of 132 x 4 warp schedulers at most one
  // warp (a block more puts two warps on a scheduler: a second wave for the whole launch). Four-warp
  // tiles (128 x 128, the tap pairs 128 x 2*64 and 64 x 2*128): the count the H100 model says is
  // fastest, none where the unsplit grid fills half the schedulers and no split pays (U-Net shapes,
  // batch 16; the 8-k-steps cap binds at 64^2 crops' deep levels).
  // Where the splits are added: in the GEMM's launch (one_launch) where the tile's last split reads
  // its few partial tiles faster than the reduction launch reads them all (four-warp tiles only).
  // Those are the grid's plan (split_k); the plan (splits) runs stream-K instead where the model says
  // it is faster (stream_k: its blocks; 0 where it keeps the grid's).
  struct Plan {
    ConvShape s;
    int splits;
    bool one_launch;
    int stream_k = 0;
  };
  for (const Plan& p : {Plan{{16, 32, 32, 64, 64, 3}, 58, false},        // 9 one-warp blocks: 522 warps (59: 531)
                        Plan{{16, 128, 128, 16, 16, 3}, 14, false},      // 9 four-warp blocks: 126 (15: 135)
                        Plan{{16, 64, 128, 16, 16, 3}, 22, false},       // 5 four-warp tap pairs: 110 (26: 130)
                        Plan{{16, 128, 64, 32, 32, 3}, 26, false},       // 5 four-warp tap pairs (64 x 2*128)
                        Plan{{16, 64, 64, 32, 32, 3}, 57, false},        // 9 one-warp blocks: 58, 18 k steps per split
                        Plan{{16, 128, 256, 8, 8, 3}, 5, false},         // 18 blocks, partial sums DRAM-bound: 90
                        Plan{{16, 256, 256, 8, 8, 3}, 3, true},          // 36 blocks: 108 (4: 144), 3 tiles' tail
                        Plan{{16, 512, 256, 8, 8, 3}, 3, true, 132},     // 72 blocks: up.0.conv1 at 64^2, 216
                        Plan{{16, 512, 256, 16, 16, 3}, 7, true, 132},   // ... at 128^2: 504 (2: 144, no faster than 1)
                        Plan{{16, 256, 512, 4, 4, 3}, 2, true},          // 72 blocks, 16 k steps: pays in one launch
                        Plan{{16, 256, 512, 8, 8, 3}, 3, true, 132},     // ... 64 k steps at 128^2 crops
                        Plan{{16, 512, 512, 4, 4, 3}, 1, false},         // 144 blocks, 16 k steps: DRAM-bound split
                        Plan{{16, 512, 512, 8, 8, 3}, 4, true, 132},     // 144 blocks, 64 k steps: 576, 5 per SM
                        Plan{{16, 256, 256, 16, 16, 3}, 7, true, 132},   // 36 blocks at 128^2 crops: 252 (3: 108)
                        Plan{{16, 256, 256, 32, 32, 3}, 11, true, 132},  // ... at 256^2: 396, 3 per SM
                        Plan{{16, 512, 512, 16, 16, 3}, 7, true, 132},   // 144 blocks at 256^2 crops
                        Plan{{2, 64, 32, 16, 16, 3}, 4, false}}) {       // one-warp 64 x 64, 4 splits: never
    INFO(p.s.c_in, "->", p.s.c_out, " ", p.s.h, "x", p.s.w);
    const mw::Geometry g = mw::geometry(p.s);
    CHECK(mw::split_k(p.s, g).count == p.splits);
    CHECK(mw::split_k(p.s, g).one_launch == p.one_launch);
    const mw::Splits plan = mw::splits(p.s);
    CHECK(plan.stream_k == (p.stream_k > 0));
    CHECK(plan.count == (p.stream_k > 0 ? p.stream_k : p.splits));
  }
  // The model behind the half-full case: up.0.conv1 at 128^2 crops (256 k steps), 72 tiles on 132 SMs: 2 splits
  // make 144 blocks, a second wave on 12 SMs that costs as much as the first, 7 make 504 (4 per SM) and gain a
  // third despite the tail; bottleneck.conv1 at 64^2 crops (16 k steps) gains only with the splits added in the
  // GEMM's launch (two partial tiles' tail): their own launch, reading 4 x 4.7 MB, would lose.
  const std::int64_t up0 = 512 * 256 * 9, bottleneck = 256 * 512 * 9;
  const mw::Geometry tile{128, 128, 1, false};
  CHECK(mw::predicted_seconds(72, 256, 2, up0) > mw::predicted_seconds(72, 256, 1, up0));
  CHECK(mw::predicted_seconds(72, 259, 7, up0) < 0.7 * mw::predicted_seconds(72, 256, 1, up0));
  CHECK(mw::predicted_seconds(72, 16, 2, bottleneck) < mw::predicted_seconds(72, 16, 1, bottleneck));
  CHECK(mw::predicted_seconds(72, 16, 2, bottleneck) - mw::tail_seconds(2, tile) +
            mw::reduction_seconds(2, bottleneck) >
        mw::predicted_seconds(72, 16, 1, bottleneck));
  CHECK(mw::one_launch(2, tile, bottleneck));
  // Stream-K: up.0.conv1 at 128^2 crops, 72 tiles x 256 k steps on 132 blocks of 140 (a tile in 3
  // pieces at most): one block per SM, against the grid's 7 splits, 504 blocks of which 4 or 3 per SM.
  // bottleneck.conv2 at 128^2, 144 tiles x 64 on 132 blocks of 70: 127 tiles in 2 pieces (16.6 MB
  // of partial tiles, the grid's 4 splits 37.7 MB), a tail of 2 tiles, no second wave.
  const ConvShape up0_128{16, 512, 256, 16, 16, 3}, b2_128{16, 512, 512, 8, 8, 3};
  const mw::Splits sk = mw::stream_k_of(up0_128, tile, 132);
  CHECK(sk.count == 132);
  CHECK(sk.steps_per_split == 140);
  CHECK(sk.slots == 3);
  CHECK(mw::stream_k_seconds(up0_128, tile, sk) < 0.92 * mw::predicted_seconds(72, 7 * 37, 7, up0));
  const mw::Splits sk2 = mw::stream_k_of(b2_128, tile, 132);
  CHECK(sk2.slots == 2);
  CHECK(mw::stream_k_pieces(b2_128, tile, sk2) == 2 * (144 - 17));  // 17 tiles whole in a block
  CHECK(mw::stream_k_seconds(b2_128, tile, sk2) < 0.9 * mw::predicted_seconds(144, 64, 4, 512 * 512 * 9));
  // One-warp tiles and tap pairs: none (the stream-K kernel is built for 128 x 128 tiles only).
  CHECK(mw::stream_k_of(ConvShape{16, 32, 32, 64, 64, 3}, mw::geometry({16, 32, 32, 64, 64, 3}), 132).count == 0);
  CHECK(mw::stream_k_of(ConvShape{16, 64, 128, 32, 32, 3}, mw::geometry({16, 64, 128, 32, 32, 3}), 132).count == 0);
  CHECK(!mw::one_launch(2, mw::Geometry{64, 64, 1, false}, bottleneck));  // one warp: never
  CHECK_THROWS_WITH_AS(mw::backward_weight({1, 3, 2, 5, 7, 3}, nullptr, nullptr, nullptr, nullptr),
                       doctest::Contains("H*W a multiple of 4"), kiln::gpu::Error);
}

namespace {

// dw += the splits of partial[split][tap][o][c] added from 0.0f in split order: the exact bits the
// reduction must give (its tiled transpose only moves where the sums are written).
// The dw values that differ; with `reversed` the kernel gets the splits in reverse order.
template <int K>
int wgrad_reduce_mismatches(int cout, int cin, int splits, unsigned blocks, bool reversed = false) {
  constexpr int KK = K * K;
  const ConvShape s{1, cin, cout, 4, 4, K};
  const int pairs = cout * cin, count = pairs * KK;
  auto partial = uniform(static_cast<std::size_t>(splits * count), 31, -2.0f, 2.0f);
  for (float& v : partial) v = v * 1.37f + 0.11f;  // full mantissas: any other split order rounds differently
  const auto dw0 = uniform(static_cast<std::size_t>(count), 32, -1.0f, 1.0f);
  auto given = partial;
  if (reversed)
    for (int sp = 0; sp < splits; ++sp)
      std::copy_n(partial.begin() + static_cast<std::ptrdiff_t>(sp) * count, count,
                  given.begin() + static_cast<std::ptrdiff_t>(splits - 1 - sp) * count);
  DeviceBuffer<float> p(given), dw(dw0);
  KILN_LAUNCH(kiln::cuda::kernels::conv2d_mma_wgrad_reduce_kernel<K>, dim3(blocks),
              dim3(static_cast<unsigned>(mw::reduce_block_threads(K))), 0, nullptr, s,
              static_cast<const float*>(p.get()), splits, dw.get());
  const auto got = dw.download();
  int wrong = 0;
  for (int oc = 0; oc < pairs; ++oc)
    for (int t = 0; t < KK; ++t) {
      float sum = 0.0f;
      for (int sp = 0; sp < splits; ++sp) sum += partial[static_cast<std::size_t>(sp * count + t * pairs + oc)];
      const float want = dw0[static_cast<std::size_t>(oc * KK + t)] + sum;
      wrong +=
          std::bit_cast<std::uint32_t>(got[static_cast<std::size_t>(oc * KK + t)]) != std::bit_cast<std::uint32_t>(want)
              ? 1
              : 0;
    }
  return wrong;
}
template <int K>
void check_wgrad_reduce(int cout, int cin, int splits, unsigned blocks) {
  INFO("K=", K, " ", cin, "->", cout, ", ", splits, " splits, ", blocks, " blocks");
  CHECK(wgrad_reduce_mismatches<K>(cout, cin, splits, blocks) == 0);
}

}  // namespace

TEST_CASE("conv2d_mma_wgrad_reduce_kernel: the splits in order, bit for bit (short tile, several tiles, grid-stride)") {
  // Tiles are 32 (o, c) pairs (a warp per tap).
  check_wgrad_reduce<3>(5, 7, 3, 1);    // 35 (o, c): one block over a full tile and a short one
  check_wgrad_reduce<3>(4, 5, 2, 1);    // 20: one short tile only
  check_wgrad_reduce<3>(20, 30, 4, 2);  // 600: two blocks over 19 tiles, the last short
  check_wgrad_reduce<1>(17, 19, 3, 2);  // K = 1: 323, two blocks over 11 tiles, the last short
  check_wgrad_reduce<3>(16, 32, 5, mw::reduce_blocks({1, 32, 16, 4, 4, 3}));  // 512: a block per tile
  // A launch has a thread per partial sum of a split (the shallow layers' Cout*Cin of 1K fill 32
  // blocks, not 4), at most 4096 blocks.
  CHECK(mw::reduce_blocks({1, 32, 32, 4, 4, 3}) == 32);
  CHECK(mw::reduce_blocks({1, 32, 33, 4, 4, 3}) == 33);
  CHECK(mw::reduce_blocks({1, 32, 32, 4, 4, 1}) == 32);  // K = 1 too (8 blocks of 256 pairs before)
  CHECK(mw::reduce_blocks({1, 512, 512, 4, 4, 3}) == 4096);
  CHECK(mw::reduce_block_threads(3) == 288);
  CHECK(mw::reduce_block_threads(1) == 32);
  // The checker fires: the same sums in reverse split order round differently.
  CHECK(wgrad_reduce_mismatches<3>(16, 32, 5, 2, true) > 0);
}

namespace {
// Several convolutions' reductions in one batched launch (conv2d_mma_wgrad_reduce_batch_kernel):
// the dw values that differ from each reduced alone by conv2d_mma_wgrad_reduce_kernel (the same bits
// expected). `drop_split`: the deliberate bug, the second entry told one split fewer.
int wgrad_reduce_batch_mismatches(const std::vector<std::pair<ConvShape, int>>& convs, bool drop_split = false) {
  namespace k = kiln::cuda::kernels;
  mw::ReduceBatch<mw::reduce_batch_max> batch{};
  std::deque<DeviceBuffer<float>> partials, batched, alone;  // (not movable: built in place)
  int blocks = 0, seed = 41;
  for (const auto& [s, splits] : convs) {
    const auto count = static_cast<std::size_t>(s.c_out * s.c_in * s.k * s.k);
    auto partial = uniform(static_cast<std::size_t>(splits) * count, seed++, -2.0f, 2.0f);
    for (float& v : partial) v = v * 1.37f + 0.11f;
    const auto dw0 = uniform(count, seed++, -1.0f, 1.0f);
    partials.emplace_back(partial), batched.emplace_back(dw0), alone.emplace_back(dw0);
    const int told = drop_split && batch.count == 1 ? splits - 1 : splits;
    batch.entries[batch.count++] = {s, partials.back().get(), batched.back().get(), told, blocks};
    blocks += mw::reduce_batch_blocks(s);
  }
  KILN_LAUNCH(k::conv2d_mma_wgrad_reduce_batch_kernel<mw::reduce_batch_max>, dim3(static_cast<unsigned>(blocks)),
              dim3(mw::reduce_batch_threads), 0, nullptr, batch);
  int wrong = 0;
  for (std::size_t i = 0; i < convs.size(); ++i) {
    const auto& [s, splits] = convs[i];
    if (s.k == 3)
      KILN_LAUNCH(k::conv2d_mma_wgrad_reduce_kernel<3>, dim3(mw::reduce_blocks(s)), dim3(mw::reduce_block_threads(3)),
                  0, nullptr, s, static_cast<const float*>(partials[i].get()), splits, alone[i].get());
    else
      KILN_LAUNCH(k::conv2d_mma_wgrad_reduce_kernel<1>, dim3(mw::reduce_blocks(s)), dim3(mw::reduce_block_threads(1)),
                  0, nullptr, s, static_cast<const float*>(partials[i].get()), splits, alone[i].get());
    const auto got = batched[i].download(), want = alone[i].download();
    for (std::size_t j = 0; j < got.size(); ++j)
      wrong += std::bit_cast<std::uint32_t>(got[j]) != std::bit_cast<std::uint32_t>(want[j]) ? 1 : 0;
  }
  return wrong;
}
}  // namespace

TEST_CASE("conv2d_mma_wgrad_reduce_batch_kernel: several convolutions' reductions in one launch, bit for bit") {
  // K = 3 entries in tiles of 32 pairs, K = 1 entries in tiles of 288; short last tiles; one block.
  const std::vector<std::pair<ConvShape, int>> convs{{{1, 7, 5, 4, 4, 3}, 3},
                                                     {{1, 19, 17, 4, 4, 1}, 5},
                                                     {{1, 32, 16, 4, 4, 3}, 2},
                                                     {{1, 3, 2, 4, 4, 1}, 4},
                                                     {{1, 40, 20, 4, 4, 1}, 2}};
  CHECK(mw::reduce_batch_blocks(convs[0].first) == 2);  // 35 pairs
  CHECK(mw::reduce_batch_blocks(convs[1].first) == 2);  // 323 pairs
  CHECK(mw::reduce_batch_blocks(convs[3].first) == 1);
  CHECK(mw::reduce_batch_blocks({1, 512, 512, 4, 4, 3}) == 4096);  // grid-stride past 4096 tiles
  CHECK(wgrad_reduce_batch_mismatches(convs) == 0);
  CHECK(wgrad_reduce_batch_mismatches({{{1, 64, 70, 4, 4, 3}, 3}}) == 0);  // one entry, 140 blocks
  // The checker fires: an entry reduced over one split fewer.
  CHECK(wgrad_reduce_batch_mismatches(convs, true) > 0);
}

namespace {

// Both TF32 packings against their definitions, bit for bit, for any grid and block size (the
// tiles staged through shared memory: channel tails, short row tiles, grid-stride over tiles);
// blocks 0: the launchers' grids (mma_conv::pack_weight_blocks). both: the two in one launch
// (conv2d_mma_pack_weights_both_kernel: the forward's part on `blocks` blocks, or its launcher's
// grid, the dgrad part on the rest), which must also zero both sets of split-K counters (a
// nonzero one counts as a mismatch).
template <int K>
int packing_mismatches(int cin, int cout, unsigned blocks, unsigned threads, bool both = false) {
  constexpr int KK = K * K;
  const ConvShape s{1, cin, cout, 4, 4, K};
  const auto w = uniform(static_cast<std::size_t>(cout * cin * KK), 41, -1.0f, 1.0f);
  DeviceBuffer<float> d_w(w), fwd(static_cast<std::size_t>(mc::packed_weight_floats(s))),
      dgrad(static_cast<std::size_t>(mc::packed_dgrad_weight_floats(s)));
  const dim3 fwd_grid(blocks > 0 ? blocks : mc::pack_weight_blocks<K, false>(s)),
      dgrad_grid(blocks > 0 ? blocks : mc::pack_weight_blocks<K, true>(s));
  DeviceBuffer<unsigned> counters(std::vector<unsigned>(5, 7u)), dgrad_counters(std::vector<unsigned>(3, 9u));
  if (both) {
    KILN_LAUNCH(kiln::cuda::kernels::conv2d_mma_pack_weights_both_kernel<K>, dim3(fwd_grid.x + dgrad_grid.x),
                dim3(threads), 0, nullptr, s, static_cast<const float*>(d_w.get()), fwd.get(), counters.get(), 5,
                dgrad.get(), dgrad_counters.get(), 3, static_cast<int>(fwd_grid.x));
  } else {
    KILN_LAUNCH(kiln::cuda::kernels::conv2d_mma_pack_weights_kernel<K>, fwd_grid, dim3(threads), 0, nullptr, s,
                static_cast<const float*>(d_w.get()), fwd.get(), counters.get(), 5);
    KILN_LAUNCH(kiln::cuda::kernels::conv2d_mma_pack_weights_dgrad_kernel<K>, dgrad_grid, dim3(threads), 0, nullptr, s,
                static_cast<const float*>(d_w.get()), dgrad.get(), dgrad_counters.get(), 3);
  }
  const auto f = fwd.download(), d = dgrad.download();
  const auto bits = [](double v) { return std::bit_cast<std::uint32_t>(static_cast<float>(v)); };
  int wrong = 0;
  for (unsigned c : counters.download()) wrong += c != 0;
  for (unsigned c : dgrad_counters.download()) wrong += c != 0;
  const int cin_pad = mc::channels_padded(cin), cout_pad = mc::channels_padded(cout);
  for (int o = 0; o < cout; ++o)
    for (int t = 0; t < KK; ++t)
      for (int c = 0; c < cin_pad; ++c) {
        const int ch = mc::packed_channel(c, cin);
        const double want = ch >= 0 ? tf32_rounded(w[static_cast<std::size_t>((o * cin + ch) * KK + t)]) : 0.0;
        wrong += std::bit_cast<std::uint32_t>(f[static_cast<std::size_t>((o * KK + t) * cin_pad + c)]) != bits(want);
      }
  for (int c = 0; c < cin; ++c)
    for (int t = 0; t < KK; ++t)
      for (int o = 0; o < cout_pad; ++o) {
        const int oo = mc::packed_channel(o, cout);
        const double want =
            oo >= 0 ? tf32_rounded(w[static_cast<std::size_t>((oo * cin + c) * KK + (KK - 1 - t))]) : 0.0;
        wrong += std::bit_cast<std::uint32_t>(d[static_cast<std::size_t>((c * KK + t) * cout_pad + o)]) != bits(want);
      }
  return wrong;
}

}  // namespace

TEST_CASE("conv2d_mma packings (forward, dgrad): staged tiles equal the definitions, any grid and block") {
  CHECK(packing_mismatches<3>(40, 3, 1, 256) == 0);   // Cin tail (48: a 32 and a 16 chunk), 5 row tiles
  CHECK(packing_mismatches<3>(20, 40, 3, 128) == 0);  // Cout tail; dgrad row tiles of 8, 8, 4
  CHECK(packing_mismatches<3>(5, 17, 2, 256) == 0);   // dgrad: all of Cin in a tile (one run of w)
  CHECK(packing_mismatches<1>(70, 33, 2, 256) == 0);  // K = 1: dgrad row tiles of 64 and 6
  CHECK(packing_mismatches<1>(3, 2, 1, 64) == 0);
  CHECK(packing_mismatches<3>(64, 64, 7, 256) == 0);  // no tails, many tiles per block
  // The launchers' grids, one block per tile
  CHECK(packing_mismatches<3>(40, 20, 0, mc::pack_threads) == 0);
  CHECK(packing_mismatches<1>(70, 33, 0, mc::pack_threads) == 0);
}

TEST_CASE("conv2d_mma_pack_weights_both_kernel: both packings in one launch equal the definitions, counters zeroed") {
  CHECK(packing_mismatches<3>(40, 3, 1, 256, true) == 0);  // one forward block, grid-stride; dgrad on the rest
  CHECK(packing_mismatches<3>(20, 40, 3, 128, true) == 0);
  CHECK(packing_mismatches<1>(70, 33, 2, 256, true) == 0);
  CHECK(packing_mismatches<3>(40, 20, 0, mc::pack_threads, true) == 0);  // the launcher's grids, side by side
  CHECK(packing_mismatches<1>(70, 33, 0, mc::pack_threads, true) == 0);
}

TEST_CASE("conv2d_mma packings: the launchers' grids have one block per staged tile, at most 4096") {
  // 3x3: Cin 40 packs to 48 positions (chunks of 32 and 16), Cout 20 to 32 (one chunk). Forward
  // tiles: one o x one chunk; input gradient: 8 input channels x one chunk of output channels.
  const ConvShape s{1, 40, 20, 4, 4, 3};
  CHECK(mc::pack_weight_blocks<3, false>(s) == 20 * 2);
  CHECK(mc::pack_weight_blocks<3, true>(s) == 5 * 1);
  // 1x1: Cin 70 packs to 80 (3 chunks), Cout 33 to 48 (2). The forward is a grid-stride copy (a
  // block per 256 values); the input gradient's tiles hold 64 input channels.
  const ConvShape p{1, 70, 33, 4, 4, 1};
  CHECK(mc::pack_weight_blocks<1, false>(p) == (33 * 80 + 255) / 256);
  CHECK(mc::pack_weight_blocks<1, true>(p) == 2 * 2);
  // 512 -> 512, 3x3: 64 x 16 input-gradient tiles (a block per 256 values would be 9216, capped to
  // 4096, three in four of them idle); the forward's 512 x 16 tiles are capped.
  const ConvShape wide{1, 512, 512, 4, 4, 3};
  CHECK(mc::pack_weight_blocks<3, true>(wide) == 64 * 16);
  CHECK(mc::pack_weight_blocks<3, false>(wide) == 4096);
}
