// The packed GEMMs and the implicit-GEMM convolutions of the CPU fast path, the
// configuration this build compiles for its target (DefaultConfig) against the plain
// loops, at odd sizes that exercise every edge tile; plus determinism (bitwise, run to
// run and across thread counts). They run through the baseline copy's tables
// (gemm_kernel_table, conv_kernel_table): in kiln's build that is the code kiln_cpu_once
// compiles at the build's flags (kiln/cpu/separate.hpp), not a copy of this unit's, which
// may be compiled with less optimisation (tests/CMakeLists.txt). The other code paths
// (AVX-512, AVX2, portable) are checked at the same sizes and shapes through the run-time
// dispatch's tables in test_cpu_dispatch.cpp.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/cpu/gemm.hpp"

using namespace kiln;
using kiln::test::random_vector;
using kiln::test::relative_error;

namespace {

constexpr std::int64_t kSizes[] = {1, 7, 13, 17, 31, 33, 129};

void check_gemm_config(const cpu::GemmKernels& k, const char* name) {
  Rng rng(7);
  std::vector<float> ws;
  for (int trans = 0; trans < 4; ++trans) {
    const bool ta = trans & 1, tb = trans & 2;
    for (std::int64_t M : kSizes)
      for (std::int64_t N : kSizes)
        for (std::int64_t K : kSizes) {
          // Padded leading dimensions (+3) so strides are exercised too.
          const std::int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 3, ldc = N + 3;
          const auto A = random_vector(std::size_t((ta ? K : M) * lda), rng);
          const auto B = random_vector(std::size_t((tb ? N : K) * ldb), rng);
          const bool accumulate = (M + N + K) % 2 == 1;
          auto C = random_vector(std::size_t(M * ldc), rng);
          auto C_ref = C;
          ws.assign(k.workspace_floats(M, N, K), 0.0f);
          k.gemm(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, accumulate, ws.data());
          cpu::reference::gemm(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, C_ref.data(), ldc, accumulate);
          const double err = relative_error(C, C_ref);
          INFO(name, " trans_a=", ta, " trans_b=", tb, " M=", M, " N=", N, " K=", K, " accumulate=", accumulate);
          CHECK(err < 1e-5);
        }
  }
}

}  // namespace

TEST_CASE("CPU GEMM: the build's configuration, every transpose, matches the triple loop at odd sizes") {
  check_gemm_config(cpu::gemm_kernel_table, "default");
}

TEST_CASE("CPU GEMM: the historical entry points gemm_nn / gemm_tn / gemm_nt") {
  Rng rng(11);
  const std::int64_t M = 33, N = 129, K = 17;
  const auto A = random_vector(std::size_t(M * K), rng), At = random_vector(std::size_t(K * M), rng);
  const auto B = random_vector(std::size_t(K * N), rng), Bt = random_vector(std::size_t(N * K), rng);
  for (bool accumulate : {false, true}) {
    auto C = random_vector(std::size_t(M * N), rng);
    auto C_ref = C;
    cpu::gemm_nn(M, N, K, A.data(), B.data(), C.data(), accumulate);
    cpu::reference::gemm(false, false, M, N, K, A.data(), K, B.data(), N, C_ref.data(), N, accumulate);
    CHECK(relative_error(C, C_ref) < 1e-5);
    cpu::gemm_tn(M, N, K, At.data(), B.data(), C.data(), accumulate);
    cpu::reference::gemm(true, false, M, N, K, At.data(), M, B.data(), N, C_ref.data(), N, accumulate);
    CHECK(relative_error(C, C_ref) < 1e-5);
    cpu::gemm_nt(M, N, K, A.data(), Bt.data(), C.data(), accumulate);
    cpu::reference::gemm(false, true, M, N, K, A.data(), K, Bt.data(), K, C_ref.data(), N, accumulate);
    CHECK(relative_error(C, C_ref) < 1e-5);
  }
}

TEST_CASE("CPU GEMM: K = 0 clears or keeps C; results are bitwise identical run to run") {
  Rng rng(5);
  std::vector<float> C(12, 3.0f), ws(cpu::gemm_workspace_floats(3, 4, 0));
  cpu::gemm(false, false, 3, 4, 0, nullptr, 1, nullptr, 4, C.data(), 4, true, ws.data());
  CHECK(C == std::vector<float>(12, 3.0f));
  cpu::gemm(false, false, 3, 4, 0, nullptr, 1, nullptr, 4, C.data(), 4, false, ws.data());
  CHECK(C == std::vector<float>(12, 0.0f));

  const std::int64_t M = 70, N = 300, K = 600;  // several K blocks, parallel
  const auto A = random_vector(std::size_t(M * K), rng), B = random_vector(std::size_t(K * N), rng);
  std::vector<float> C1(std::size_t(M * N)), C2(std::size_t(M * N));
  ws.assign(cpu::gemm_workspace_floats(M, N, K), 0.0f);
  cpu::gemm(false, false, M, N, K, A.data(), K, B.data(), N, C1.data(), N, false, ws.data());
  cpu::gemm(false, false, M, N, K, A.data(), K, B.data(), N, C2.data(), N, false, ws.data());
  CHECK(C1 == C2);
}

