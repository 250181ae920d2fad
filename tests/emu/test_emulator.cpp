// The emulator runs correct CUDA kernels with CUDA's semantics: shared memory, barriers, warp
// collectives, atomics, dynamic shared memory, multi-dimensional indices.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

#include "kiln/gpu/gpu.hpp"
#include "test_emulator_support.hpp"

using kiln_emu_test::DeviceBuffer;

namespace {

constexpr unsigned full_mask = 0xffffffffu;

// ---- kernels ----------------------------------------------------------------------------------

// Classic shared-memory tree reduction: one partial sum per block.
__global__ void block_sum(const float* in, float* partial, int n) {
  __shared__ float cache[256];
  const unsigned t = threadIdx.x;
  const unsigned i = blockIdx.x * blockDim.x + t;
  cache[t] = i < static_cast<unsigned>(n) ? in[i] : 0.0f;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (t < stride) cache[t] += cache[t + stride];
    __syncthreads();
  }
  if (t == 0) partial[blockIdx.x] = cache[0];
}

// Hillis-Steele inclusive scan of one block, in place with a barrier between read and write.
__global__ void block_inclusive_scan(const int* in, int* out) {
  __shared__ int values[128];
  const unsigned t = threadIdx.x;
  values[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned offset = 1; offset < blockDim.x; offset <<= 1) {
    const int add = t >= offset ? values[t - offset] : 0;
    __syncthreads();
    values[t] += add;
    __syncthreads();
  }
  out[blockIdx.x * blockDim.x + t] = values[t];
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(full_mask, v, offset);
  return v;
}

// Shuffle reduction: warp sums, then the warp sums of the block through shared memory.
__global__ void shuffle_sum(const float* in, float* out, int n) {
  __shared__ float warp_sums[32];
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const float v = warp_sum(i < static_cast<unsigned>(n) ? in[i] : 0.0f);
  const unsigned lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const float s = warp_sum(lane < blockDim.x / warpSize ? warp_sums[lane] : 0.0f);
    if (lane == 0) atomicAdd(out, s);
  }
}

// Every shuffle flavour, results per lane.
__global__ void shuffle_flavours(const int* in, int* xor_sum, int* up_scan, int* broadcast, int* rotate,
                                 int* group_sum) {
  const unsigned lane = threadIdx.x;
  const int v = in[lane];
  int s = v;
  for (int m = 16; m > 0; m >>= 1) s += __shfl_xor_sync(full_mask, s, m);
  xor_sum[lane] = s;
  int scan = v;
  for (unsigned d = 1; d < 32; d <<= 1) {
    const int other = __shfl_up_sync(full_mask, scan, d);
    if (lane >= d) scan += other;
  }
  up_scan[lane] = scan;
  broadcast[lane] = __shfl_sync(full_mask, v, 5);
  rotate[lane] = __shfl_sync(full_mask, v, static_cast<int>(lane) + 1);  // source wraps modulo 32
  int g = v;
  for (int m = 4; m > 0; m >>= 1) g += __shfl_xor_sync(full_mask, g, m, 8);
  group_sum[lane] = g;
}

__global__ void votes(const int* in, unsigned* ballots, int* any_odd, int* all_odd, int* count) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const int odd = in[i] % 2;
  const unsigned ballot = __ballot_sync(full_mask, odd);
  const int any = __any_sync(full_mask, odd), all = __all_sync(full_mask, odd);
  const int block_count = __syncthreads_count(odd);
  if (threadIdx.x % warpSize == 0) {
    const unsigned warp = i / warpSize;
    ballots[warp] = ballot;
    any_odd[warp] = any;
    all_odd[warp] = all;
  }
  if (threadIdx.x == 0) count[blockIdx.x] = block_count;
}

__global__ void histogram(const unsigned* in, int n, unsigned* bins, int bin_count) {
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < n;
       i += static_cast<int>(gridDim.x * blockDim.x))
    atomicAdd(&bins[in[i] % static_cast<unsigned>(bin_count)], 1u);
}

__global__ void atomic_mix(float* sum, int* maximum, int* minimum, unsigned* claimed, int* exchanged) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(sum, 0.5f);
  atomicMax(maximum, i);
  atomicMin(minimum, -i);
  if (atomicCAS(claimed, 0u, static_cast<unsigned>(i) + 1u) == 0u) atomicExch(exchanged, i);
}

