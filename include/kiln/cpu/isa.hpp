#pragma once
// Which CPU code path the GEMMs and convolutions run: AVX-512, AVX2+FMA or portable.
//
// The fast path (cpu/gemm_fast.inl, cpu/conv2d_fast.inl) is compiled once for the
// target the translation unit is built for (the *baseline*: -march=native on an
// AVX-512 machine gives AVX-512, no -m flags give portable x86-64), and, when
// KILN_CPU_DISPATCH is on, once more for every instruction set above the baseline,
// each copy in its own namespace (cpu::isa_avx2, cpu::isa_avx512) inside a
// `#pragma GCC target(...)` region. The choice between the copies is made once per
// process by CPUID (active_isa()) and applied per GEMM / convolution pass through a
// table of function pointers: one indirect call per pass, nothing in the loops.
//
// Why per-ISA copies under a target pragma, and not function multiversioning
// (target_clones) or [[gnu::target]] on a few wrappers: the hot loops sit in
// OpenMP regions, which GCC outlines into separate functions before any cloning
// or inlining. A target attribute on a wrapper or a clone does not reach those
// outlined bodies (they would stay baseline code); a function *defined* inside a
// target pragma region passes its target to its outlined regions and to the
// always_inline micro-kernels it inlines (checked with objdump: zmm FMAs in the
// `._omp_fn` bodies). Clang does not pass the target on to outlined OpenMP
// regions (clang 14), so dispatch is on by default for GCC only; with clang, or
// under nvcc, the build keeps the compile-time choice (give -march flags).
//
//   KILN_CPU_DISPATCH    1: compile the copies above the baseline and dispatch at run
//                        time (default with GCC on x86-64 when the baseline is not
//                        AVX-512 already, and not under nvcc); 0: the baseline only,
//                        chosen at compile time (exactly the code of a -march build).
//   KILN_CPU_ISA         environment variable: avx512 | avx2 | portable | auto. Forces
//                        a path (tests, comparisons); a path this CPU cannot run, or
//                        one this program was not compiled with, is refused with a
//                        kiln::Error that says why (thrown when a layer plans its
//                        convolution workspace, or by the first GEMM / conv). Without
//                        dispatch only the baseline's name is accepted.
//   active_isa()         the path in use; isa_name() its name; available_isas() the
//                        paths this program has and this CPU can run.
#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/core/error.hpp"

// The compile-time target: the same tests as simd::DefaultConfig.
#if defined(__AVX512F__)
#define KILN_CPU_BASELINE_ISA 2
#elif defined(__AVX2__) && defined(__FMA__)
#define KILN_CPU_BASELINE_ISA 1
#else
#define KILN_CPU_BASELINE_ISA 0
#endif

#ifndef KILN_CPU_DISPATCH
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && \
    !defined(__INTEL_LLVM_COMPILER) && KILN_CPU_BASELINE_ISA < 2
#define KILN_CPU_DISPATCH 1
#else
#define KILN_CPU_DISPATCH 0
#endif
#endif

#if KILN_CPU_DISPATCH
#if !(defined(__x86_64__) || defined(__i386__)) || !defined(__GNUC__) || defined(__clang__) || defined(__CUDACC__)
#error "KILN_CPU_DISPATCH=1 needs GCC on x86 (see kiln/cpu/isa.hpp); build with -march flags instead"
#endif
// The copies compiled above the baseline (the baseline itself is always compiled).
#define KILN_CPU_COPY_AVX2 (KILN_CPU_BASELINE_ISA < 1)
#define KILN_CPU_COPY_AVX512 (KILN_CPU_BASELINE_ISA < 2)
// The instruction sets of the two copies: x86-64-v3 and x86-64-v4 (Haswell / Zen 1 and
// Skylake-X / Zen 4 and later). `arch=` is not used: GCC refuses to inline the
// baseline always_inline micro-kernels into a function of another arch.
#define KILN_CPU_TARGET_AVX2_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,bmi,bmi2,f16c,lzcnt,movbe,popcnt\")")
#define KILN_CPU_TARGET_AVX512_BEGIN \
  _Pragma("GCC push_options")        \
      _Pragma("GCC target(\"avx2,fma,bmi,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512dq,avx512vl,avx512cd\")")
#define KILN_CPU_TARGET_END _Pragma("GCC pop_options")
#else
#define KILN_CPU_COPY_AVX2 0
#define KILN_CPU_COPY_AVX512 0
#endif

