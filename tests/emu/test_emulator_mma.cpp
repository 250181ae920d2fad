// Lane-accurate tensor-core instructions (kernels/kiln/gpu/mma.hpp) on the emulator: mma.sync
// TF32 m16n8k8 and BF16 m16n8k16, ldmatrix .x1/.x2/.x4 with and without .trans, cvt.rna.tf32.
// Operands are exact in TF32/BF16 and every sum is exact in fp32, so a result that differs by
// anything is a layout error, not rounding. The test's lane tables below are written from the PTX
// ISA text independently of mma.hpp; the deliberate bugs (a swapped register, a swapped lane
// mapping) prove that the checks tell a wrong layout apart.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kiln/gpu/gpu.hpp"
#include "test_emulator_support.hpp"

using kiln_emu_test::DeviceBuffer;
using kiln_emu_test::exact_values;
namespace mma = kiln::gpu::mma;

namespace {

// ---- the PTX ISA's fragment tables (g = groupID = lane / 4, t = threadID_in_group = lane % 4) ----
struct Pos {
  int row, col;
};
// TF32 m16n8k8 A (16x8): a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4).
Pos tf32_a(int lane, int reg) { return {lane / 4 + 8 * (reg % 2), lane % 4 + 4 * (reg / 2)}; }
// TF32 B (8x8, row = k): b0 (t, g), b1 (t+4, g).
Pos tf32_b(int lane, int reg) { return {lane % 4 + 4 * reg, lane / 4}; }
// C/D (16x8): c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
Pos accumulator(int lane, int reg) { return {lane / 4 + 8 * (reg / 2), 2 * (lane % 4) + reg % 2}; }
// BF16 m16n8k16 A (16x16), element e = 0..7 (register e / 2, low half first):
// rows g for a0,a1,a4,a5 and g+8 for a2,a3,a6,a7; cols 2t + (e & 1), + 8 for e >= 4.
Pos bf16_a(int lane, int e) { return {lane / 4 + 8 * ((e / 2) % 2), 2 * (lane % 4) + e % 2 + 8 * (e / 4)}; }
// BF16 B (16x8, row = k), element e = 0..3: rows 2t + (e & 1), + 8 for e >= 2; col g.
Pos bf16_b(int lane, int e) { return {2 * (lane % 4) + e % 2 + 8 * (e / 2), lane / 4}; }

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }
std::uint16_t bf16_bits(float x) { return static_cast<std::uint16_t>(bits(x) >> 16); }  // exact for the values used

// D = A * B + C in double (row-major, A m x k, B k x n).
std::vector<double> matmul(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c, int m,
                           int n, int k) {
  std::vector<double> d(static_cast<std::size_t>(m * n));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double sum = c[i * n + j];
      for (int q = 0; q < k; ++q) sum += double(a[i * k + q]) * b[q * n + j];
      d[i * n + j] = sum;
    }
  return d;
}

// The number of elements of a 16x8 result that differ from the reference (the test helper the
// deliberate bugs must trip).
int mismatches(const std::vector<float>& got, const std::vector<double>& want) {
  int wrong = 0;
  for (std::size_t i = 0; i < want.size(); ++i) wrong += static_cast<double>(got[i]) != want[i] ? 1 : 0;
  return wrong;
}

// ---- kernels (one warp) -------------------------------------------------------------------------

enum class Bug { none, swap_a1_a2, swap_lanes };