// Reverses each block's chunk through dynamic shared memory.
__global__ void reverse_chunks(const float* in, float* out) {
  float* chunk = kiln::gpu::dynamic_shared<float>();
  const unsigned t = threadIdx.x, base = blockIdx.x * blockDim.x;
  chunk[t] = in[base + t];
  __syncthreads();
  out[base + t] = chunk[blockDim.x - 1 - t];
}

constexpr int tile = 32, tile_rows = 8;

// Transpose through a padded shared tile (coalesced reads and writes).
__global__ void transpose(const float* in, float* out, int rows, int cols) {
  __shared__ float block_tile[tile][tile + 1];
  int x = static_cast<int>(blockIdx.x) * tile + static_cast<int>(threadIdx.x);
  int y = static_cast<int>(blockIdx.y) * tile + static_cast<int>(threadIdx.y);
  for (int j = 0; j < tile; j += tile_rows)
    if (x < cols && y + j < rows) block_tile[threadIdx.y + j][threadIdx.x] = in[(y + j) * cols + x];
  __syncthreads();
  x = static_cast<int>(blockIdx.y) * tile + static_cast<int>(threadIdx.x);
  y = static_cast<int>(blockIdx.x) * tile + static_cast<int>(threadIdx.y);
  for (int j = 0; j < tile; j += tile_rows)
    if (x < rows && y + j < cols) out[(y + j) * rows + x] = block_tile[threadIdx.x][threadIdx.y + j];
}

// Records every thread's coordinates at its global linear position.
__global__ void record_indices(int* out) {
  const unsigned block_linear = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread_linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned threads_per_block = blockDim.x * blockDim.y * blockDim.z;
  int* slot = out + 6 * (block_linear * threads_per_block + thread_linear);
  slot[0] = static_cast<int>(threadIdx.x);
  slot[1] = static_cast<int>(threadIdx.y);
  slot[2] = static_cast<int>(threadIdx.z);
  slot[3] = static_cast<int>(blockIdx.x);
  slot[4] = static_cast<int>(blockIdx.y);
  slot[5] = static_cast<int>(blockIdx.z);
}

template <class T, int Scale>
__global__ void scale(T* data, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) data[i] *= Scale;
}

// Needs a deep fiber stack: a 64 KiB local array.
__global__ void big_locals(float* out) {
  float scratch[16384];
  for (int i = 0; i < 16384; ++i) scratch[i] = static_cast<float>(i % 7) * static_cast<float>(threadIdx.x);
  float s = 0.0f;
  for (int i = 0; i < 16384; i += 97) s += scratch[i];
  out[threadIdx.x] = s;
}

__global__ void add_vectors(const float* a, const float* b, float* c, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) c[i] = a[i] + b[i];
}

std::vector<float> iota_floats(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i % 97) * 0.25f - 3.0f;
  return v;
}

float sum_of(const std::vector<float>& v) { return static_cast<float>(std::accumulate(v.begin(), v.end(), 0.0)); }

// The fiber schedule order matters only in fiber mode; OS-thread mode (ThreadSanitizer) is slow,
// so it runs one order and smaller problems.
#if KILN_EMU_THREADS
const std::vector<kiln::gpu::emu::Schedule> schedules{kiln::gpu::emu::Schedule::forward};
constexpr int problem_scale = 8;
#else
const std::vector<kiln::gpu::emu::Schedule> schedules{kiln::gpu::emu::Schedule::forward,
                                                      kiln::gpu::emu::Schedule::reverse};
constexpr int problem_scale = 1;
#endif

}  // namespace

TEST_CASE("emulator: host API basics") {
  CHECK(kiln::gpu::emulated);
  CHECK_FALSE(kiln::gpu::device_available());
  CHECK(kiln::gpu::device_name().find("emulator") != std::string::npos);
  kiln::gpu::Stream stream;
  CHECK(stream.handle() != nullptr);
  CHECK(kiln::gpu::Stream::default_stream().handle() == nullptr);
  kiln::gpu::Stream moved = std::move(stream);
  CHECK(moved.handle() != nullptr);
  CHECK(stream.handle() == nullptr);
  moved.synchronize();
  kiln::gpu::synchronize();

  DeviceBuffer<float> fresh(5);
  for (float v : fresh.download()) CHECK(std::isnan(v));  // cudaMalloc does not zero: neither do we
  fresh.zero();
  for (float v : fresh.download()) CHECK(v == 0.0f);
  DeviceBuffer<float> copy(5);
  kiln::gpu::memcpy_device_to_device(copy.get(), fresh.get(), 5 * sizeof(float));
  CHECK(copy.download() == std::vector<float>(5, 0.0f));
  CHECK_THROWS_AS(kiln::gpu::memcpy_host_to_device(nullptr, copy.get(), 4), kiln::gpu::Error);
}