namespace {

struct ConvResult {
  std::vector<float> y, dx, dw, db;
};

ConvResult run_conv(const cpu::ConvKernels& k, const ConvShape& s, int threads, const std::vector<float>& x,
                    const std::vector<float>& w, const std::vector<float>& b, const std::vector<float>& dy) {
  ConvResult r{std::vector<float>(dy.size()), std::vector<float>(x.size()), std::vector<float>(w.size(), 0.5f),
               std::vector<float>(b.size(), 0.25f)};
  std::vector<float> ws(k.workspace_floats(s, threads));
  k.forward(s, x.data(), w.data(), b.data(), r.y.data(), ws.data(), threads);
  k.backward(s, x.data(), w.data(), dy.data(), r.dx.data(), r.dw.data(), r.db.data(), ws.data(), threads);
  return r;
}

void check_conv_config(const cpu::ConvKernels& k, const char* name) {
  // Odd channel counts (edge tiles in M), images smaller than a panel (tiles
  // across images), wide and odd images, batch 1, K = 1, 3, 5; images 16 or more
  // wide take the padded-plane path (conv_use_padded), narrower ones the col rows.
  const ConvShape shapes[] = {{3, 5, 7, 13, 11, 3},
                              {3, 5, 7, 13, 11, 1},
                              {1, 3, 16, 7, 5, 3},
                              {2, 17, 9, 4, 4, 3},
                              {16, 32, 24, 4, 4, 3},
                              {1, 1, 1, 1, 1, 3},
                              {2, 9, 33, 9, 50, 5},
                              {5, 40, 20, 2, 3, 3},
                              {1, 8, 16, 64, 64, 3},
                              {4, 33, 2, 6, 6, 1},
                              // the padded-plane path (W >= 16): at the threshold, and a weight
                              // gradient longer than one 2048-position piece per image
                              {3, 5, 6, 6, 16, 3},
                              {1, 4, 8, 40, 128, 3},
                              // padded: several bands per image (64 channels of 64 x 64: 6 bands),
                              // weight-gradient image groups of 2, 2, 1
                              {2, 64, 8, 64, 63, 3},  // (odd: {2, 64, 8, 64, 64, 3} takes Winograd forward)
                              {5, 3, 4, 20, 40, 3},
                              // col rows, K-blocked (K9 > 256) over two pixel chunks: through the
                              // halo planes at W = 12 and W = 8, and at W = 7 (a chunk starts mid-row)
                              {4, 40, 20, 12, 12, 3},
                              {5, 30, 12, 8, 8, 3},
                              {6, 40, 8, 9, 7, 3},
                              // the weight gradients over two pixel chunks: 1x1 (dot form, P > 1024)
                              // and 3x3 (outer-product form, P > 2048)
                              {2, 6, 10, 40, 30, 1},
                              {40, 4, 6, 8, 8, 3},
                              // Winograd F(2x2, 3x3), forward and input gradient (both >= 16 channels): one
                              // chunk; four chunks whose tile runs start mid-row; 16 wide, uneven o-blocks
                              {3, 20, 18, 16, 16, 3},
                              {4, 64, 24, 20, 18, 3},
                              {2, 17, 70, 16, 22, 3}};
  for (const ConvShape& s : shapes) {
    Rng rng(3);
    const auto x = random_vector(std::size_t(s.n * s.c_in * s.hw()), rng);
    const auto w = random_vector(std::size_t(s.c_out * s.patch()), rng);
    const auto b = random_vector(std::size_t(s.c_out), rng);
    const auto dy = random_vector(std::size_t(s.n * s.c_out * s.hw()), rng);
    ConvResult ref{std::vector<float>(dy.size()), std::vector<float>(x.size()), std::vector<float>(w.size(), 0.5f),
                   std::vector<float>(b.size(), 0.25f)};
    cpu::reference::conv2d_forward(s, x.data(), w.data(), b.data(), ref.y.data());
    cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), ref.dx.data(), ref.dw.data(), ref.db.data());
    const ConvResult one = run_conv(k, s, 1, x, w, b, dy);
    INFO(name, " N=", s.n, " Cin=", s.c_in, " Cout=", s.c_out, " H=", s.h, " W=", s.w, " K=", s.k);
    CHECK(relative_error(one.y, ref.y) < 1e-5);
    CHECK(relative_error(one.dx, ref.dx) < 1e-5);
    CHECK(relative_error(one.dw, ref.dw) < 1e-5);  // accumulated onto 0.5
    CHECK(relative_error(one.db, ref.db) < 1e-5);  // accumulated onto 0.25
    // Bitwise identical for 2 and 3 threads (no order depends on the split).
    for (int threads : {2, 3}) {
      const ConvResult r = run_conv(k, s, threads, x, w, b, dy);
      CHECK(r.y == one.y);
      CHECK(r.dx == one.dx);
      CHECK(r.dw == one.dw);
      CHECK(r.db == one.db);
    }
  }
}

}  // namespace