// Each lane gathers its registers from global memory by the tables above, runs one TF32 mma and
// writes its four results both raw (lanes[lane * 4 + i]) and scattered to the 16x8 matrix.
// a: 16x8 row-major, b: 8x8 row-major (k x n), c: 16x8.
template <Bug B>
__global__ void tf32_mma_kernel(const float* a, const float* b, const float* c, float* d, float* lanes) {
  const int lane = static_cast<int>(threadIdx.x);
  const int source = B == Bug::swap_lanes ? lane ^ 4 : lane;  // the bug: groups 0<->1, 2<->3, ...
  std::uint32_t ra[4], rb[2];
  float rc[4];
  for (int i = 0; i < 4; ++i) {
    const Pos p = tf32_a(source, i);
    ra[i] = __float_as_uint(a[p.row * 8 + p.col]);
    const Pos q = accumulator(lane, i);
    rc[i] = c[q.row * 8 + q.col];
  }
  for (int i = 0; i < 2; ++i) {
    const Pos p = tf32_b(lane, i);
    rb[i] = __float_as_uint(b[p.row * 8 + p.col]);
  }
  if (B == Bug::swap_a1_a2) {
    const std::uint32_t t = ra[1];
    ra[1] = ra[2];
    ra[2] = t;
  }
  float rd[4];
  mma::mma_tf32_m16n8k8(rd, ra, rb, rc);
  for (int i = 0; i < 4; ++i) {
    const Pos q = accumulator(lane, i);
    d[q.row * 8 + q.col] = rd[i];
    lanes[lane * 4 + i] = rd[i];
  }
}

// a: 16x16 row-major, b: 16x8 row-major (k x n), both bf16 bit patterns; c, d: 16x8.
__global__ void bf16_mma_kernel(const std::uint16_t* a, const std::uint16_t* b, const float* c, float* d) {
  const int lane = static_cast<int>(threadIdx.x);
  std::uint32_t ra[4] = {}, rb[2] = {};
  float rc[4];
  for (int e = 0; e < 8; ++e) {
    const Pos p = bf16_a(lane, e);
    ra[e / 2] |= std::uint32_t{a[p.row * 16 + p.col]} << (16 * (e % 2));
  }
  for (int e = 0; e < 4; ++e) {
    const Pos p = bf16_b(lane, e);
    rb[e / 2] |= std::uint32_t{b[p.row * 8 + p.col]} << (16 * (e % 2));
  }
  for (int i = 0; i < 4; ++i) {
    const Pos q = accumulator(lane, i);
    rc[i] = c[q.row * 8 + q.col];
  }
  mma::mma_bf16_m16n8k16(rc, ra, rb, rc);  // in place: d may be c
  for (int i = 0; i < 4; ++i) {
    const Pos q = accumulator(lane, i);
    d[q.row * 8 + q.col] = rc[i];
  }
}

// ldmatrix of `Count` 8x8 matrices of 16-bit values from shared memory: matrix i = rows 8i..8i+7
// of a [32][8] tile. Lanes past 8 * Count pass a null address (the GPU ignores them).
template <int Count, bool Trans>
__global__ void ldmatrix_kernel(const std::uint16_t* tile, std::uint32_t* out) {
  auto* shared = kiln::gpu::dynamic_shared<std::uint16_t>();
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = lane; i < 32 * 8; i += 32) shared[i] = tile[i];
  __syncthreads();
  const void* row = lane < 8 * Count ? &shared[lane * 8] : nullptr;
  std::uint32_t r[Count];
  if constexpr (Count == 1) {
    if constexpr (Trans)
      mma::ldmatrix_x1_trans(r, row);
    else
      mma::ldmatrix_x1(r, row);
  } else if constexpr (Count == 2) {
    if constexpr (Trans)
      mma::ldmatrix_x2_trans(r, row);
    else
      mma::ldmatrix_x2(r, row);
  } else {
    if constexpr (Trans)
      mma::ldmatrix_x4_trans(r, row);
    else
      mma::ldmatrix_x4(r, row);
  }
  for (int i = 0; i < Count; ++i) out[lane * Count + i] = r[i];
}