TEST_CASE("emulator: shared-memory tree reduction matches the CPU") {
  for (auto schedule : schedules) {
    kiln_emu_test::ScopedSchedule scoped(schedule);
    const int n = 10000 / problem_scale, threads = 256, blocks = (n + threads - 1) / threads;
    const std::vector<float> host = iota_floats(n);
    DeviceBuffer<float> in(host), partial(blocks);
    KILN_LAUNCH(block_sum, dim3(blocks), dim3(threads), 0, kiln::gpu::Stream::default_stream(), in.get(), partial.get(),
                n);
    CHECK(sum_of(partial.download()) == doctest::Approx(sum_of(host)).epsilon(1e-5));
  }
}

TEST_CASE("emulator: block-wide inclusive scan") {
  for (auto schedule : schedules) {
    kiln_emu_test::ScopedSchedule scoped(schedule);
    const int blocks = 3, threads = 128;
    std::vector<int> host(blocks * threads);
    for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<int>(i * 7 % 13) - 6;
    DeviceBuffer<int> in(host), out(host.size());
    KILN_LAUNCH(block_inclusive_scan, blocks, threads, 0, nullptr, in.get(), out.get());
    std::vector<int> expected(host.size());
    for (int b = 0; b < blocks; ++b)
      std::inclusive_scan(host.begin() + b * threads, host.begin() + (b + 1) * threads, expected.begin() + b * threads);
    CHECK(out.download() == expected);
  }
}

TEST_CASE("emulator: warp-shuffle reduction") {
  for (int n : {1, 31, 32, 1000, 4096 / problem_scale}) {
    const std::vector<float> host = iota_floats(static_cast<std::size_t>(n));
    DeviceBuffer<float> in(host), out(1);
    out.zero();
    KILN_LAUNCH(shuffle_sum, dim3((n + 255) / 256), dim3(256), 0, nullptr, in.get(), out.get(), n);
    CHECK(out.download()[0] == doctest::Approx(sum_of(host)).epsilon(1e-5));
  }
}

TEST_CASE("emulator: shuffle flavours (xor, up, idx, width)") {
  std::vector<int> host(32);
  for (int i = 0; i < 32; ++i) host[static_cast<std::size_t>(i)] = i * i - 5 * i + 3;
  DeviceBuffer<int> in(host), xor_sum(32), up_scan(32), broadcast(32), rotate(32), group_sum(32);
  KILN_LAUNCH(shuffle_flavours, 1, 32, 0, nullptr, in.get(), xor_sum.get(), up_scan.get(), broadcast.get(),
              rotate.get(), group_sum.get());
  const int total = std::accumulate(host.begin(), host.end(), 0);
  std::vector<int> scan(32);
  std::inclusive_scan(host.begin(), host.end(), scan.begin());
  for (std::size_t lane = 0; lane < 32; ++lane) {
    CHECK(xor_sum.download()[lane] == total);
    CHECK(up_scan.download()[lane] == scan[lane]);
    CHECK(broadcast.download()[lane] == host[5]);
    CHECK(rotate.download()[lane] == host[(lane + 1) % 32]);
    const std::size_t g = lane / 8 * 8;
    CHECK(group_sum.download()[lane] ==
          std::accumulate(host.begin() + static_cast<long>(g), host.begin() + static_cast<long>(g + 8), 0));
  }
}

