// Tensor-core fragments (kiln::gpu::wmma) and cp.async (kiln::gpu::cp_async) on the emulator:
// the TF32 / BF16 roundings bit by bit, fragment GEMMs against plain loops, accumulator loads and
// stores in both layouts, a double-buffered cp.async pipeline, and the bugs the emulation must
// catch (reading a cp.async tile before the wait or the barrier, partial warps, lanes with different
// arguments, misaligned tiles, wmma in half a warp).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kiln/gpu/gpu.hpp"
#include "test_emulator_support.hpp"

using kiln_emu_test::DeviceBuffer;
namespace wmma = kiln::gpu::wmma;

namespace {

float bits_to_float(std::uint32_t u) { return std::bit_cast<float>(u); }

// The tf32 value of x as plain arithmetic: x rounded to 11 significant bits, ties away from zero.
double tf32_reference(float x) {
  if (x == 0.0f || !std::isfinite(x)) return x;
  int e = 0;
  const double m = std::frexp(static_cast<double>(x), &e);  // |m| in [0.5, 1)
  const double scaled = m * 2048.0;                         // 11 significant bits before the point
  const double r = std::copysign(std::floor(std::fabs(scaled) + 0.5), scaled);
  return std::ldexp(r / 2048.0, e);
}

std::vector<float> random_values(std::size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = lo + (hi - lo) * static_cast<float>((s >> 40) & 0xffffff) / 16777216.0f;
  }
  return v;
}

// ---- kernels ------------------------------------------------------------------------------------