// The way kernels use them: TF32 A (16x8 row-major) and B (stored n-major, [n][k] = col-major)
// fragments by ldmatrix from shared memory, rounded with cvt.rna, one mma.
__global__ void tf32_ldmatrix_mma_kernel(const float* a, const float* b_nk, float* d) {
  float* as = kiln::gpu::dynamic_shared<float>();  // [16][8]
  float* bs = as + 16 * 8;                         // [8 n][8 k]
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = lane; i < 128; i += 32) as[i] = a[i];
  for (int i = lane; i < 64; i += 32) bs[i] = b_nk[i];
  __syncthreads();
  // A: matrix i = rows 8(i%2).., columns 4(i/2)..; lane l gives row l%8 of matrix l/8.
  const int i = lane / 8, r = lane % 8;
  std::uint32_t ra[4], rb[2];
  mma::ldmatrix_x4(ra, &as[(r + 8 * (i % 2)) * 8 + 4 * (i / 2)]);
  // B: matrix 0 = k 0..3, matrix 1 = k 4..7 of rows n = lane % 8 (lanes 16..31 ignored).
  mma::ldmatrix_x2(rb, &bs[(lane % 8) * 8 + 4 * ((lane / 8) % 2)]);
  for (auto& x : ra) x = mma::float_to_tf32(__uint_as_float(x));
  for (auto& x : rb) x = mma::float_to_tf32(__uint_as_float(x));
  float acc[4] = {0, 0, 0, 0};
  mma::mma_tf32_m16n8k8(acc, ra, rb, acc);
  for (int q = 0; q < 4; ++q) {
    const Pos p = accumulator(lane, q);
    d[p.row * 8 + p.col] = acc[q];
  }
}

// BF16: A (16x16 row-major) by ldmatrix.x4, B stored k-major ([k][n], 16x8) by ldmatrix.x2.trans.
__global__ void bf16_ldmatrix_mma_kernel(const std::uint16_t* a, const std::uint16_t* b, float* d) {
  auto* as = kiln::gpu::dynamic_shared<std::uint16_t>();  // [16][16]
  auto* bs = as + 256;                                    // [16][8]
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = lane; i < 256; i += 32) as[i] = a[i];
  for (int i = lane; i < 128; i += 32) bs[i] = b[i];
  __syncthreads();
  const int i = lane / 8, r = lane % 8;
  std::uint32_t ra[4], rb[2];
  mma::ldmatrix_x4(ra, &as[(r + 8 * (i % 2)) * 16 + 8 * (i / 2)]);
  mma::ldmatrix_x2_trans(rb, &bs[(lane % 16) * 8]);  // rows k = 0..15
  float acc[4] = {0, 0, 0, 0};
  mma::mma_bf16_m16n8k16(acc, ra, rb, acc);
  for (int q = 0; q < 4; ++q) {
    const Pos p = accumulator(lane, q);
    d[p.row * 8 + p.col] = acc[q];
  }
}

__global__ void mma_partial_warp_kernel(float* d) {
  std::uint32_t a[4] = {}, b[2] = {};
  float c[4] = {};
  mma::mma_tf32_m16n8k8(c, a, b, c);
  d[threadIdx.x] = c[0];
}

__global__ void mma_after_exit_kernel(float* d) {
  if (threadIdx.x >= 16) return;
  std::uint32_t a[4] = {}, b[2] = {};
  float c[4] = {};
  mma::mma_tf32_m16n8k8(c, a, b, c);
  d[threadIdx.x] = c[0];
}

__global__ void ldmatrix_misaligned_kernel(std::uint32_t* out) {
  auto* shared = kiln::gpu::dynamic_shared<std::uint16_t>();
  std::uint32_t r[1];
  mma::ldmatrix_x1(r, &shared[threadIdx.x * 8 + 1]);  // 2 bytes past a row start
  out[threadIdx.x] = r[0];
}

std::string launch_error(void (*run)()) {
  try {
    run();
  } catch (const kiln::gpu::Error& e) {
    return e.what();
  }
  return "";
}

struct Tf32Run {
  std::vector<float> d, lanes;
};

template <Bug B>
Tf32Run run_tf32(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c) {
  DeviceBuffer<float> da(a), db(b), dc(c), dd(128), dl(128);
  KILN_LAUNCH(tf32_mma_kernel<B>, dim3(1), dim3(32), 0, nullptr, da.get(), db.get(), dc.get(), dd.get(), dl.get());
  return {dd.download(), dl.download()};
}

}  // namespace

