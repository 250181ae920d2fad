// The traffic counters and checks of the tensor-core operations (kernels/kiln/gpu/wmma.hpp, mma.hpp)
// in the checking build: each wmma fragment load / store is counted as the warp-level accesses
// nvcc's code makes (one request per fragment register, lane (g, t) = (lane / 4, lane % 4) at the
// mma.m16n8k8 fragment positions), ldmatrix as one request of 16-byte rows, mma_sync as HMMA
// instructions and FLOPs. The expected figures are worked out by hand in the comments; the padded
// and unpadded tiles show that the counters see bank conflicts from the real ldm.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "emu/test_emulator_support.hpp"
#include "emucheck/ldmatrix_rows.hpp"
#include "kiln/gpu/gpu.hpp"

static_assert(KILN_EMU_CHECK, "tests/emucheck is compiled only in the checking build");

namespace kiln_check_kernels {

namespace wmma = kiln::gpu::wmma;
using TileA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using TileB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using Accumulator = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

// One warp: fills a 16 x ldm shared tile, then loads it as a TF32 matrix_a (row-major, ldm).
__global__ void shared_fragment_load(float* out, unsigned ldm) {
  float* s = kiln::gpu::dynamic_shared<float>();
  for (unsigned i = threadIdx.x; i < 16 * ldm; i += 32) s[i] = static_cast<float>(i);
  __syncthreads();
  TileA a;
  wmma::load_matrix_sync(a, s, ldm);
  out[threadIdx.x] = a.x[threadIdx.x];
}

// One warp: matrix_a (ldm 8) and matrix_b (ldm 16) from global memory, one mma, the accumulator
// stored row-major (ldm 16) and col-major (ldm 16).
__global__ void global_fragments(const float* a_src, const float* b_src, float* row_out, float* col_out) {
  TileA a;
  TileB b;
  Accumulator c;
  wmma::fill_fragment(c, 0.0f);
  wmma::load_matrix_sync(a, a_src, 8);
  wmma::load_matrix_sync(b, b_src, 16);
  wmma::mma_sync(c, a, b, c);
  wmma::store_matrix_sync(row_out, c, 16, wmma::mem_row_major);
  wmma::store_matrix_sync(col_out, c, 16, wmma::mem_col_major);
}

// Bug (without `barrier`): warp 1 writes the tile that warp 0 loads as a fragment.
__global__ void fragment_load_race(float* out, bool barrier) {
  float* s = kiln::gpu::dynamic_shared<float>();
  if (threadIdx.x >= 32)
    for (unsigned i = threadIdx.x - 32; i < 16 * 8; i += 32) s[i] = 1.0f;
  if (barrier) __syncthreads();
  if (threadIdx.x < 32) {
    TileA a;
    wmma::load_matrix_sync(a, s, 8);
    out[threadIdx.x] = a.x[threadIdx.x];
  }
}

}  // namespace kiln_check_kernels

