// Per-pass driver for the CPU convolutions at UNetBase's 16 x 64^2 shapes (docs/cpu-path.md,
// 2026-12-02 tables): forward, input gradient (dx only), weight + bias gradient, each the best
// of 3 rounds of ~2 GFLOP, timed with process CPU time (the machine is shared, so wall time
// would count other processes). Not part of the CMake build; compile it by hand against the
// tree (or another checkout, to compare versions) and alternate the binaries:
//   g++ -O3 -march=native -std=c++20 -fopenmp -I include bench/conv_pass_driver.cpp -o /tmp/convd
//   OMP_NUM_THREADS=1 nice -n 5 /tmp/convd
#include <algorithm>
#include <cstdio>
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

int main() {
  using namespace kiln::cpu;
  struct Case {
    long n, ci, co, h, k;
  };
  const Case cases[] = {{16, 32, 32, 64, 3},   {16, 64, 32, 64, 3},   {16, 64, 64, 32, 3},  {16, 128, 64, 32, 3},
                        {16, 128, 128, 16, 3}, {16, 256, 128, 16, 3}, {16, 256, 256, 8, 3}, {16, 512, 256, 8, 3},
                        {16, 256, 512, 4, 3},  {16, 512, 512, 4, 3},  {16, 64, 32, 32, 1},  {16, 512, 256, 4, 1}};
  double total[3] = {0, 0, 0};
  for (const Case& c : cases) {
    const kiln::ConvShape s{c.n, c.ci, c.co, c.h, c.h, c.k};
    std::vector<float> x(s.n * s.c_in * s.hw()), w(s.c_out * s.patch()), b(s.c_out), y(s.n * s.c_out * s.hw());
    std::vector<float> dy(y.size()), dx(x.size()), dw(w.size()), db(b.size());
    std::mt19937 gen(1);
    std::uniform_real_distribution<float> u(-1, 1);
    for (auto& v : x) v = u(gen);
    for (auto& v : w) v = 0.1f * u(gen);
    for (auto& v : dy) v = u(gen);
    std::vector<float> ws(conv2d_workspace_floats(s) + 64);
    const double flops = 2.0 * s.n * s.hw() * s.c_in * s.c_out * s.k * s.k;
    const int reps = std::max(1, static_cast<int>(2e9 / flops));
    double t[3];
    for (int pass = 0; pass < 3; ++pass) {
      double best = 1e30;
      for (int round = 0; round < 3; ++round) {
        const double t0 = cpu_seconds();
        for (int i = 0; i < reps; ++i) {
          if (pass == 0)
            conv2d_forward(s, x.data(), w.data(), b.data(), y.data(), ws.data());
          else if (pass == 1)
            conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), nullptr, nullptr, ws.data());
          else
            conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, dw.data(), db.data(), ws.data());
        }
        best = std::min(best, (cpu_seconds() - t0) / reps);
      }
      t[pass] = best;
      total[pass] += best;
    }
    std::printf("%3ld->%3ld k%ld @%3ld: fwd %6.1f  dgrad %6.1f  wgrad %6.1f GFLOP/s  (ms %.2f %.2f %.2f)\n", c.ci, c.co,
                c.k, c.h, flops / t[0] / 1e9, flops / t[1] / 1e9, flops / t[2] / 1e9, t[0] * 1e3, t[1] * 1e3,
                t[2] * 1e3);
  }
  std::printf("total ms: fwd %.1f dgrad %.1f wgrad %.1f\n", total[0] * 1e3, total[1] * 1e3, total[2] * 1e3);
  return 0;
}
