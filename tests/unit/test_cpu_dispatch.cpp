// Run-time dispatch of the CPU fast path (kiln/cpu/isa.hpp): every code path this
// program has and this CPU runs (AVX-512, AVX2+FMA, portable), through the same
// entry points the layers use, against the plain loops; the KILN_CPU_ISA / set_active_isa
// override and its refusals. This file is compiled twice: in the unit suite (with
// kiln's -march=native: only the baseline path exists there) and into
// kiln_nomarch_tests without any -m flag (tests/CMakeLists.txt), where an AVX-512
// machine has all three paths and must pick AVX-512 by itself.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/cpu/gemm.hpp"
#include "kiln/cpu/isa.hpp"

using namespace kiln;
using kiln::test::random_vector;
using kiln::test::relative_error;

namespace {

// Restores the active path when a test case ends.
struct IsaGuard {
  cpu::Isa saved = cpu::active_isa();
  ~IsaGuard() { cpu::set_active_isa(saved); }
};

std::string isa_names() {
  std::string s;
  for (cpu::Isa isa : cpu::available_isas()) s += std::string(s.empty() ? "" : " ") + cpu::isa_name(isa);
  return s;
}

}  // namespace

TEST_CASE("CPU dispatch: the active path is the best this CPU runs, unless KILN_CPU_ISA says otherwise") {
  const auto isas = cpu::available_isas();
  REQUIRE(!isas.empty());
  const std::string paths = "CPU code paths here: " + isa_names() + " (baseline " + cpu::isa_name(cpu::baseline_isa()) +
                            ", dispatch " + (KILN_CPU_DISPATCH ? "on" : "off") +
                            "); active: " + cpu::isa_name(cpu::active_isa());
  MESSAGE(paths);
  CHECK(std::find(isas.begin(), isas.end(), cpu::active_isa()) != isas.end());
  CHECK(cpu::isa_compiled(cpu::baseline_isa()));
  CHECK(cpu::best_isa() == isas.front());
  const char* env = std::getenv("KILN_CPU_ISA");
  if (!env || std::string(env).empty() || std::string(env) == "auto")
    CHECK(cpu::active_isa() == cpu::best_isa());
  else
    CHECK(std::string(cpu::isa_name(cpu::active_isa())) == env);
#if KILN_CPU_DISPATCH
  // A build without -m flags has every path; the machine picks the widest it can run.
  CHECK(cpu::isa_compiled(cpu::Isa::avx512));
  CHECK(cpu::isa_compiled(cpu::Isa::avx2));
  if (cpu::cpu_supports(cpu::Isa::avx512))
    CHECK(cpu::best_isa() == cpu::Isa::avx512);
  else if (cpu::cpu_supports(cpu::Isa::avx2))
    CHECK(cpu::best_isa() == cpu::Isa::avx2);
#endif
}

TEST_CASE("CPU dispatch: KILN_CPU_ISA values are parsed and refused with a reason") {
  CHECK(cpu::parse_isa("") == cpu::best_isa());
  CHECK(cpu::parse_isa("auto") == cpu::best_isa());
  for (cpu::Isa isa : cpu::available_isas()) CHECK(cpu::parse_isa(cpu::isa_name(isa)) == isa);
  CHECK_THROWS_WITH_AS(cpu::parse_isa("sse9"), doctest::Contains("KILN_CPU_ISA=sse9: unknown CPU code path"),
                       kiln::Error);
  for (cpu::Isa isa : {cpu::Isa::avx512, cpu::Isa::avx2, cpu::Isa::portable}) {
    if (cpu::isa_compiled(isa) && cpu::cpu_supports(isa)) continue;
    INFO(std::string(cpu::isa_name(isa)));
    CHECK_THROWS_WITH_AS(cpu::parse_isa(cpu::isa_name(isa)),
                         doctest::Contains(cpu::isa_compiled(isa) ? "this CPU cannot run" : "was not compiled with"),
                         kiln::Error);
    CHECK_THROWS_AS(cpu::set_active_isa(isa), kiln::Error);
    CHECK_THROWS_AS(cpu::conv_kernels(isa), kiln::Error);
  }
}