TEST_CASE("CPU conv2d fast path: the build's configuration matches the plain loops, identically across threads") {
  // The shapes below cover both paths.
  CHECK(cpu::impl::conv_use_padded(ConvShape{1, 8, 16, 64, 64, 3}));
  CHECK(cpu::impl::conv_use_padded(ConvShape{3, 5, 6, 6, 16, 3}));
  CHECK_FALSE(cpu::impl::conv_use_padded(ConvShape{16, 32, 24, 4, 4, 3}));
  CHECK_FALSE(cpu::impl::conv_use_padded(ConvShape{3, 5, 7, 13, 11, 1}));
  CHECK(cpu::impl::conv_padded_bands<cpu::simd::Avx512Config>(ConvShape{2, 64, 8, 64, 63, 3}).bands_per_image > 1);
  CHECK(cpu::impl::conv_fwd_chunk<cpu::simd::Avx512Config>(360, 4 * 144) < 4 * 144);  // two chunks
  CHECK(cpu::impl::conv_fwd_kc<cpu::simd::Avx512Config>(360) < 360);                  // two K blocks
  CHECK(cpu::impl::conv_use_winograd(ConvShape{3, 20, 18, 16, 16, 3}));
  CHECK(cpu::impl::conv_use_winograd(ConvShape{3, 18, 20, 16, 16, 3}));  // its input gradient
  CHECK_FALSE(cpu::impl::conv_use_winograd(ConvShape{2, 6, 10, 40, 30, 1}));
  CHECK_FALSE(cpu::impl::conv_use_winograd(ConvShape{6, 40, 8, 9, 7, 3}));
  CHECK(cpu::impl::conv_winograd_chunk<cpu::simd::Avx512Config>(ConvShape{4, 64, 24, 20, 18, 3}) < 4 * 10 * 9);
  // 1x1 on images over 8 x 8: the dot-product weight gradient; smaller ones and 3x3: the outer product.
  CHECK(cpu::impl::conv_wgrad_use_dot(ConvShape{2, 6, 10, 40, 30, 1}));
  CHECK(cpu::impl::conv_wgrad_use_dot(ConvShape{3, 5, 7, 13, 11, 1}));
  CHECK_FALSE(cpu::impl::conv_wgrad_use_dot(ConvShape{4, 33, 2, 6, 6, 1}));
  CHECK_FALSE(cpu::impl::conv_wgrad_use_dot(ConvShape{40, 4, 6, 8, 8, 3}));
  CHECK(cpu::impl::conv_wgrad_dot_chunk<cpu::simd::Avx512Config>(ConvShape{2, 6, 10, 40, 30, 1}) < 2 * 40 * 30);
  CHECK(cpu::impl::conv_wgrad_chunk<cpu::simd::PortableConfig>(ConvShape{40, 4, 6, 8, 8, 3}) < 40 * 64);
  check_conv_config(cpu::conv_kernel_table, "default");
}

TEST_CASE("CPU conv2d: dx, dw, db may each be null") {
  const ConvShape s{2, 6, 10, 9, 7, 3};
  Rng rng(9);
  const auto x = random_vector(std::size_t(s.n * s.c_in * s.hw()), rng);
  const auto w = random_vector(std::size_t(s.c_out * s.patch()), rng);
  const auto dy = random_vector(std::size_t(s.n * s.c_out * s.hw()), rng);
  std::vector<float> dx_ref(x.size()), dw_ref(w.size()), db_ref(std::size_t(s.c_out));
  cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), dx_ref.data(), dw_ref.data(), db_ref.data());
  std::vector<float> ws(cpu::conv2d_workspace_floats(s));
  std::vector<float> dx(x.size()), dw(w.size()), db(std::size_t(s.c_out));
  cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), nullptr, nullptr, ws.data());
  CHECK(relative_error(dx, dx_ref) < 1e-5);
  cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, dw.data(), nullptr, ws.data());
  CHECK(relative_error(dw, dw_ref) < 1e-5);
  cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), nullptr, nullptr, db.data(), ws.data());
  CHECK(relative_error(db, db_ref) < 1e-5);
}
