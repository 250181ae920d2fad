#pragma once
// Shared pieces of kiln's Google Benchmark programs (bench_cpu, bench_step and
// their GPU twins): the U-Net's shapes, smoke mode, counters, random tensors,
// and the CPU's measured practical peaks.
//
// Naming: <layer>_<pass>/<backend>[/<math>]/C<c>_H<h>_N<n>, where C and H
// describe the layer's (first) INPUT: conv3x3 is C->C, conv1x1 is C->C/2 (the
// U-Net's "reduce" conv after the upsample), upsample's input is C@H (output
// C@2H), concat's two inputs are C@H each (output 2C), maxpool's input is C@H.
// --benchmark_filter='conv3x3_fwd/cpu/' picks one layer on one backend.
//
// Smoke mode (env KILN_BENCH_SMOKE=1): tiny shapes and one iteration each, so
// CI can check that every benchmark runs and reports sane counters.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "kiln/core/random.hpp"
#include "kiln/core/tensor.hpp"

namespace kiln::bench {

inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}
inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::max(0, std::atoi(v));
}

inline bool smoke() { return env_flag("KILN_BENCH_SMOKE"); }

// One U-Net level: channel count and height (= width) of the activation.
struct Level {
  int c, h;
};
struct ShapeSet {
  int n;
  std::vector<Level> levels;
};

// UNetBase (width 32, depth 4): batch 16 at 128x128 with each level's
// channels, and the same levels for a 256x256 input.
inline std::vector<ShapeSet> unet_shape_sets() {
  if (smoke()) return {{2, {{4, 16}, {8, 8}}}};
  return {{16, {{32, 128}, {64, 64}, {128, 32}, {256, 16}, {512, 8}}},
          {16, {{32, 256}, {64, 128}, {128, 64}, {256, 32}, {512, 16}}}};
}

inline std::string shape_tag(std::int64_t c, std::int64_t h, std::int64_t n) {
  return "C" + std::to_string(c) + "_H" + std::to_string(h) + "_N" + std::to_string(n);
}

// Counters. Timing<Device>::loop() stores the seconds its timed loop took
// (wall clock on the CPU, summed GPU event time on the GPU) in
// last_loop_seconds(); the rates below divide by it, so they are plain numbers
// ("GFLOP/s", "GB/s", "peak_frac" = the fraction of the peak), not Google
// Benchmark rate counters.
inline double& last_loop_seconds() {
  static double seconds = 0;
  return seconds;
}
inline void set_flops(benchmark::State& state, double flops_per_iter, double peak_flops) {
  const double secs = last_loop_seconds();
  if (!(secs > 0) || state.iterations() == 0) return;
  const double rate = flops_per_iter * static_cast<double>(state.iterations()) / secs;
  state.counters["GFLOP/s"] = rate * 1e-9;
  if (peak_flops > 0) state.counters["peak_frac"] = rate / peak_flops;
}
inline void set_bytes(benchmark::State& state, double bytes_per_iter, double peak_bytes_per_s) {
  const double secs = last_loop_seconds();
  if (!(secs > 0) || state.iterations() == 0) return;
  const double rate = bytes_per_iter * static_cast<double>(state.iterations()) / secs;
  state.counters["GB/s"] = rate * 1e-9;
  if (peak_bytes_per_s > 0) state.counters["peak_frac"] = rate / peak_bytes_per_s;
}

// 2 * N * Cout * Cin * K^2 * H * W: one convolution pass (forward, input
// gradient or weight gradient each cost this).
inline double conv_flops(std::int64_t n, std::int64_t cin, std::int64_t cout, std::int64_t k, std::int64_t h,
                         std::int64_t w) {
  return 2.0 * static_cast<double>(n) * static_cast<double>(cout) * static_cast<double>(cin) *
         static_cast<double>(k * k) * static_cast<double>(h) * static_cast<double>(w);
}

// Host values uniform in [lo, hi). Filling hundreds of MiB per benchmark
// would cost more than the benchmarks, so each range has one pool of random
// numbers (grown when needed) and a tensor gets a slice of it starting at an
// offset picked by the seed.
inline const float* random_values(std::size_t count, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  struct Pool {
    float lo, hi;
    std::vector<float> values;
  };
  static std::vector<Pool> pools;
  constexpr std::size_t slack = 4096;
  Pool* pool = nullptr;
  for (auto& p : pools)
    if (p.lo == lo && p.hi == hi) pool = &p;
  if (pool == nullptr) pool = &pools.emplace_back(Pool{lo, hi, {}});
  if (pool->values.size() < count + slack) {
    Rng rng(0x5eed + pools.size());
    pool->values.resize(count + slack);
    for (auto& x : pool->values) x = rng.uniform(lo, hi);
  }
  return pool->values.data() + (seed * 97) % slack;
}

template <class Device>
Tensor<float, Device> random_tensor(const Shape& shape, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor<float, Device> t(shape);
  t.copy_from_host(std::span<const float>(random_values(shape.numel(), seed, lo, hi), shape.numel()));
  return t;
}

// Seconds per iteration of reference rows (cuDNN), by "<op>/<shape>", so our
// kernel's row can report its ratio to cuDNN in the same run. Empty on the CPU.
inline std::map<std::string, double>& reference_seconds() {
  static std::map<std::string, double> table;
  return table;
}
// "conv3x3_fwd/cuda/fp32/C64_H64_N16" -> "conv3x3_fwd/C64_H64_N16"
inline std::string op_shape_key(const std::string& name) {
  return name.substr(0, name.find('/')) + name.substr(name.rfind('/'));
}

}  // namespace kiln::bench