TEST_CASE("mma.sync m16n8k8 TF32: the whole 16x8 product, element by element, and per-lane registers") {
  const auto a = exact_values(128, 1), b = exact_values(64, 2), c = exact_values(128, 3);
  const auto want = matmul(a, b, c, 16, 8, 8);
  const Tf32Run got = run_tf32<Bug::none>(a, b, c);
  CHECK(mismatches(got.d, want) == 0);
  // Raw registers of a few lanes against the PTX table, spelled out: lane 5 is g = 1, t = 1.
  CHECK(got.lanes[5 * 4 + 0] == want[1 * 8 + 2]);    // c0 = (g, 2t)
  CHECK(got.lanes[5 * 4 + 1] == want[1 * 8 + 3]);    // c1 = (g, 2t+1)
  CHECK(got.lanes[5 * 4 + 2] == want[9 * 8 + 2]);    // c2 = (g+8, 2t)
  CHECK(got.lanes[5 * 4 + 3] == want[9 * 8 + 3]);    // c3 = (g+8, 2t+1)
  CHECK(got.lanes[0 * 4 + 0] == want[0]);            // lane 0: (0, 0)
  CHECK(got.lanes[31 * 4 + 3] == want[15 * 8 + 7]);  // lane 31: g = 7, t = 3: c3 = (15, 7)
  CHECK(got.lanes[18 * 4 + 1] == want[4 * 8 + 5]);   // lane 18: g = 4, t = 2: c1 = (4, 5)

  SUBCASE("the tensor core ignores the low 13 mantissa bits (truncation), cvt.rna rounds") {
    auto noisy = a;
    for (auto& x : noisy) x = std::bit_cast<float>(bits(x) | (x != 0.0f ? 0x1fffu : 0u));  // below TF32 precision
    CHECK(mismatches(run_tf32<Bug::none>(noisy, b, c).d, want) == 0);
    // 1 + 2^-11 is a tie: cvt.rna goes up (away from zero), the mma alone truncates it down.
    CHECK(mma::float_to_tf32(std::bit_cast<float>(0x3f801000u)) == 0x3f802000u);
    CHECK(mma::float_to_tf32(std::bit_cast<float>(0xbf801000u)) == 0xbf802000u);
    CHECK(mma::float_to_tf32(std::bit_cast<float>(0x3f800fffu)) == 0x3f800000u);
    CHECK(mma::float_to_tf32(INFINITY) == bits(INFINITY));
    for (float x : exact_values(64, 9))
      CHECK(mma::float_to_tf32(x * 1.0009765625f) == bits(kiln::gpu::wmma::__float_to_tf32(x * 1.0009765625f)));
  }
  SUBCASE("deliberate bugs: a swapped register or a swapped lane mapping fail the check") {
    CHECK(mismatches(run_tf32<Bug::swap_a1_a2>(a, b, c).d, want) > 0);
    CHECK(mismatches(run_tf32<Bug::swap_lanes>(a, b, c).d, want) > 0);
  }
}

TEST_CASE("mma.sync m16n8k16 BF16: the whole product element by element") {
  const auto a = exact_values(256, 4), b = exact_values(128, 5), c = exact_values(128, 6);
  std::vector<std::uint16_t> ab(a.size()), bb(b.size());
  for (std::size_t i = 0; i < a.size(); ++i) ab[i] = bf16_bits(a[i]);
  for (std::size_t i = 0; i < b.size(); ++i) bb[i] = bf16_bits(b[i]);
  DeviceBuffer<std::uint16_t> da(ab), db(bb);
  DeviceBuffer<float> dc(c), dd(128);
  KILN_LAUNCH(bf16_mma_kernel, dim3(1), dim3(32), 0, nullptr, da.get(), db.get(), dc.get(), dd.get());
  CHECK(mismatches(dd.download(), matmul(a, b, c, 16, 8, 16)) == 0);

  DeviceBuffer<float> dl(128);  // A from ldmatrix.x4, B from ldmatrix.x2.trans (k-major storage)
  KILN_LAUNCH(bf16_ldmatrix_mma_kernel, dim3(1), dim3(32), 384 * sizeof(std::uint16_t), nullptr, da.get(), db.get(),
              dl.get());
  const std::vector<float> zero(128, 0.0f);
  CHECK(mismatches(dl.download(), matmul(a, b, zero, 16, 8, 16)) == 0);
}

