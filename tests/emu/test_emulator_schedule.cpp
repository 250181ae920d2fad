// Seeded random schedules (kernels/kiln/gpu/emu_schedule.hpp) and exact-size device allocations
// under AddressSanitizer (kernels/kiln/gpu/memory.hpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "kiln/gpu/gpu.hpp"
#include "child_process.hpp"
#include "test_emulator_support.hpp"

using kiln::test::ChildRun;
using kiln::test::run_in_child;
using kiln_emu_test::DeviceBuffer;

namespace {

#if !KILN_EMU_THREADS
// The order in which the threads ran, before and after a barrier.
__global__ void record_order(unsigned* before, unsigned* after, unsigned* counters) {
  before[threadIdx.x] = atomicAdd(&counters[0], 1u);
  __syncthreads();
  after[threadIdx.x] = atomicAdd(&counters[1], 1u);
}

struct Orders {
  std::vector<unsigned> before, after;
};

Orders run_order(kiln::gpu::emu::Schedule schedule, std::uint64_t seed) {
  kiln_emu_test::ScopedSchedule scoped(schedule);
  kiln::gpu::emu::set_schedule_seed(seed);
  DeviceBuffer<unsigned> before(64), after(64), counters(std::vector<unsigned>{0, 0});
  KILN_LAUNCH(record_order, dim3(1), dim3(64), 0, nullptr, before.get(), after.get(), counters.get());
  kiln::gpu::emu::set_schedule_seed(1);
  return {before.download(), after.download()};
}
#endif

// Writes out[i] for i <= n: one element too many.
[[maybe_unused]] __global__ void store_one_past_the_end(float* out, unsigned n) {
  for (unsigned i = threadIdx.x; i <= n; i += blockDim.x) out[i] = 1.0f;
}

// offset 1 instead of 0 (or 4): every float4 load lands 4 bytes past a 16-byte boundary.
[[maybe_unused]] __global__ void load_float4_from(const float* in, float* out, unsigned offset) {
  const float4 v = *reinterpret_cast<const float4*>(in + offset + 4 * threadIdx.x);
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

}  // namespace

#if !KILN_EMU_THREADS  // OS-thread mode has no schedule of its own: the OS interleaves the threads
TEST_CASE("random schedule: a fresh permutation per sweep, reproducible from the seed") {
  using kiln::gpu::emu::Schedule;
  std::vector<unsigned> identity(64);
  std::iota(identity.begin(), identity.end(), 0u);
  const Orders forward = run_order(Schedule::forward, 1);
  CHECK(forward.before == identity);
  CHECK(forward.after == identity);
  const Orders a = run_order(Schedule::random, 7), b = run_order(Schedule::random, 7),
               c = run_order(Schedule::random, 8);
  CHECK(a.before == b.before);
  CHECK(a.after == b.after);
  CHECK(a.before != identity);
  CHECK(a.before != a.after);  // each sweep draws a new order
  CHECK(a.before != c.before);
  std::vector<unsigned> sorted = a.before;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == identity);  // every thread ran exactly once
}

TEST_CASE("random schedule: the schedule's text names the seed") {
  kiln_emu_test::ScopedSchedule scoped(kiln::gpu::emu::Schedule::random);
  kiln::gpu::emu::set_schedule_seed(123);
  CHECK(kiln::gpu::emu::schedule_text() == "random:123");
  kiln::gpu::emu::set_schedule_seed(1);
}
#endif

// Allocations used to be rounded up to 256 bytes, so an overrun by one element stayed inside the
// allocation and AddressSanitizer saw nothing. In a child process: ASan must stop it.
TEST_CASE("exact-size device allocations: ASan reports a store one element past the end" *
          doctest::skip(!KILN_EMU_ASAN)) {
#if KILN_EMU_ASAN
  const ChildRun child = run_in_child([] {
    DeviceBuffer<float> out(100);
    KILN_LAUNCH(store_one_past_the_end, dim3(1), dim3(32), 0, nullptr, out.get(),
                100u);  // one block: no worker threads
  });
  INFO(child.stderr_text);
  CHECK(!child.exited_cleanly);
  CHECK(child.stderr_text.find("heap-buffer-overflow") != std::string::npos);
  CHECK(child.stderr_text.find("0 bytes ") != std::string::npos);  // "0 bytes to the right of" / "0 bytes after"
  CHECK(child.stderr_text.find("400-byte region") != std::string::npos);
  // The same kernel within bounds is fine.
  DeviceBuffer<float> out(100);
  KILN_LAUNCH(store_one_past_the_end, dim3(1), dim3(32), 0, nullptr, out.get(), 99u);
  CHECK(out.download() == std::vector<float>(100, 1.0f));
#endif
}

// The sanitizer build leaves UBSan's alignment check out but for the code that runs kernels
// (CMakeLists.txt, KILN_RUNS_KERNELS): there a vector load from a misaligned address, which faults
// on a GPU, must still stop the run. In a child process, as above. g++ only: clang 14's UBSan checks
// the alignment of a reference bound or a member read through the pointer, not of a whole struct
// copied from it (`float4 v = *p`, this kernel's idiom and the usual one).
#if defined(__clang__)
constexpr bool kUbsanChecksStructCopies = false;
#else
constexpr bool kUbsanChecksStructCopies = true;
#endif
TEST_CASE("misaligned vector loads: UBSan reports a float4 load 4 bytes past a 16-byte boundary" *
          doctest::skip(!KILN_EMU_ASAN || !kUbsanChecksStructCopies)) {
#if KILN_EMU_ASAN
  DeviceBuffer<float> in(std::vector<float>(4 * 32 + 4, 1.0f)), out(32);
  const ChildRun child =
      run_in_child([&] { KILN_LAUNCH(load_float4_from, dim3(1), dim3(32), 0, nullptr, in.get(), out.get(), 1u); });
  INFO(child.stderr_text);
  CHECK(!child.exited_cleanly);
  CHECK(child.stderr_text.find("misaligned address") != std::string::npos);
  CHECK(child.stderr_text.find("16 byte alignment") != std::string::npos);
  // Aligned, the same kernel runs.
  KILN_LAUNCH(load_float4_from, dim3(1), dim3(32), 0, nullptr, in.get(), out.get(), 4u);
  CHECK(out.download() == std::vector<float>(32, 4.0f));
#endif
}
