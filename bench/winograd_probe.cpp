// Probe, not part of the build: Winograd F(2x2, 3x3) for the 3x3 forward (pad 1, stride 1) on kiln's
// packed GEMM (16 GEMMs of Cout x Cin x tiles per chunk of tiles), against conv2d_forward, one thread,
// process CPU time, best of 5; and the error against the direct convolution. The transforms are plain
// scalar loops (not tuned): the "gemm part" line is what the 16 GEMMs alone take (docs/cpu-path.md).
//   g++ -O3 -march=native -std=c++20 -fopenmp -I include bench/winograd_probe.cpp -o /tmp/wino
//   OMP_NUM_THREADS=1 /tmp/wino 16 64 64 32     # batch, Cin, Cout, H (= W, even) [, tiles per chunk]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <vector>
#include "kiln/cpu/conv2d.hpp"
#include "kiln/cpu/gemm.hpp"
static double cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
using I = std::int64_t;
int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s batch cin cout h [tiles-per-chunk]\n", argv[0]);
    return 2;
  }
  const I n = atol(argv[1]), C = atol(argv[2]), O = atol(argv[3]), H = atol(argv[4]), W = H,
          Tc = argc > 5 ? atol(argv[5]) : 256;
  const kiln::ConvShape s{n, C, O, H, W, 3};
  std::vector<float> x(n * C * H * W), w(O * C * 9), b(O), y(n * O * H * W), y2(y.size());
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& v : x) v = u(g);
  for (auto& v : w) v = 0.1f * u(g);
  for (auto& v : b) v = u(g);
  std::vector<float> ws(kiln::cpu::conv2d_workspace_floats(s) + 64);
  // weight transform U[xi][o][c]
  std::vector<float> U(16 * O * C);
  for (I o = 0; o < O; ++o)
    for (I c = 0; c < C; ++c) {
      const float* k = &w[(o * C + c) * 9];
      float t[4][3];
      for (int j = 0; j < 3; ++j) {
        t[0][j] = k[j];
        t[1][j] = .5f * (k[j] + k[3 + j] + k[6 + j]);
        t[2][j] = .5f * (k[j] - k[3 + j] + k[6 + j]);
        t[3][j] = k[6 + j];
      }
      for (int i = 0; i < 4; ++i) {
        float r[4] = {t[i][0], .5f * (t[i][0] + t[i][1] + t[i][2]), .5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
        for (int j = 0; j < 4; ++j) U[((i * 4 + j) * O + o) * C + c] = r[j];
      }
    }
  const I th = H / 2, tw = W / 2, T = n * th * tw;
  std::vector<float> V(16 * C * Tc), M(16 * O * Tc), gws(kiln::cpu::gemm_workspace_floats(O, Tc, C) + 64);
  double gemm_t = 0;
  auto wino = [&] {
    for (I t0 = 0; t0 < T; t0 += Tc) {
      const I tc = std::min(Tc, T - t0);
      for (I c = 0; c < C; ++c)
        for (I tt = 0; tt < tc; ++tt) {
          const I t = t0 + tt, im = t / (th * tw), ti = (t / tw) % th, tj = t % tw;
          const float* xp = &x[(im * C + c) * H * W];
          float d[4][4];
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) {
              const I r = 2 * ti - 1 + i, q = 2 * tj - 1 + j;
              d[i][j] = (r >= 0 && r < H && q >= 0 && q < W) ? xp[r * W + q] : 0.f;
            }
          float e[4][4];
          for (int j = 0; j < 4; ++j) {
            e[0][j] = d[0][j] - d[2][j];
            e[1][j] = d[1][j] + d[2][j];
            e[2][j] = d[2][j] - d[1][j];
            e[3][j] = d[1][j] - d[3][j];
          }
          for (int i = 0; i < 4; ++i) {
            float r[4] = {e[i][0] - e[i][2], e[i][1] + e[i][2], e[i][2] - e[i][1], e[i][1] - e[i][3]};
            for (int j = 0; j < 4; ++j) V[((i * 4 + j) * C + c) * Tc + tt] = r[j];
          }
        }
      double tg = cpu_s();
      for (int xi = 0; xi < 16; ++xi)
        kiln::cpu::gemm(false, false, O, tc, C, &U[xi * O * C], C, &V[xi * C * Tc], Tc, &M[xi * O * Tc], Tc, false,
                        gws.data());
      gemm_t += cpu_s() - tg;
      for (I o = 0; o < O; ++o)
        for (I tt = 0; tt < tc; ++tt) {
          const I t = t0 + tt, im = t / (th * tw), ti = (t / tw) % th, tj = t % tw;
          float m[4][4];
          for (int xi = 0; xi < 16; ++xi) m[xi / 4][xi % 4] = M[(xi * O + o) * Tc + tt];
          float a[2][4];
          for (int j = 0; j < 4; ++j) {
            a[0][j] = m[0][j] + m[1][j] + m[2][j];
            a[1][j] = m[1][j] - m[2][j] - m[3][j];
          }
          float* yp = &y2[(im * O + o) * H * W];
          for (int i = 0; i < 2; ++i) {
            yp[(2 * ti + i) * W + 2 * tj] = b[o] + a[i][0] + a[i][1] + a[i][2];
            yp[(2 * ti + i) * W + 2 * tj + 1] = b[o] + a[i][1] - a[i][2] - a[i][3];
          }
        }
    }
  };
  auto direct = [&] { kiln::cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data(), ws.data()); };
  double bd = 1e9, bw = 1e9;
  for (int r = 0; r < 5; ++r) {
    double t = cpu_s();
    direct();
    bd = std::min(bd, cpu_s() - t);
    t = cpu_s();
    wino();
    bw = std::min(bw, cpu_s() - t);
  }
  std::printf("gemm part per call %.2f ms\n", gemm_t / 5 * 1e3);
  double err = 0, ref = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    err = std::max(err, (double)std::fabs(y[i] - y2[i]));
    ref = std::max(ref, (double)std::fabs(y[i]));
  }
  std::printf("n%ld %ld->%ld @%ld: direct %.2f ms, winograd %.2f ms (x%.2f), max err %.2e rel %.2e\n", n, C, O, H,
              bd * 1e3, bw * 1e3, bd / bw, err, err / ref);
}