TEST_CASE("emulator: ballot, any, all and __syncthreads_count") {
  const int blocks = 2, threads = 64;
  std::vector<int> host(blocks * threads);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<int>(i < 32 ? 2 * i + 1 : i * i % 5);
  DeviceBuffer<int> in(host), any_odd(4), all_odd(4), count(blocks);
  DeviceBuffer<unsigned> ballots(4);
  KILN_LAUNCH(votes, blocks, threads, 0, nullptr, in.get(), ballots.get(), any_odd.get(), all_odd.get(), count.get());
  for (std::size_t warp = 0; warp < 4; ++warp) {
    unsigned expected = 0;
    for (unsigned lane = 0; lane < 32; ++lane) expected |= static_cast<unsigned>(host[warp * 32 + lane] % 2) << lane;
    CHECK(ballots.download()[warp] == expected);
    CHECK(any_odd.download()[warp] == (expected != 0));
    CHECK(all_odd.download()[warp] == (expected == full_mask));
  }
  for (int b = 0; b < blocks; ++b) {
    int odd = 0;
    for (int t = 0; t < threads; ++t) odd += host[static_cast<std::size_t>(b * threads + t)] % 2;
    CHECK(count.download()[static_cast<std::size_t>(b)] == odd);
  }
}

TEST_CASE("emulator: atomicAdd histogram and other atomics") {
  const int n = 20000, bin_count = 17;
  std::vector<unsigned> host(n);
  for (int i = 0; i < n; ++i) host[static_cast<std::size_t>(i)] = static_cast<unsigned>(i) * 2654435761u >> 7;
  DeviceBuffer<unsigned> in(host), bins(bin_count);
  bins.zero();
  KILN_LAUNCH(histogram, 8, 128, 0, nullptr, in.get(), n, bins.get(), bin_count);
  std::vector<unsigned> expected(bin_count, 0);
  for (unsigned v : host) ++expected[v % bin_count];
  CHECK(bins.download() == expected);

  DeviceBuffer<float> sum(1);
  DeviceBuffer<int> maximum(1), minimum(1), exchanged(1);
  DeviceBuffer<unsigned> claimed(1);
  sum.zero(), maximum.zero(), minimum.zero(), claimed.zero(), exchanged.zero();
  KILN_LAUNCH(atomic_mix, 4, 64, 0, nullptr, sum.get(), maximum.get(), minimum.get(), claimed.get(), exchanged.get());
  CHECK(sum.download()[0] == 128.0f);
  CHECK(maximum.download()[0] == 255);
  CHECK(minimum.download()[0] == -255);
  CHECK(static_cast<int>(claimed.download()[0]) == exchanged.download()[0] + 1);
}

TEST_CASE("emulator: dynamic shared memory") {
  const int blocks = 4, threads = 96;
  const std::vector<float> host = iota_floats(blocks * threads);
  DeviceBuffer<float> in(host), out(host.size());
  KILN_LAUNCH(reverse_chunks, blocks, threads, threads * sizeof(float), nullptr, in.get(), out.get());
  const std::vector<float> result = out.download();
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t)
      CHECK(result[static_cast<std::size_t>(b * threads + t)] ==
            host[static_cast<std::size_t>(b * threads + threads - 1 - t)]);
}

TEST_CASE("emulator: more than 48 KiB of dynamic shared memory after opting in") {
  const int threads = 64;
  const std::vector<float> host = iota_floats(threads);
  DeviceBuffer<float> in(host), out(threads);
  kiln::gpu::set_max_dynamic_shared(reverse_chunks, 100 * 1024);
  KILN_LAUNCH(reverse_chunks, 1, threads, 100 * 1024, nullptr, in.get(), out.get());
  CHECK(out.download()[0] == host[threads - 1]);
  kiln::gpu::set_max_dynamic_shared(reverse_chunks, 48 * 1024);
}

TEST_CASE("emulator: 2-D tiled transpose") {
  for (auto schedule : schedules) {
    kiln_emu_test::ScopedSchedule scoped(schedule);
    const int rows = 70, cols = 45;
    const std::vector<float> host = iota_floats(rows * cols);
    DeviceBuffer<float> in(host), out(host.size());
    const dim3 grid((cols + tile - 1) / tile, (rows + tile - 1) / tile), block(tile, tile_rows);
    KILN_LAUNCH(transpose, grid, block, 0, nullptr, in.get(), out.get(), rows, cols);
    const std::vector<float> result = out.download();
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        REQUIRE(result[static_cast<std::size_t>(c * rows + r)] == host[static_cast<std::size_t>(r * cols + c)]);
  }
}

