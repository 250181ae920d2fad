// One convolution's forward pass, best of R runs, process CPU time (the machine is shared, so
// wall time would count other processes): the per-layer figures of docs/cpu-path.md (Winograd
// against the direct paths). Not part of the CMake build; compile it by hand against a tree:
//   g++ -O3 -march=native -std=c++20 -fopenmp -I include bench/conv_forward_driver.cpp -o /tmp/convf
//   OMP_NUM_THREADS=1 /tmp/convf 16 64 64 32 3      # batch, Cin, Cout, H (= W), K [, runs]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <vector>

#include "kiln/cpu/conv2d.hpp"

namespace {
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s batch cin cout h k [runs]\n", argv[0]);
    return 2;
  }
  const long n = std::atol(argv[1]), ci = std::atol(argv[2]), co = std::atol(argv[3]), h = std::atol(argv[4]);
  const long k = std::atol(argv[5]), runs = argc > 6 ? std::atol(argv[6]) : 5;
  const kiln::ConvShape s{n, ci, co, h, h, k};
  std::vector<float> x(s.n * s.c_in * s.hw()), w(s.c_out * s.patch()), b(s.c_out), y(s.n * s.c_out * s.hw());
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& v : x) v = u(gen);
  for (auto& v : w) v = 0.1f * u(gen);
  std::vector<float> ws(kiln::cpu::conv2d_workspace_floats(s) + 64);
  const double flops = 2.0 * s.n * s.hw() * s.c_in * s.c_out * s.k * s.k;
  double best = 1e30;
  for (long r = 0; r < runs; ++r) {
    const double t0 = cpu_seconds();
    kiln::cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data(), ws.data());
    best = std::min(best, cpu_seconds() - t0);
  }
  std::printf("%ld->%ld k%ld @%ld n%ld: %.3f ms %.1f GFLOP/s (direct-convolution FLOPs)\n", ci, co, k, h, n, best * 1e3,
              flops / best / 1e9);
  return 0;
}