namespace kiln::cpu {

enum class Isa : int { portable = 0, avx2 = 1, avx512 = 2 };

inline constexpr Isa baseline_isa() { return static_cast<Isa>(KILN_CPU_BASELINE_ISA); }

inline constexpr const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::portable:
      return "portable";
  }
  return "?";
}

// Whether this program has kernels for the path (the baseline, and the copies above it).
inline constexpr bool isa_compiled(Isa isa) {
  return isa == baseline_isa() || (isa == Isa::avx2 && KILN_CPU_COPY_AVX2) ||
         (isa == Isa::avx512 && KILN_CPU_COPY_AVX512);
}

// Whether this CPU (and OS: __builtin_cpu_supports checks the XSAVE state too) can run the path.
inline bool cpu_supports(Isa isa) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (isa) {
    case Isa::portable:
      return true;
    case Isa::avx2:
      return avx2;
    case Isa::avx512:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512cd");
  }
  return false;
#else
  // No CPUID query here (nvcc's host pass, other compilers): the program runs where its baseline runs.
  return static_cast<int>(isa) <= KILN_CPU_BASELINE_ISA;
#endif
}

// The paths this program has and this CPU runs, fastest first.
inline std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::avx512, Isa::avx2, Isa::portable})
    if (isa_compiled(isa) && cpu_supports(isa)) out.push_back(isa);
  return out;
}

// The fastest path available here.
inline Isa best_isa() { return available_isas().front(); }

namespace isa_detail {
inline std::string isa_list(const std::vector<Isa>& isas) {
  std::string s;
  for (Isa isa : isas) s += (s.empty() ? "" : ", ") + std::string(isa_name(isa));
  return s;
}
}  // namespace isa_detail

// "avx512" | "avx2" | "portable" | "auto" (or empty: the best) -> the path, checked:
// kiln::Error if the name is unknown, the CPU lacks the instructions, or the program
// was not compiled with that path. `what` names the source in the message.
inline Isa parse_isa(std::string_view name, std::string_view what = "KILN_CPU_ISA") {
  if (name.empty() || name == "auto") return best_isa();
  Isa isa{};
  if (name == "avx512")
    isa = Isa::avx512;
  else if (name == "avx2")
    isa = Isa::avx2;
  else if (name == "portable")
    isa = Isa::portable;
  else
    fail(what, "=", name, ": unknown CPU code path; use avx512, avx2, portable or auto");
  if (!isa_compiled(isa))
    fail(what, "=", name, ": this program was not compiled with the ", name, " kernels (its -m/-march flags give ",
         isa_name(baseline_isa()),
         KILN_CPU_DISPATCH ? " and up" : " only, and run-time dispatch is off (KILN_CPU_DISPATCH=0)",
         "); paths it has: ", isa_detail::isa_list(available_isas()));
  if (!cpu_supports(isa))
    fail(what, "=", name, ": this CPU cannot run the ", name, " kernels (",
         isa == Isa::avx512 ? "it lacks AVX-512 F/BW/DQ/VL/CD" : "it lacks AVX2 or FMA",
         "); paths it can run here: ", isa_detail::isa_list(available_isas()));
  return isa;
}

namespace isa_detail {
inline std::atomic<int>& isa_slot() {
  static std::atomic<int> slot{-1};
  return slot;
}
}  // namespace isa_detail

// The path the GEMMs and convolutions run: chosen on the first call, from
// KILN_CPU_ISA if set, else the best available. Throws kiln::Error (every call,
// until fixed by set_active_isa) when KILN_CPU_ISA asks for a path that cannot run.
inline Isa active_isa() {
  const int cur = isa_detail::isa_slot().load(std::memory_order_acquire);
  if (cur >= 0) return static_cast<Isa>(cur);
  const char* env = std::getenv("KILN_CPU_ISA");
  const Isa chosen = parse_isa(env ? env : "");
  int expected = -1;
  isa_detail::isa_slot().compare_exchange_strong(expected, static_cast<int>(chosen), std::memory_order_acq_rel);
  return static_cast<Isa>(isa_detail::isa_slot().load(std::memory_order_acquire));
}

// Switches the path for the GEMMs and convolutions that start after this call
// (tests, benchmarks). Checked as KILN_CPU_ISA is. The workspaces the layers
// plan are sized for every compiled path, so switching between steps is safe.
// Returns the previous path (the best one if none was chosen yet).
inline Isa set_active_isa(Isa isa) {
  parse_isa(isa_name(isa), "set_active_isa");
  const int prev = isa_detail::isa_slot().exchange(static_cast<int>(isa), std::memory_order_acq_rel);
  return prev >= 0 ? static_cast<Isa>(prev) : best_isa();
}

}  // namespace kiln::cpu