// C[M x N] = A[M x K] * B[K x N] (row-major in global memory, A given as col-major when a_col),
// one warp per 16x16 output tile (blockDim.x = 32 * tiles), TF32 with explicit rounding.
template <bool RoundToTf32, bool ACol>
__global__ void tf32_gemm(const float* a, const float* b, float* c, int m, int n, int k) {
  const int warp = static_cast<int>(threadIdx.x) / 32, tiles_n = n / 16;
  const int row = warp / tiles_n * 16, col = warp % tiles_n * 16;
  using ALayout = std::conditional_t<ACol, wmma::col_major, wmma::row_major>;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, ALayout> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (int kk = 0; kk < k; kk += 8) {
    // row-major A[row][kk] at a + row * k + kk; col-major A (element (r, c) at a[c * m + r]) at a + kk * m + row
    wmma::load_matrix_sync(fa, ACol ? a + kk * m + row : a + row * k + kk, ACol ? m : k);
    wmma::load_matrix_sync(fb, b + kk * n + col, n);
    if constexpr (RoundToTf32) {
      for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
      for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
    }
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(c + row * n + col, acc, n, wmma::mem_row_major);
}

// The same with BF16 operands (m16n16k16) and C loaded as the initial accumulator, stored col-major.
__global__ void bf16_gemm_accumulate(const __nv_bfloat16* a, const __nv_bfloat16* b, const float* c_in, float* c_out,
                                     int m, int n, int k) {
  const int warp = static_cast<int>(threadIdx.x) / 32, tiles_n = n / 16;
  const int row = warp / tiles_n * 16, col = warp % tiles_n * 16;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;  // B given as B^T row-major
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(acc, c_in + row * n + col, n, wmma::mem_row_major);
  for (int kk = 0; kk < k; kk += 16) {
    wmma::load_matrix_sync(fa, a + row * k + kk, k);
    wmma::load_matrix_sync(fb, b + col * k + kk, k);  // element (r=kk.., c=col..) at b[c * k + r]
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(c_out + col * m + row, acc, m, wmma::mem_col_major);  // C^T, i.e. col-major C
}

// Streams `tiles` tiles of blockDim.x floats through two shared-memory stages with cp.async and
// writes out[i] = 2 * in[i]: the double-buffering pattern of the convolution kernels.
// Bug::none is correct; no_wait reads a stage before waiting for it; no_barrier reads another
// thread's element of the stage after waiting only for its own copies.
enum class Bug { none, no_wait, no_barrier };
template <Bug B>
__global__ void double_buffered_scale(const float* in, float* out, int tiles) {
  float* stage = kiln::gpu::dynamic_shared<float>();  // [2][blockDim.x]
  const int t = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  const int neighbour = (t + 1) % n;  // read another thread's copy, so the barrier matters
  kiln::gpu::cp_async<4>(&stage[t], &in[t]);
  kiln::gpu::cp_async_commit();
  for (int i = 0; i < tiles; ++i) {
    if (i + 1 < tiles) kiln::gpu::cp_async<4>(&stage[((i + 1) & 1) * n + t], &in[(i + 1) * n + t]);
    kiln::gpu::cp_async_commit();
    if constexpr (B != Bug::no_wait) kiln::gpu::cp_async_wait<1>();
    if constexpr (B != Bug::no_barrier) __syncthreads();
    out[i * n + neighbour] = 2.0f * stage[(i & 1) * n + neighbour];
    __syncthreads();  // the stage is refilled in the next iteration
  }
}

// One warp: a 16x8 TF32 A tile and an 8x16 B tile copied to shared memory with cp.async (with a
// zero-filled tail), then multiplied. WithBarrier = false forgets the wait + barrier before the
// fragment loads.
template <bool WithBarrier>
__global__ void cp_async_then_mma(const float* a, const float* b, float* c, int valid_k) {
  float* shared = kiln::gpu::dynamic_shared<float>();
  float* as = shared;        // [16][8]
  float* bs = shared + 128;  // [8][16]
  const int t = static_cast<int>(threadIdx.x);
  for (int i = t; i < 128; i += 32) {
    const int ak = i % 8, bk = i / 16;  // columns of A and rows of B past valid_k are zero-filled
    kiln::gpu::cp_async<4>(&as[i], ak < valid_k ? &a[i] : a, ak < valid_k);
    kiln::gpu::cp_async<4>(&bs[i], bk < valid_k ? &b[i] : b, bk < valid_k);
  }
  kiln::gpu::cp_async_commit();
  if constexpr (WithBarrier) {
    kiln::gpu::cp_async_wait<0>();
    __syncthreads();
  }
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, as, 8);
  wmma::load_matrix_sync(fb, bs, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
  kiln::gpu::cp_async_wait_all();
}

__global__ void mma_in_half_warp(float* c) {
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  if (threadIdx.x < 16) wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

__global__ void store_tile(float* c) {
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

__global__ void store_with_lane_dependent_pointer(float* c) {
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  wmma::store_matrix_sync(c + (threadIdx.x % 2) * 256, acc, 16, wmma::mem_row_major);
}

__global__ void store_misaligned(float* c) {
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  wmma::store_matrix_sync(c + 1, acc, 16, wmma::mem_row_major);
}

std::string launch_error(void (*run)()) {
  try {
    run();
  } catch (const kiln::gpu::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("__float_to_tf32 rounds to 10 mantissa bits, to nearest, ties away from zero") {
  CHECK(wmma::__float_to_tf32(1.0f) == 1.0f);
  CHECK(wmma::__float_to_tf32(bits_to_float(0x3f801000u)) == bits_to_float(0x3f802000u));  // 1 + 2^-11: tie, up
  CHECK(wmma::__float_to_tf32(bits_to_float(0xbf801000u)) == bits_to_float(0xbf802000u));  // the negative tie: away
  CHECK(wmma::__float_to_tf32(bits_to_float(0x3f800fffu)) == 1.0f);                        // just below the tie
  CHECK(wmma::__float_to_tf32(bits_to_float(0x3f803000u)) == bits_to_float(0x3f804000u));  // 1 + 3 * 2^-11
  CHECK(wmma::__float_to_tf32(bits_to_float(0x3fffffffu)) == 2.0f);                        // carry into the exponent
  CHECK(std::isinf(wmma::__float_to_tf32(std::numeric_limits<float>::infinity())));
  CHECK(std::isnan(wmma::__float_to_tf32(std::numeric_limits<float>::quiet_NaN())));
  CHECK(wmma::__float_to_tf32(bits_to_float(0x00000fffu)) == 0.0f);  // a subnormal below half a tf32 ulp
  for (float x : random_values(20000, 7, -1e6f, 1e6f)) {
    const float r = wmma::__float_to_tf32(x);
    REQUIRE((std::bit_cast<std::uint32_t>(r) & 0x1fffu) == 0u);
    REQUIRE(static_cast<double>(r) == tf32_reference(x));
  }
}

TEST_CASE("__float2bfloat16 rounds to nearest even; __bfloat162float is exact") {
  CHECK(__bfloat162float(__float2bfloat16(1.0f)) == 1.0f);
  CHECK(__bfloat162float(__float2bfloat16(bits_to_float(0x3f808000u))) == 1.0f);  // tie: to even (down)
  CHECK(__bfloat162float(__float2bfloat16(bits_to_float(0x3f818000u))) ==
        bits_to_float(0x3f820000u));  // tie: to even (up)
  CHECK(__bfloat162float(__float2bfloat16(bits_to_float(0x3f808001u))) == bits_to_float(0x3f810000u));  // above the tie
  CHECK(__bfloat162float(__float2bfloat16(-2.5f)) == -2.5f);
  CHECK(std::isnan(__bfloat162float(__float2bfloat16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isnan(
      __bfloat162float(__float2bfloat16(bits_to_float(0x7f800001u)))));  // a NaN whose payload is in the low bits
  CHECK(std::isinf(__bfloat162float(__float2bfloat16(std::numeric_limits<float>::max()))));
  for (float x : random_values(20000, 9, -300.0f, 300.0f)) {
    const float r = __bfloat162float(__float2bfloat16(x));
    // |r - x| <= half an ulp of bf16 (2^-8 relative to the power of two below |x|)
    int e = 0;
    std::frexp(x, &e);
    REQUIRE(std::fabs(static_cast<double>(r) - x) <= std::ldexp(1.0, e - 9));
  }
}

TEST_CASE("wmma TF32 fragments: a 32x32x16 GEMM of four warps matches plain loops") {
  constexpr int m = 32, n = 32, k = 16;
  const auto a = random_values(m * k, 1), b = random_values(k * n, 2);
  std::vector<float> a_col(m * k);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < k; ++c) a_col[c * m + r] = a[r * k + c];
  // References in double: operands rounded to tf32 (rna), and truncated (what the hardware uses when
  // the kernel does not round).
  auto reference = [&](auto op) {
    std::vector<double> c(m * n, 0.0);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j)
        for (int q = 0; q < k; ++q) c[i * n + j] += op(a[i * k + q]) * op(b[q * n + j]);
    return c;
  };
  const auto rounded = reference([](float v) { return tf32_reference(v); });
  const auto truncated = reference(
      [](float v) { return static_cast<double>(std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) & 0xffffe000u)); });
  const auto exact = reference([](float v) { return static_cast<double>(v); });
  DeviceBuffer<float> da(a), da_col(a_col), db(b), dc(m * n);
  auto max_error = [](const std::vector<float>& got, const std::vector<double>& want) {
    double e = 0;
    for (std::size_t i = 0; i < got.size(); ++i) e = std::max(e, std::fabs(got[i] - want[i]));
    return e;
  };
  KILN_LAUNCH((tf32_gemm<true, false>), dim3(1), dim3(128), 0, nullptr, da.get(), db.get(), dc.get(), m, n, k);
  const auto c_rounded = dc.download();
  CHECK(max_error(c_rounded, rounded) < 1e-5);  // only the fp32 accumulation differs
  CHECK(max_error(c_rounded, exact) > 1e-5);    // and TF32 really lost precision
  KILN_LAUNCH((tf32_gemm<true, true>), dim3(1), dim3(128), 0, nullptr, da_col.get(), db.get(), dc.get(), m, n, k);
  CHECK(max_error(dc.download(), rounded) < 1e-5);  // col-major A gives the same product
  KILN_LAUNCH((tf32_gemm<false, false>), dim3(1), dim3(128), 0, nullptr, da.get(), db.get(), dc.get(), m, n, k);
  CHECK(max_error(dc.download(), truncated) < 1e-5);  // unrounded operands: the tensor core truncates
}

TEST_CASE("wmma BF16 fragments: accumulate onto a loaded C, col-major B and store") {
  constexpr int m = 16, n = 32, k = 32;
  const auto af = random_values(m * k, 3), bf = random_values(k * n, 4), c0 = random_values(m * n, 5);
  std::vector<__nv_bfloat16> a(m * k), bt(n * k);  // bt = B^T row-major = B col-major
  for (int i = 0; i < m * k; ++i) a[i] = __float2bfloat16(af[i]);
  for (int q = 0; q < k; ++q)
    for (int j = 0; j < n; ++j) bt[j * k + q] = __float2bfloat16(bf[q * n + j]);
  DeviceBuffer<__nv_bfloat16> da(a), db(bt);
  DeviceBuffer<float> dc0(c0), dc(m * n);
  KILN_LAUNCH(bf16_gemm_accumulate, dim3(1), dim3(64), 0, nullptr, da.get(), db.get(), dc0.get(), dc.get(), m, n, k);
  const auto got = dc.download();
  double worst = 0;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double want = c0[i * n + j];
      for (int q = 0; q < k; ++q) want += double(__bfloat162float(a[i * k + q])) * __bfloat162float(bt[j * k + q]);
      worst = std::max(worst, std::fabs(got[j * m + i] - want));  // stored col-major
    }
  CHECK(worst < 1e-5);
}

TEST_CASE("cp.async: a double-buffered pipeline copies every tile; the wait and the barrier are needed") {
  constexpr int threads = 64, tiles = 5;
  const auto in = random_values(threads * tiles, 6);
  DeviceBuffer<float> din(in), dout(in.size());
  const std::size_t shared = 2 * threads * sizeof(float);
  KILN_LAUNCH(double_buffered_scale<Bug::none>, dim3(1), dim3(threads), shared, nullptr, din.get(), dout.get(), tiles);
  const auto out = dout.download();
  for (std::size_t i = 0; i < in.size(); ++i) REQUIRE(out[i] == 2.0f * in[i]);
#if !KILN_EMU_THREADS  // the buggy kernels race; ThreadSanitizer builds would report that instead
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule scope(schedule);
    auto count_nan = [&] {
      const auto got = dout.download();
      int nan = 0;
      for (float v : got) nan += std::isnan(v) ? 1 : 0;
      return nan;
    };
    dout.zero();
    KILN_LAUNCH(double_buffered_scale<Bug::no_wait>, dim3(1), dim3(threads), shared, nullptr, din.get(), dout.get(),
                tiles);
    CHECK(count_nan() == threads * tiles);  // every read came before its copy
    dout.zero();
    KILN_LAUNCH(double_buffered_scale<Bug::no_barrier>, dim3(1), dim3(threads), shared, nullptr, din.get(), dout.get(),
                tiles);
    CHECK(count_nan() > 0);  // some neighbours had not waited for their copies yet
  }
#endif
}

TEST_CASE("cp.async zero fill feeds a TF32 mma; reading the tile without wait + barrier gives NaN") {
  const auto a = random_values(16 * 8, 11), b = random_values(8 * 16, 12);
  constexpr int valid_k = 5;  // columns 5..7 of A and rows 5..7 of B are zero-filled
  DeviceBuffer<float> da(a), db(b), dc(256);
  KILN_LAUNCH(cp_async_then_mma<true>, dim3(1), dim3(32), 256 * sizeof(float), nullptr, da.get(), db.get(), dc.get(),
              valid_k);
  const auto c = dc.download();
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      double want = 0;
      for (int q = 0; q < valid_k; ++q)
        want += double(std::bit_cast<float>(std::bit_cast<std::uint32_t>(a[i * 8 + q]) & 0xffffe000u)) *
                std::bit_cast<float>(std::bit_cast<std::uint32_t>(b[q * 16 + j]) & 0xffffe000u);
      REQUIRE(std::fabs(c[i * 16 + j] - want) < 1e-5);
    }
#if !KILN_EMU_THREADS
  KILN_LAUNCH(cp_async_then_mma<false>, dim3(1), dim3(32), 256 * sizeof(float), nullptr, da.get(), db.get(), dc.get(),
              valid_k);
  int nan = 0;
  for (float v : dc.download()) nan += std::isnan(v) ? 1 : 0;
  CHECK(nan == 256);
#endif
}

TEST_CASE("wmma misuse is an error naming the call") {
  DeviceBuffer<float> ok(256);
  KILN_LAUNCH(store_tile, dim3(1), dim3(64), 0, nullptr, ok.get());  // two whole warps: fine
  for (float v : ok.download()) REQUIRE(v == 1.0f);
  CHECK(launch_error([] {
          DeviceBuffer<float> c(512);
          KILN_LAUNCH(mma_in_half_warp, dim3(1), dim3(32), 0, nullptr, c.get());
        }).find("exited") != std::string::npos);
  CHECK(launch_error([] {
          DeviceBuffer<float> c(512);
          KILN_LAUNCH(store_with_lane_dependent_pointer, dim3(1), dim3(32), 0, nullptr, c.get());
        }).find("different pointer") != std::string::npos);
  CHECK(launch_error([] {
          DeviceBuffer<float> c(512);
          KILN_LAUNCH(store_misaligned, dim3(1), dim3(32), 0, nullptr, c.get());
        }).find("32-byte aligned") != std::string::npos);
  CHECK(launch_error([] {
          DeviceBuffer<float> c(512);
          KILN_LAUNCH(store_tile, dim3(1), dim3(48), 0, nullptr, c.get());
        }).find("whole warp") != std::string::npos);
}