TEST_CASE("CPU dispatch: the GEMM of every available path matches the triple loop") {
  // Odd sizes that exercise every edge tile (test_cpu_gemm.cpp checks the build's own
  // configuration at the same ones), and a K of 300 that is cut into blocks.
  constexpr std::int64_t sizes[] = {1, 7, 13, 17, 31, 33, 129};
  // The paths innermost: each case's plain-loop reference is computed once for all of them (it
  // was most of this test's time under the sanitizers, computed once per path).
  Rng rng(5);
  std::vector<float> ws;
  for (int trans = 0; trans < 4; ++trans) {
    const bool ta = trans & 1, tb = trans & 2;
    for (std::int64_t M : sizes)
      for (std::int64_t N : sizes)
        for (std::int64_t K : {1, 7, 13, 17, 31, 33, 129, 300}) {
          const std::int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 3, ldc = N + 3;
          const auto A = random_vector(std::size_t((ta ? K : M) * lda), rng);
          const auto B = random_vector(std::size_t((tb ? N : K) * ldb), rng);
          const bool accumulate = (M + N + K) % 2 == 1;
          const auto C_start = random_vector(std::size_t(M * ldc), rng);
          auto C_ref = C_start;
          cpu::reference::gemm(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, C_ref.data(), ldc, accumulate);
          for (cpu::Isa isa : cpu::available_isas()) {
            const cpu::GemmKernels& k = cpu::gemm_kernels(isa);
            auto C = C_start;
            ws.assign(k.workspace_floats(M, N, K), 0.0f);
            CHECK(cpu::gemm_workspace_floats(M, N, K) >= ws.size());  // the dispatched size fits every path
            k.gemm(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, accumulate, ws.data());
            INFO(std::string(cpu::isa_name(isa)), " trans_a=", ta, " trans_b=", tb, " M=", M, " N=", N, " K=", K);
            CHECK(relative_error(C, C_ref) < 1e-5);
          }
        }
  }
}

TEST_CASE("CPU dispatch: the convolutions of every available path match the plain loops, identically across threads") {
  // The shapes of test_cpu_gemm.cpp's check of the build's own configuration (its comments
  // say which path each takes): odd channel counts (edge tiles), images smaller than a panel,
  // wide and odd images, batch 1, K = 1, 3, 5; the padded-plane path (W >= 16) with several
  // bands and image groups; col rows K-blocked over two pixel chunks; both weight-gradient
  // forms over two chunks; Winograd F(2x2, 3x3) in one chunk and in several.
  const ConvShape shapes[] = {
      {3, 5, 7, 13, 11, 3},   {3, 5, 7, 13, 11, 1},   {1, 3, 16, 7, 5, 3},   {2, 17, 9, 4, 4, 3},
      {16, 32, 24, 4, 4, 3},  {1, 1, 1, 1, 1, 3},     {2, 9, 33, 9, 50, 5},  {5, 40, 20, 2, 3, 3},
      {1, 8, 16, 64, 64, 3},  {4, 33, 2, 6, 6, 1},    {3, 5, 6, 6, 16, 3},   {1, 4, 8, 40, 128, 3},
      {2, 64, 8, 64, 63, 3},  {2, 64, 8, 64, 64, 3},  {5, 3, 4, 20, 40, 3},  {4, 40, 20, 12, 12, 3},
      {5, 30, 12, 8, 8, 3},   {6, 40, 8, 9, 7, 3},    {2, 6, 10, 40, 30, 1}, {40, 4, 6, 8, 8, 3},
      {3, 20, 18, 16, 16, 3}, {4, 64, 24, 20, 18, 3}, {2, 17, 70, 16, 22, 3}};
  for (const ConvShape& s : shapes) {
    Rng rng(3);
    const auto x = random_vector(std::size_t(s.n * s.c_in * s.hw()), rng);
    const auto w = random_vector(std::size_t(s.c_out * s.patch()), rng);
    const auto b = random_vector(std::size_t(s.c_out), rng);
    const auto dy = random_vector(std::size_t(s.n * s.c_out * s.hw()), rng);
    // One reference per shape for every path (as in the GEMM case above).
    std::vector<float> y_ref(dy.size()), dx_ref(x.size()), dw_ref(w.size(), 0.5f), db_ref(b.size(), 0.25f);
    cpu::reference::conv2d_forward(s, x.data(), w.data(), b.data(), y_ref.data());
    cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), dx_ref.data(), dw_ref.data(), db_ref.data());
    for (cpu::Isa isa : cpu::available_isas()) {
      const cpu::ConvKernels& k = cpu::conv_kernels(isa);
      std::vector<float> first_y, first_dx, first_dw, first_db;
      for (int threads : {1, 2, 3}) {
        std::vector<float> y(dy.size()), dx(x.size()), dw(w.size(), 0.5f), db(b.size(), 0.25f);
        std::vector<float> ws(k.workspace_floats(s, threads));
        k.forward(s, x.data(), w.data(), b.data(), y.data(), ws.data(), threads);
        k.backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), ws.data(), threads);
        INFO(std::string(cpu::isa_name(isa)), " threads=", threads, " N=", s.n, " Cin=", s.c_in, " Cout=", s.c_out,
             " H=", s.h, " W=", s.w, " K=", s.k);
        if (threads == 1) {
          CHECK(relative_error(y, y_ref) < 1e-5);
          CHECK(relative_error(dx, dx_ref) < 1e-5);
          CHECK(relative_error(dw, dw_ref) < 1e-5);
          CHECK(relative_error(db, db_ref) < 1e-5);
          first_y = y, first_dx = dx, first_dw = dw, first_db = db;
        } else {
          CHECK(y == first_y);
          CHECK(dx == first_dx);
          CHECK(dw == first_dw);
          CHECK(db == first_db);
        }
      }
    }
  }
}