namespace {

using kiln_emu_test::DeviceBuffer;
namespace ck = kiln_check_kernels;
namespace emu = kiln::gpu::emu;

class ScopedProfile {
 public:
  ScopedProfile() {
    emu::profile_log().clear();
    emu::set_profile(true);
  }
  ~ScopedProfile() { emu::set_profile(false); }
  ScopedProfile(const ScopedProfile&) = delete;
  ScopedProfile& operator=(const ScopedProfile&) = delete;
};

std::string launch_error(const auto& run) {
  try {
    run();
  } catch (const kiln::gpu::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("fragment traffic: a matrix_a load from shared memory, unpadded (ldm 8) vs padded (ldm 12)") {
  DeviceBuffer<float> out(32);
  ScopedProfile profile;
  // Request i of the load: lane (g, t) reads word g * ldm + t + (i % 2) * 8 * ldm + (i / 2) * 4.
  // ldm 8: banks 8g + t mod 32, so g and g + 4 share banks 0-3 (and so on): 2-way, 2 wavefronts each.
  KILN_LAUNCH(ck::shared_fragment_load, dim3(1), dim3(32), 16 * 8 * sizeof(float), nullptr, out.get(), 8u);
  // ldm 12: banks 12g + t mod 32 = {0, 12, 24, 4, 16, 28, 8, 20} + t: all 32 different, 1 wavefront each.
  KILN_LAUNCH(ck::shared_fragment_load, dim3(1), dim3(32), 16 * 12 * sizeof(float), nullptr, out.get(), 12u);
  REQUIRE(emu::profile_log().size() == 2);
  const emu::LaunchProfile& unpadded = emu::profile_log()[0];
  const emu::LaunchProfile& padded = emu::profile_log()[1];
  CHECK(unpadded.shared_load.requests == 4);  // 4 LD.32 per lane, as nvcc emits
  CHECK(unpadded.shared_load.bytes == 4 * 32 * 4);
  CHECK(unpadded.shared_load.distinct_bytes == 16 * 8 * 4);  // the warp reads the 16 x 8 tile once
  CHECK(unpadded.shared_load.units == 4 * 2);
  CHECK(padded.shared_load.requests == 4);
  CHECK(padded.shared_load.units == 4 * 1);
  // The values still arrive: lane l's x[l] is element (l / 8, l % 8) = word (l / 8) * ldm + l % 8.
  const std::vector<float> got = out.download();
  for (unsigned l = 0; l < 32; ++l) CHECK(got[l] == static_cast<float>(l / 8 * 12 + l % 8));
}

TEST_CASE("fragment traffic: global operand loads, accumulator stores, and the HMMA count of mma_sync") {
  std::vector<float> a(16 * 8), b(8 * 16);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 5);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 3);
  DeviceBuffer<float> da(a), db(b), row_out(16 * 16), col_out(16 * 16);
  ScopedProfile profile;
  KILN_LAUNCH(ck::global_fragments, dim3(1), dim3(32), 0, nullptr, da.get(), db.get(), row_out.get(), col_out.get());
  const emu::LaunchProfile& p = emu::profile_log().at(0);
  // matrix_a, ldm 8: each request reads 16 bytes of 8 rows 32 bytes apart: 8 sectors, half used.
  // matrix_b, ldm 16: each request reads 32 bytes (g = 0..7) of 4 rows (t): 4 sectors, all used.
  CHECK(p.global_load.requests == 4 + 4);
  CHECK(p.global_load.units == 4 * 8 + 4 * 4);
  CHECK(p.global_load.distinct_bytes == 2 * 16 * 8 * 4);
  // Row-major store: 4 x ST.64, each 8 rows x 32 bytes: 8 sectors. Col-major: 8 x ST.32, each 4
  // columns (2t + e) x 8 consecutive rows (g): 4 sectors.
  CHECK(p.global_store.requests == 4 + 8);
  CHECK(p.global_store.units == 4 * 8 + 8 * 4);
  CHECK(p.global_store.bytes == 2 * 16 * 16 * 4);
  CHECK(p.hmma == 4);  // nvcc: 4 HMMA.1684.F32.TF32 per m16n16k8 mma_sync
  CHECK(p.tensor_flops == 2.0 * 16 * 16 * 8);
  // And the product is right: D = A * B in both layouts.
  const std::vector<float> row = row_out.download(), col = col_out.download();
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float want = 0;
      for (int k = 0; k < 8; ++k) want += a[i * 8 + k] * b[k * 16 + j];
      CHECK(row[i * 16 + j] == want);
      CHECK(col[j * 16 + i] == want);
    }
}

TEST_CASE("fragment checks: a fragment load of a tile another warp writes without a barrier") {
  using emu::Schedule;
  DeviceBuffer<float> out(32);
  for (Schedule schedule : {Schedule::forward, Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule scoped(schedule);
    CHECK(launch_error([&] {
            KILN_LAUNCH(ck::fragment_load_race, dim3(1), dim3(64), 16 * 8 * sizeof(float), nullptr, out.get(), true);
          }).empty());
    CHECK(out.download() == std::vector<float>(32, 1.0f));
    const std::string error = launch_error([&] {
      KILN_LAUNCH(ck::fragment_load_race, dim3(1), dim3(64), 16 * 8 * sizeof(float), nullptr, out.get(), false);
    });
    // In order, warp 0 loads first (nothing written yet); in reverse, warp 1 writes first (a race).
    CHECK(error.find(schedule == Schedule::forward ? "init check" : "read-after-write") != std::string::npos);
  }
}

TEST_CASE("fragment traffic: ldmatrix rows conflict-free (16 bytes apart) vs all in one bank group (128 bytes apart)") {
  DeviceBuffer<float> out(32);
  ScopedProfile profile;
  KILN_LAUNCH(ck::ldmatrix_rows, dim3(1), dim3(32), 32 * 4 * sizeof(float), nullptr, out.get(), 4u);
  KILN_LAUNCH(ck::ldmatrix_rows, dim3(1), dim3(32), 32 * 32 * sizeof(float), nullptr, out.get(), 32u);
  REQUIRE(emu::profile_log().size() == 2);
  // .x4: 32 rows x 16 bytes = 128 words; contiguous, each bank holds 4 of them: 4 wavefronts, the
  // minimum (one per 8x8 matrix). 128 bytes apart, every row is in banks 0-3: 32 wavefronts.
  CHECK(emu::profile_log()[0].shared_load.requests == 1);
  CHECK(emu::profile_log()[0].shared_load.units == 4);
  CHECK(emu::profile_log()[0].shared_load.bytes == 32 * 16);
  CHECK(emu::profile_log()[1].shared_load.requests == 1);
  CHECK(emu::profile_log()[1].shared_load.units == 32);
  CHECK(emu::profile_log()[0].hmma == 1);  // one HMMA.1688.F32.TF32
  CHECK(emu::profile_log()[0].tensor_flops == 2.0 * 16 * 8 * 8);
  CHECK(out.download() == std::vector<float>(32, 1.0f));
}
