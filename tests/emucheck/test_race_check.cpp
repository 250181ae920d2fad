// The emulator's race, init and bounds checks and its traffic counters (kernels/kiln/gpu/emu_check.hpp,
// emu_profile.hpp), in the checking build only (KILN_EMU_CHECK, tests/emucheck.cmake): each check
// is shown to fire on a kernel with that bug, and to stay quiet on the corrected kernel. The kernels
// live in namespace kiln_check_kernels, which the instrumentation allowlist names.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "emu/test_emulator_support.hpp"
#include "conv2d_mma_wgrad.cuh"
#include "kiln/gpu/gpu.hpp"

static_assert(KILN_EMU_CHECK, "tests/emucheck is compiled only in the checking build");

namespace kiln_check_kernels {

// Correct: a tree reduction in dynamic shared memory, one barrier per level.
template <class T>
__global__ void tree_sum(const T* in, T* out) {
  T* s = kiln::gpu::dynamic_shared<T>();
  const unsigned t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (t < half) s[t] += s[t + half];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// Bug: reads the neighbour's fresh value without a barrier (read-after-write).
__global__ void read_after_write(float* out) {
  float* s = kiln::gpu::dynamic_shared<float>();
  const unsigned t = threadIdx.x, n = blockDim.x;
  s[t] = 0.0f;
  __syncthreads();
  s[t] = static_cast<float>(t);
  out[t] = s[(t + n - 1) % n];
}

// Bug: overwrites its own slot while the neighbour may still read it (write-after-read).
__global__ void write_after_read(float* out) {
  float* s = kiln::gpu::dynamic_shared<float>();
  const unsigned t = threadIdx.x, n = blockDim.x;
  s[t] = static_cast<float>(t);
  __syncthreads();
  const float next = s[(t + 1) % n];
  s[t] = next;  // missing __syncthreads() before this store
  out[t] = next;
}

// Bug: every thread writes the same word (write-after-write).
__global__ void write_after_write(float* out) {
  __shared__ float flag;
  flag = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = flag;
}

// Bug: reads shared memory nobody wrote; `fixed` writes it first.
__global__ void uninitialised_read(float* out, bool fixed) {
  __shared__ float tile[64];
  if (fixed) tile[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

// Lanes of one warp exchange through shared memory: correct with __syncwarp, a race without.
__global__ void warp_exchange(float* out, bool sync) {
  float* s = kiln::gpu::dynamic_shared<float>();
  const unsigned t = threadIdx.x;
  s[t] = 0.0f;
  __syncthreads();
  s[t] = static_cast<float>(t);
  if (sync) __syncwarp();
  out[t] = s[t ^ 1u];
}

// Bug: a barrier only half the block reaches.
__global__ void half_barrier(float* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1.0f;
}

// Bug: writes one element past the end of `out` (n elements).
__global__ void overrun(float* out, unsigned n) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) out[i] = 1.0f;  // should be i < n
}

// Access patterns with known coalescing and bank conflicts (one warp).
__global__ void patterns(const float* in, float* out, const double* in64) {
  float* s = kiln::gpu::dynamic_shared<float>();
  const unsigned lane = threadIdx.x;
  float x = in[lane];                   // global, coalesced: 4 sectors
  x += in[lane * 32];                   // global, stride 128 bytes: 32 sectors
  x += static_cast<float>(in64[lane]);  // global, 8 bytes coalesced: 8 sectors
  s[lane] = x;                          // shared store, conflict free: 1 wavefront
  s[1024 + lane * 32] = x;              // shared store, every lane in bank 0: 32 wavefronts
  s[2048 + lane * 2] = x;               // shared store, stride 2 words: 2-way conflict, 2 wavefronts
  __syncthreads();
  float y = s[lane];         // 1 wavefront
  y += s[1024 + lane * 32];  // 32
  y += s[0];                 // broadcast: 1
  y += s[2048 + lane * 2];   // stride 2 words: 2-way conflict, 2 wavefronts
  out[lane] = y;             // global store, coalesced: 4 sectors
}

// A 16-byte shared load per lane, rows `stride_floats` apart: one LDS.128 on the GPU (clang's x86
// build splits it into four 4-byte loads, which the counters merge back).
__global__ void vector_loads(float* out, unsigned stride_floats) {
  float* s = kiln::gpu::dynamic_shared<float>();
  for (unsigned i = threadIdx.x; i < 32 * stride_floats; i += 32) s[i] = 1.0f;
  __syncthreads();
  const float4 v = *reinterpret_cast<const float4*>(s + threadIdx.x * stride_floats);
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

// Appends the thread id to `log` twice (two global stores per thread).
__global__ void interleaving(unsigned* log, unsigned* counter) {
  log[atomicAdd(counter, 1u)] = threadIdx.x;
  log[atomicAdd(counter, 1u)] = threadIdx.x;
}

}  // namespace kiln_check_kernels

namespace {

using kiln_emu_test::DeviceBuffer;
namespace ck = kiln_check_kernels;

std::string launch_error(const auto& run) {
  try {
    run();
  } catch (const kiln::gpu::Error& e) {
    return e.what();
  }
  return "";
}

class ScopedProfile {
 public:
  ScopedProfile() {
    kiln::gpu::emu::profile_log().clear();
    kiln::gpu::emu::set_profile(true);
  }
  ~ScopedProfile() { kiln::gpu::emu::set_profile(false); }
  ScopedProfile(const ScopedProfile&) = delete;
  ScopedProfile& operator=(const ScopedProfile&) = delete;
};

}  // namespace

TEST_CASE("race check: a correct tree reduction passes under every schedule") {
  using kiln::gpu::emu::Schedule;
  std::vector<float> host(4 * 64);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i % 7);
  DeviceBuffer<float> in(host), out(4);
  for (Schedule schedule : {Schedule::forward, Schedule::reverse, Schedule::random}) {
    kiln_emu_test::ScopedSchedule scoped(schedule);
    KILN_LAUNCH(ck::tree_sum<float>, dim3(4), dim3(64), 64 * sizeof(float), nullptr, in.get(), out.get());
    const std::vector<float> sums = out.download();
    for (unsigned b = 0; b < 4; ++b) {
      float expected = 0;
      for (unsigned i = 0; i < 64; ++i) expected += host[b * 64 + i];
      CHECK(sums[b] == expected);
    }
  }
}

TEST_CASE("race check: read-after-write without a barrier") {
  DeviceBuffer<float> out(64);
  const std::string error = launch_error(
      [&] { KILN_LAUNCH(ck::read_after_write, dim3(1), dim3(64), 64 * sizeof(float), nullptr, out.get()); });
  INFO(error);
  CHECK(error.find("read-after-write race") != std::string::npos);
  CHECK(error.find("dynamic shared memory at byte offset 0") != std::string::npos);
  CHECK(error.find("thread (1,0,0)") != std::string::npos);
}

TEST_CASE("race check: write-after-read without a barrier") {
  DeviceBuffer<float> out(64);
  const std::string error = launch_error(
      [&] { KILN_LAUNCH(ck::write_after_read, dim3(1), dim3(64), 64 * sizeof(float), nullptr, out.get()); });
  INFO(error);
  CHECK(error.find("write-after-read race") != std::string::npos);
}

TEST_CASE("race check: write-after-write to one static __shared__ word") {
  DeviceBuffer<float> out(64);
  const std::string error =
      launch_error([&] { KILN_LAUNCH(ck::write_after_write, dim3(1), dim3(64), 0, nullptr, out.get()); });
  INFO(error);
  CHECK(error.find("write-after-write race") != std::string::npos);
  CHECK(error.find("static __shared__ memory") != std::string::npos);
}

TEST_CASE("init check: reading shared memory no thread wrote") {
  DeviceBuffer<float> out(64);
  // Two blocks: the second finds the first block's values in the static array and must still fail.
  const std::string error =
      launch_error([&] { KILN_LAUNCH(ck::uninitialised_read, dim3(2), dim3(64), 0, nullptr, out.get(), false); });
  INFO(error);
  CHECK(error.find("no thread of its block (or cluster) has written") != std::string::npos);
  KILN_LAUNCH(ck::uninitialised_read, dim3(2), dim3(64), 0, nullptr, out.get(), true);
  CHECK(out.download() == std::vector<float>(64, 1.0f));
  // The first block of a launch writes; a second launch's block reading without writing still fails.
  CHECK(launch_error([&] { KILN_LAUNCH(ck::uninitialised_read, dim3(1), dim3(64), 0, nullptr, out.get(), false); }) !=
        "");
}

TEST_CASE("race check: lanes of one warp are ordered by __syncwarp, not otherwise") {
  DeviceBuffer<float> out(64);
  KILN_LAUNCH(ck::warp_exchange, dim3(1), dim3(64), 64 * sizeof(float), nullptr, out.get(), true);
  const std::vector<float> values = out.download();
  for (unsigned t = 0; t < 64; ++t) CHECK(values[t] == static_cast<float>(t ^ 1u));
  const std::string error = launch_error(
      [&] { KILN_LAUNCH(ck::warp_exchange, dim3(1), dim3(64), 64 * sizeof(float), nullptr, out.get(), false); });
  INFO(error);
  CHECK(error.find("write-after-read race") != std::string::npos);  // lane 1 overwrites what lane 0 read
}

TEST_CASE("sync check: a barrier not reached by every thread of the block") {
  DeviceBuffer<float> out(32);
  const std::string error =
      launch_error([&] { KILN_LAUNCH(ck::half_barrier, dim3(1), dim3(32), 0, nullptr, out.get()); });
  INFO(error);
  CHECK(error.find("deadlock") != std::string::npos);
  CHECK(error.find("A barrier (__syncthreads) must be reached by every thread") != std::string::npos);
}

TEST_CASE("bounds check: a store one element past the end of a device allocation") {
  DeviceBuffer<float> out(100);
  const std::string error =
      launch_error([&] { KILN_LAUNCH(ck::overrun, dim3(4), dim3(32), 0, nullptr, out.get(), 100u); });
  INFO(error);
  CHECK(error.find("0 byte(s) past the end of a 400-byte device allocation") != std::string::npos);
  KILN_LAUNCH(ck::overrun, dim3(4), dim3(32), 0, nullptr, out.get(), 99u);  // the last valid index
}

TEST_CASE("traffic counters: sectors per global request and wavefronts per shared request") {
  std::vector<float> host(32 * 32, 1.0f);
  DeviceBuffer<float> in(host), out(32);
  DeviceBuffer<double> in64(std::vector<double>(32, 2.0));
  ScopedProfile profile;
  KILN_LAUNCH(ck::patterns, dim3(1), dim3(32), 3072 * sizeof(float), nullptr, in.get(), out.get(), in64.get());
  REQUIRE(kiln::gpu::emu::profile_log().size() == 1);
  const kiln::gpu::emu::LaunchProfile& p = kiln::gpu::emu::profile_log()[0];
  CHECK(p.kernel == "ck::patterns");
  CHECK(p.global_load.requests == 3);
  CHECK(p.global_load.units == 4 + 32 + 8);
  CHECK(p.global_load.bytes == 32 * (4 + 4 + 8));
  CHECK(p.global_load.distinct_bytes == 32 * (4 + 4 + 8));
  CHECK(p.shared_load.bytes == 4 * 32 * 4);
  CHECK(p.shared_load.distinct_bytes == 3 * 32 * 4 + 4);  // the broadcast read of s[0] is 4 distinct bytes
  CHECK(p.global_store.requests == 1);
  CHECK(p.global_store.units == 4);
  CHECK(p.shared_store.requests == 3);
  CHECK(p.shared_store.units == 1 + 32 + 2);
  CHECK(p.shared_load.requests == 4);
  CHECK(p.shared_load.units == 1 + 32 + 1 + 2);
  // Distinct global sectors: in[0..31] and in[32*lane] (4 + 31 more), in64 (8), out (4).
  CHECK(p.global_distinct_bytes == 32.0 * (4 + 31 + 8 + 4));
  CHECK(out.download() == std::vector<float>(32, 16.0f));  // x = 1 + 1 + 2, y = 4 x
}

TEST_CASE(
    "traffic counters: a 16-byte vector load is one request (4 wavefronts conflict-free, 8 with a 32-byte stride)") {
  DeviceBuffer<float> out(32);
  ScopedProfile profile;
  // Stride 4 floats: 512 contiguous bytes, 4 words per bank. Stride 8: banks 0-3, 8-11, 16-19,
  // 24-27 only, 8 words each.
  KILN_LAUNCH(ck::vector_loads, dim3(1), dim3(32), 32 * 4 * sizeof(float), nullptr, out.get(), 4u);
  KILN_LAUNCH(ck::vector_loads, dim3(1), dim3(32), 32 * 8 * sizeof(float), nullptr, out.get(), 8u);
  REQUIRE(kiln::gpu::emu::profile_log().size() == 2);
  for (const auto& [p, wavefronts] :
       {std::pair{&kiln::gpu::emu::profile_log()[0], 4.0}, {&kiln::gpu::emu::profile_log()[1], 8.0}}) {
    CHECK(p->shared_load.requests == 1);
    CHECK(p->shared_load.bytes == 32 * 16);
    CHECK(p->shared_load.units == wavefronts);
  }
  CHECK(out.download() == std::vector<float>(32, 4.0f));
}

// The counters must see what the kernel's code issues: one shared store request per cp.async of a
// warp. The weight gradient's tap-pair tile on 8 x 8 images (4 k steps, 5 blocks of 4 warps, the
// last with one tap): per k step, a full block's warps copy a_chunks_per_thread 16-byte dy chunks and
// b_copies_per_thread 4-byte x rows each, the last block's half the x rows. (When clang inlined
// cp_async into this kernel, the NaN it writes into the destination until the copy lands was
// counted as a second store per copy: 4768 requests.)
TEST_CASE("traffic counters: a cp.async is one shared store request (the weight gradient's tap-pair tile)") {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  using T = mw::Tile<64, 128, 2>;
  const kiln::ConvShape s{1, 128, 64, 8, 8, 3};
  REQUIRE(mw::geometry(s) == mw::Geometry{64, 128, 2, false});
  DeviceBuffer<float> x(std::vector<float>(128 * 64, 0.5f)), dy(std::vector<float>(64 * 64, 0.25f)),
      dw(std::vector<float>(64 * 128 * 9, 0.0f));
  kiln::gpu::emu::profile_log().clear();
  kiln::gpu::emu::set_profile(true);
  mw::backward_weight(s, x.get(), dy.get(), dw.get(), nullptr, true);
  kiln::gpu::emu::set_profile(false);
  REQUIRE(kiln::gpu::emu::profile_log().size() == 1);
  const kiln::gpu::emu::LaunchProfile& p = kiln::gpu::emu::profile_log()[0];
  const int warps = T::threads / 32, steps = 4;
  const double full = warps * (T::a_chunks_per_thread + T::b_copies_per_thread);
  const double last = warps * (T::a_chunks_per_thread + T::b_copies_per_tap);
  CHECK(p.shared_store.requests == steps * (4 * full + last));
  CHECK(p.shared_store.requests == 2464);
  CHECK(dw.download()[0] == doctest::Approx(0.5f * 0.25f * 49));  // tap (0, 0): 7 x 7 of the 64 pixels
}

TEST_CASE("traffic counters: sampled blocks are scaled to the whole grid") {
  std::vector<float> host(512 * 64, 1.0f);
  DeviceBuffer<float> in(host), out(512);
  ScopedProfile profile;
  KILN_LAUNCH(ck::tree_sum<float>, dim3(512), dim3(64), 64 * sizeof(float), nullptr, in.get(), out.get());
  const kiln::gpu::emu::LaunchProfile& p = kiln::gpu::emu::profile_log().at(0);
  CHECK(p.sampled_blocks == 64);
  CHECK(p.global_load.requests == 512 * 2);  // two warps per block, one load each
  CHECK(p.global_load.units == 512 * 2 * 4);
  CHECK(p.global_distinct_bytes == 4.0 * (512 * 64 + 512));
}

TEST_CASE("traffic counters: sampled-only mode runs only the sampled blocks and extrapolates") {
  std::vector<float> host(512 * 64, 1.0f);
  DeviceBuffer<float> in(host), out(512);
  out.zero();
  ScopedProfile profile;
  kiln::gpu::emu::set_profile_sampled_only(true);
  KILN_LAUNCH(ck::tree_sum<float>, dim3(512), dim3(64), 64 * sizeof(float), nullptr, in.get(), out.get());
  kiln::gpu::emu::set_profile_sampled_only(false);
  const kiln::gpu::emu::LaunchProfile& p = kiln::gpu::emu::profile_log().at(0);
  const std::vector<float> sums = out.download();
  CHECK(sums[0] == 64.0f);  // block 0 is sampled and ran
  CHECK(sums[1] == 0.0f);   // block 1 was skipped
  CHECK(p.global_load.requests == 512 * 2);
  CHECK(p.global_load.units == 512 * 2 * 4);
  // True distinct bytes: 512 x 256 input + 2048 output; every 8th block writes its own output
  // sector, so the estimate counts 512 output sectors where there are 64 (+11 %).
  const double truth = 4.0 * (512 * 64 + 512);
  CHECK(p.global_distinct_bytes >= truth);
  CHECK(p.global_distinct_bytes <= 1.15 * truth);
}

TEST_CASE("random schedule: threads yield at memory operations, reproducibly per seed") {
  auto run = [](std::uint64_t seed) {
    kiln_emu_test::ScopedSchedule scoped(kiln::gpu::emu::Schedule::random);
    kiln::gpu::emu::set_schedule_seed(seed);
    DeviceBuffer<unsigned> log(64), counter(std::vector<unsigned>{0});
    KILN_LAUNCH(ck::interleaving, dim3(1), dim3(32), 0, nullptr, log.get(), counter.get());
    return log.download();
  };
  const std::vector<unsigned> a = run(5), b = run(5), c = run(6);
  kiln::gpu::emu::set_schedule_seed(1);
  CHECK(a == b);
  CHECK(a != c);
  // Without yields every thread's two entries would be adjacent.
  unsigned split = 0;
  for (std::size_t i = 0; i + 1 < a.size(); i += 2) split += a[i] != a[i + 1];
  CHECK(split > 0);
}

TEST_CASE("random schedule: a failure names the seed that reproduces it") {
  kiln_emu_test::ScopedSchedule scoped(kiln::gpu::emu::Schedule::random);
  kiln::gpu::emu::set_schedule_seed(42);
  DeviceBuffer<float> out(64);
  const std::string error = launch_error(
      [&] { KILN_LAUNCH(ck::write_after_read, dim3(1), dim3(64), 64 * sizeof(float), nullptr, out.get()); });
  kiln::gpu::emu::set_schedule_seed(1);
  INFO(error);
  CHECK(error.find("race") != std::string::npos);
  CHECK(error.find("KILN_EMU_SCHEDULE=random:42") != std::string::npos);
}
