// Kernel bugs the emulator must catch: missing barriers, uninitialised shared memory, divergent
// barriers, warp collectives after lanes returned, and launch configurations a GPU refuses. Each is
// reported by kiln::gpu::launch throwing kiln::gpu::Error (or, for races, by a wrong result).
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "kiln/gpu/gpu.hpp"
#include "test_emulator_support.hpp"

using kiln_emu_test::DeviceBuffer;

namespace {

constexpr unsigned full_mask = 0xffffffffu;

#if !KILN_EMU_THREADS
// Tree reduction without the barrier inside the loop: a data race.
__global__ void sum_missing_loop_barrier(const float* in, float* out) {
  __shared__ float cache[256];
  const unsigned t = threadIdx.x;
  cache[t] = in[t];
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (t < stride) cache[t] += cache[t + stride];
  }
  if (t == 0) *out = cache[0];
}

// Tree reduction in dynamic shared memory without the barrier after the loads.
__global__ void sum_missing_load_barrier(const float* in, float* out) {
  float* cache = kiln::gpu::dynamic_shared<float>();
  const unsigned t = threadIdx.x;
  cache[t] = in[t];
  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (t < stride) cache[t] += cache[t + stride];
    __syncthreads();
  }
  if (t == 0) *out = cache[0];
}
#endif

__global__ void read_uninitialised_shared(float* out) {
  const float* shared = kiln::gpu::dynamic_shared<float>();
  out[threadIdx.x] = shared[threadIdx.x];
}

__global__ void barrier_in_condition(float* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = 1.0f;
    __syncthreads();
  }
}

__global__ void barriers_at_different_places(float* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 0.0f;
}

__global__ void shuffle_after_half_warp_returned(float* out) {
  if (threadIdx.x < 16) return;
  out[threadIdx.x] = __shfl_down_sync(full_mask, 1.0f, 1);
}

__global__ void lanes_disagree(unsigned* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __ballot_sync(full_mask, 1);
  else
    out[threadIdx.x] = static_cast<unsigned>(__shfl_sync(full_mask, 1, 0));
}

__global__ void mask_without_own_lane(unsigned* out) { out[threadIdx.x] = __ballot_sync(0x1u, 1); }

__global__ void throws_from_kernel(float*) {
  if (threadIdx.x == 7) throw std::runtime_error("boom");
  __syncthreads();
}

__global__ void trivial(float* out) { out[threadIdx.x] = static_cast<float>(threadIdx.x); }