TEST_CASE("emulator: multi-dimensional grid and block indices") {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const unsigned total = grid.x * grid.y * grid.z * block.x * block.y * block.z;
  DeviceBuffer<int> out(6 * total);
  KILN_LAUNCH(record_indices, grid, block, 0, nullptr, out.get());
  const std::vector<int> result = out.download();
  std::size_t slot = 0;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx)
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx, slot += 6) {
              const std::vector<int> expected{static_cast<int>(tx), static_cast<int>(ty), static_cast<int>(tz),
                                              static_cast<int>(bx), static_cast<int>(by), static_cast<int>(bz)};
              REQUIRE(std::vector<int>(result.begin() + static_cast<long>(slot),
                                       result.begin() + static_cast<long>(slot + 6)) == expected);
            }
}

TEST_CASE("emulator: template kernels through KILN_LAUNCH") {
  std::vector<int> host{1, 2, 3, 4, 5};
  DeviceBuffer<int> data(host);
  kiln::gpu::Stream stream;
  KILN_LAUNCH((scale<int, 3>), 1, 32, 0, stream, data.get(), 5);
  CHECK(data.download() == std::vector<int>{3, 6, 9, 12, 15});
}

TEST_CASE("emulator: a 64 KiB local array fits the default fiber stack") {
  DeviceBuffer<float> out(64);
  KILN_LAUNCH(big_locals, 1, 64, 0, nullptr, out.get());
  float expected = 0.0f;
  for (int i = 0; i < 16384; i += 97) expected += static_cast<float>(i % 7);
  CHECK(out.download()[3] == doctest::Approx(3.0f * expected));
}

TEST_CASE("emulator: a million threads run quickly") {
  const int n = KILN_EMU_THREADS ? 1024 : 1 << 20;
  const std::vector<float> a = iota_floats(static_cast<std::size_t>(n));
  DeviceBuffer<float> da(a), db(a), dc(static_cast<std::size_t>(n));
  const auto start = std::chrono::steady_clock::now();
  KILN_LAUNCH(add_vectors, (n + 255) / 256, 256, 0, nullptr, da.get(), db.get(), dc.get(), n);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE(n << " threads in " << seconds * 1e3 << " ms on " << kiln::gpu::device_name());
  const std::vector<float> c = dc.download();
  CHECK(c[12345 % static_cast<std::size_t>(n)] == 2.0f * a[12345 % static_cast<std::size_t>(n)]);
}

#if KILN_EMU_THREADS
namespace {
// Each thread names its OS thread and reads its neighbour's value after a barrier (which needs
// every thread of the block running at once).
__global__ void name_os_threads(std::size_t* os_thread, unsigned* neighbour) {
  __shared__ unsigned value[256];
  value[threadIdx.x] = threadIdx.x * 3u;
  __syncthreads();
  neighbour[blockIdx.x * blockDim.x + threadIdx.x] = value[(threadIdx.x + 1) % blockDim.x];
  os_thread[blockIdx.x * blockDim.x + threadIdx.x] = std::hash<std::thread::id>{}(std::this_thread::get_id());
}
}  // namespace

TEST_CASE("OS-thread mode: a block's threads run at once, on OS threads kept from block to block") {
  std::set<std::size_t> seen;
  for (const unsigned threads : {64u, 256u, 32u}) {
    const unsigned blocks = 3;
    DeviceBuffer<std::size_t> os_thread(blocks * threads);
    DeviceBuffer<unsigned> neighbour(blocks * threads);
    KILN_LAUNCH(name_os_threads, blocks, threads, 0, nullptr, os_thread.get(), neighbour.get());
    const std::vector<unsigned> got = neighbour.download();
    const std::vector<std::size_t> ids = os_thread.download();
    for (unsigned b = 0; b < blocks; ++b) {
      const std::set<std::size_t> block_ids(ids.begin() + b * threads, ids.begin() + (b + 1) * threads);
      CHECK(block_ids.size() == threads);  // one OS thread per CUDA thread
      for (unsigned t = 0; t < threads; ++t) CHECK(got[b * threads + t] == (t + 1) % threads * 3u);
    }
    seen.insert(ids.begin(), ids.end());
  }
  CHECK(seen.size() == 256);  // 9 blocks of up to 256 threads ran on the largest block's 256
}
#endif