TEST_CASE("ldmatrix .x1 / .x2 / .x4, with and without .trans, per lane") {
  std::vector<std::uint16_t> tile(32 * 8);
  for (int i = 0; i < 256; ++i)
    tile[i] = static_cast<std::uint16_t>(1000 + i);  // element (row, col) of matrix m: 1000 + (8m + row) * 8 + col
  const DeviceBuffer<std::uint16_t> dt(tile);
  auto element = [&](int m, int row, int col) -> std::uint32_t { return tile[(8 * m + row) * 8 + col]; };
  auto check = [&](auto kernel, int count, bool trans) {
    DeviceBuffer<std::uint32_t> out(32 * 4);
    KILN_LAUNCH(kernel, dim3(1), dim3(32), 512, nullptr, dt.get(), out.get());
    const auto got = out.download();
    int wrong = 0;
    for (int lane = 0; lane < 32; ++lane)
      for (int m = 0; m < count; ++m) {
        const int g = lane / 4, t = lane % 4;
        const std::uint32_t want = trans ? element(m, 2 * t, g) | element(m, 2 * t + 1, g) << 16
                                         : element(m, g, 2 * t) | element(m, g, 2 * t + 1) << 16;
        wrong += got[lane * count + m] != want ? 1 : 0;
      }
    return wrong;
  };
  CHECK(check(ldmatrix_kernel<1, false>, 1, false) == 0);
  CHECK(check(ldmatrix_kernel<2, false>, 2, false) == 0);
  CHECK(check(ldmatrix_kernel<4, false>, 4, false) == 0);
  CHECK(check(ldmatrix_kernel<1, true>, 1, true) == 0);
  CHECK(check(ldmatrix_kernel<2, true>, 2, true) == 0);
  CHECK(check(ldmatrix_kernel<4, true>, 4, true) == 0);
  // The check tells the two apart: the plain load is not its own transpose.
  CHECK(check(ldmatrix_kernel<4, false>, 4, true) > 0);
  CHECK(check(ldmatrix_kernel<4, true>, 4, false) > 0);

  SUBCASE("TF32 fragments by ldmatrix (A row-major, B n-major) give the product") {
    const auto a = exact_values(128, 7), b = exact_values(64, 8);  // b: [k][n]
    std::vector<float> b_nk(64);
    for (int k = 0; k < 8; ++k)
      for (int n = 0; n < 8; ++n) b_nk[n * 8 + k] = b[k * 8 + n];
    DeviceBuffer<float> da(a), db(b_nk), dd(128);
    KILN_LAUNCH(tf32_ldmatrix_mma_kernel, dim3(1), dim3(32), 192 * sizeof(float), nullptr, da.get(), db.get(),
                dd.get());
    CHECK(mismatches(dd.download(), matmul(a, b, std::vector<float>(128, 0.0f), 16, 8, 8)) == 0);
  }
}

TEST_CASE("mma.sync / ldmatrix misuse is an error naming the call") {
  CHECK(launch_error([] {
          DeviceBuffer<float> d(64);
          KILN_LAUNCH(mma_partial_warp_kernel, dim3(1), dim3(48), 0, nullptr, d.get());
        }).find("whole warp") != std::string::npos);
  CHECK(launch_error([] {
          DeviceBuffer<float> d(64);
          KILN_LAUNCH(mma_after_exit_kernel, dim3(1), dim3(32), 0, nullptr, d.get());
        }).find("exited") != std::string::npos);
  const std::string misaligned = launch_error([] {
    DeviceBuffer<std::uint32_t> out(32);
    KILN_LAUNCH(ldmatrix_misaligned_kernel, dim3(1), dim3(32), 1024, nullptr, out.get());
  });
  CHECK(misaligned.find("16-byte aligned") != std::string::npos);
  CHECK(misaligned.find("test_emulator_mma.cpp") != std::string::npos);
}