std::string launch_error(auto&& launch) {
  try {
    launch();
  } catch (const kiln::gpu::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

#if !KILN_EMU_THREADS  // with OS threads these races are nondeterministic (ThreadSanitizer reports them)
TEST_CASE("emulator: a reduction missing its loop barrier gives a wrong answer") {
  std::vector<float> host(256);
  std::iota(host.begin(), host.end(), 1.0f);
  const float right = std::accumulate(host.begin(), host.end(), 0.0f);
  DeviceBuffer<float> in(host), out(1);
  for (int run = 0; run < 3; ++run) {
    KILN_LAUNCH(sum_missing_loop_barrier, 1, 256, 0, nullptr, in.get(), out.get());
    CHECK(out.download()[0] != right);
  }
}

TEST_CASE("emulator: a reduction missing the barrier after its loads gives a wrong answer") {
  std::vector<float> host(256, 1.0f);
  DeviceBuffer<float> in(host), out(1);
  // Forward order: thread 0 reads cache[128] before thread 128 stored it, and finds NaN. (In
  // reverse order every read would find its value already stored: each order hides some races.)
  kiln_emu_test::ScopedSchedule scoped(kiln::gpu::emu::Schedule::forward);
  KILN_LAUNCH(sum_missing_load_barrier, 1, 256, 256 * sizeof(float), nullptr, in.get(), out.get());
  CHECK(std::isnan(out.download()[0]));
}
#endif

TEST_CASE("emulator: uninitialised dynamic shared memory reads as NaN") {
  DeviceBuffer<float> out(64);
  KILN_LAUNCH(read_uninitialised_shared, 1, 64, 64 * sizeof(float), nullptr, out.get());
  for (float v : out.download()) CHECK(std::isnan(v));
}

TEST_CASE("emulator: a barrier inside if (threadIdx.x < 16) is reported") {
  DeviceBuffer<float> out(32);
  const std::string error = launch_error([&] { KILN_LAUNCH(barrier_in_condition, 1, 32, 0, nullptr, out.get()); });
  MESSAGE(error);
  CHECK(contains(error, "deadlock"));
  CHECK(contains(error, "barrier_in_condition"));
  CHECK(contains(error, "threads (linear ids) 0-15 [16 of 32] wait in __syncthreads()"));
  CHECK(contains(error, "test_emulator_errors.cpp:"));
  CHECK(contains(error, "16-31 [16 of 32] have exited"));
}

TEST_CASE("emulator: threads at different barriers are reported") {
  DeviceBuffer<float> out(8);
  const std::string error =
      launch_error([&] { KILN_LAUNCH(barriers_at_different_places, 1, 8, 0, nullptr, out.get()); });
  CHECK(contains(error, "different barriers"));
}

TEST_CASE("emulator: a full-mask shuffle after half the warp returned is reported") {
  for (auto schedule : {kiln::gpu::emu::Schedule::forward, kiln::gpu::emu::Schedule::reverse}) {
    kiln_emu_test::ScopedSchedule scoped(schedule);
    DeviceBuffer<float> out(32);
    const std::string error =
        launch_error([&] { KILN_LAUNCH(shuffle_after_half_warp_returned, 1, 32, 0, nullptr, out.get()); });
    MESSAGE(error);
    CHECK(contains(error, "__shfl_down_sync()"));
    CHECK(contains(error, "exited"));
#if KILN_EMU_THREADS
    // Real threads: a lane of 16-31 may reach the shuffle before all of lanes 0-15 have returned, so
    // only those that have are named ("lanes 0-14", "lanes 0-3, 5-7" were seen); the fiber schedule
    // is exact.
    CHECK(contains(error, "of warp 0 named in the mask have already exited"));
#else
    CHECK(contains(error, "0-15"));
#endif
  }
}

TEST_CASE("emulator: lanes calling different warp intrinsics are reported") {
  DeviceBuffer<unsigned> out(32);
  const std::string error = launch_error([&] { KILN_LAUNCH(lanes_disagree, 1, 32, 0, nullptr, out.get()); });
  CHECK(contains(error, "disagree"));
}

TEST_CASE("emulator: a mask without the caller's lane is reported") {
  DeviceBuffer<unsigned> out(32);
  const std::string error = launch_error([&] { KILN_LAUNCH(mask_without_own_lane, 1, 32, 0, nullptr, out.get()); });
  CHECK(contains(error, "does not include its own lane"));
}

TEST_CASE("emulator: an exception thrown by a kernel thread fails the launch") {
  DeviceBuffer<float> out(32);
  const std::string error = launch_error([&] { KILN_LAUNCH(throws_from_kernel, 4, 32, 0, nullptr, out.get()); });
  CHECK(contains(error, "boom"));
  CHECK(contains(error, "linear 7"));
}

TEST_CASE("emulator: launch configurations a GPU refuses") {
  DeviceBuffer<float> out(32);
  auto attempt = [&](dim3 grid, dim3 block, std::size_t shared) {
    return launch_error([&] { KILN_LAUNCH(trivial, grid, block, shared, nullptr, out.get()); });
  };
  CHECK(contains(attempt(1, 2048, 0), "2048 threads"));
  CHECK(contains(attempt(1, 2048, 0), "trivial"));
  CHECK(contains(attempt(1, dim3(1, 1, 65), 0), "(1024,1024,64)"));
  CHECK(contains(attempt(1, dim3(32, 33), 0), "1056 threads"));
  CHECK(contains(attempt(0, 32, 0), "no blocks"));
  CHECK(contains(attempt(1, dim3(0, 1), 0), "no threads"));
  CHECK(contains(attempt(dim3(1, 65536), 32, 0), "exceeds the limits"));
  CHECK(contains(attempt(1, 32, 64 * 1024), "set_max_dynamic_shared"));
  CHECK(contains(attempt(1, 32, 228 * 1024), "227 KiB"));
  CHECK_THROWS_AS(kiln::gpu::set_max_dynamic_shared(trivial, 300 * 1024), kiln::gpu::Error);
}

TEST_CASE("emulator: launches work normally after a failed one") {
  DeviceBuffer<float> out(32);
  CHECK_THROWS_AS(KILN_LAUNCH(barrier_in_condition, 3, 32, 0, nullptr, out.get()), kiln::gpu::Error);
  KILN_LAUNCH(trivial, 1, 32, 0, nullptr, out.get());
  CHECK(out.download()[31] == 31.0f);
}

TEST_CASE("emulator: intrinsics outside a kernel throw") { CHECK_THROWS_AS(__syncthreads(), kiln::gpu::Error); }