TEST_CASE("CPU dispatch: set_active_isa switches the public entry points, with one planned workspace") {
  IsaGuard guard;
  const ConvShape s{4, 24, 16, 16, 16, 3};
  Rng rng(8);
  const auto x = random_vector(std::size_t(s.n * s.c_in * s.hw()), rng);
  const auto w = random_vector(std::size_t(s.c_out * s.patch()), rng);
  const auto b = random_vector(std::size_t(s.c_out), rng);
  const auto dy = random_vector(std::size_t(s.n * s.c_out * s.hw()), rng);
  std::vector<float> y_ref(dy.size()), dx_ref(x.size()), dw_ref(w.size()), db_ref(b.size());
  cpu::reference::conv2d_forward(s, x.data(), w.data(), b.data(), y_ref.data());
  cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), dx_ref.data(), dw_ref.data(), db_ref.data());
  std::vector<float> ws(cpu::conv2d_workspace_floats(s));  // planned once, as a layer does
  for (cpu::Isa isa : cpu::available_isas()) {
    cpu::set_active_isa(isa);
    REQUIRE(cpu::active_isa() == isa);
    CHECK(ws.size() >= cpu::conv_kernels(isa).workspace_floats(s, cpu::conv2d_threads()));
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
    cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data(), ws.data());
    cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), ws.data());
    INFO(std::string(cpu::isa_name(isa)));
    CHECK(relative_error(y, y_ref) < 1e-5);
    CHECK(relative_error(dx, dx_ref) < 1e-5);
    CHECK(relative_error(dw, dw_ref) < 1e-5);
    CHECK(relative_error(db, db_ref) < 1e-5);
    // The GEMM entry point follows the same switch.
    const std::int64_t M = 19, N = 37, K = 23;
    const auto A = random_vector(std::size_t(M * K), rng), B = random_vector(std::size_t(K * N), rng);
    std::vector<float> C(std::size_t(M * N)), C_ref(C.size()), gws(cpu::gemm_workspace_floats(M, N, K));
    cpu::gemm(false, false, M, N, K, A.data(), K, B.data(), N, C.data(), N, false, gws.data());
    cpu::reference::gemm(false, false, M, N, K, A.data(), K, B.data(), N, C_ref.data(), N, false);
    CHECK(relative_error(C, C_ref) < 1e-5);
  }
}
