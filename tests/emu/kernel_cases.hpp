#pragma once
// The table of kernel test cases (ggml test-backend-ops style): every case builds the same layer
// (or optimizer, or op) on kiln::Cpu and on kiln::Cuda with identical state and inputs, runs
// forward and backward (twice: outputs and input gradients must be overwritten, parameter
// gradients accumulated onto random initial values), and compares every output, input gradient,
// parameter gradient and buffer with a normalised error ||cuda - cpu|| / ||cpu||.
//
// The same table runs on the emulated Cuda device (tests/emu/test_kernels_table.cpp, compiled by
// g++) and on a real GPU (tests/gpu/test_gpu_kernels.cpp, compiled by nvcc).
// Shapes are small and deliberately not multiples of the kernels' tiles (13x11, 3/5/7 channels).
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kiln/cuda.hpp"
#include "kiln/cuda/step_monitor.hpp"
#include "conv2d_mma.cuh"
#include "conv2d_wgmma.cuh"
#include "normalised_error.hpp"

namespace kiln_test {

using kiln::Cpu;
using kiln::Cuda;
using kiln::Shape;

struct Comparison {
  std::string what;
  double error;
  double bound;
  bool ok() const { return error < bound; }
};

struct Report {
  std::vector<Comparison> comparisons;
  void compare(const std::string& what, const std::vector<float>& cuda, const std::vector<float>& cpu, double bound,
               double floor = 0.0) {
    comparisons.push_back({what, normalised_error(cuda, cpu, floor), bound});
  }
  template <class A, class B>
  void compare(const std::string& what, const kiln::Tensor<float, A>& cuda, const kiln::Tensor<float, B>& cpu,
               double bound, double floor = 0.0) {
    compare(what, cuda.to_vector(), cpu.to_vector(), bound, floor);
  }
};

struct KernelCase {
  std::string name;
  std::function<void(Report&)> run;
  // Part of the tiny subset that still launches every kernel: all the emulator's OS-thread mode
  // (ThreadSanitizer builds, one std::thread per CUDA thread) can afford.
  bool small = false;
};

// The default bound: float kernels against float/double CPU code on small shapes.
inline constexpr double tight = 1e-5;
inline constexpr double loose = 1e-4;  // long reductions (weight gradients over N*H*W)
// TF32 operands (10 explicit mantissa bits: relative rounding error up to 2^-11 ~ 4.9e-4 per operand)
// against the strict fp32 CPU: the normalised error of random dot products is ~4e-4; the bound
// leaves room for sums with cancellation (ggml's test-backend-ops bounds NMSE, the square of this).
inline constexpr double tf32_bound = 1e-3;
// BF16 operands (8-bit significand, unit roundoff 2^-8): twice that (tests/emu/test_conv_mma_bf16.cpp).
inline constexpr double bf16_bound = 1.0 / 128;

inline std::vector<float> random_vector(std::size_t n, kiln::Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

// Random parameter values, gradients (so accumulation is tested) and buffers (running_var > 0).
template <class Layer>
void randomise_state(Layer& layer, kiln::Rng& rng) {
  layer.visit(
      [&](kiln::StateRef<Cpu> r) {
        const bool variance = r.name.ends_with("running_var");
        if (r.value)
          r.value->copy_from_host(
              random_vector(r.value->numel(), rng, variance ? 0.5f : -1.0f, variance ? 2.0f : 1.0f));
        if (r.grad) r.grad->copy_from_host(random_vector(r.grad->numel(), rng));
        if (r.counter) *r.counter = 3;
      },
      "");
}

// Copies every parameter, gradient, buffer and counter of a layer into the same layer (a Cpu one
// into a Cuda one, or between two of a device).
template <class FromLayer, class ToLayer>
void copy_state(FromLayer& from, ToLayer& to) {
  std::vector<kiln::StateRef<typename FromLayer::device>> src;
  from.visit([&](kiln::StateRef<typename FromLayer::device> r) { src.push_back(r); }, "");
  std::size_t i = 0;
  to.visit(
      [&](kiln::StateRef<typename ToLayer::device> r) {
        const auto& s = src.at(i++);
        KILN_CHECK(s.name == r.name, "copy_state: ", s.name, " vs ", r.name);
        if (r.value) r.value->copy_from_host(s.value->to_vector());
        if (r.grad) r.grad->copy_from_host(s.grad->to_vector());
        if (r.counter) *r.counter = *s.counter;
      },
      "");
}

// Every parameter gradient of a layer or network, in visit order, with its name.
template <class Layer>
std::vector<std::pair<std::string, std::vector<float>>> gradients_of(Layer& layer) {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  layer.visit(
      [&](kiln::StateRef<typename Layer::device> r) {
        if (r.grad) out.emplace_back(r.name, r.grad->to_vector());
      },
      "");
  return out;
}

// Compares every parameter value, gradient and buffer of the two layers (floor: see normalised_error).
template <class CpuLayer, class CudaLayer>
void compare_state(Report& report, CpuLayer& cpu, CudaLayer& cuda, double bound, double floor = 0.0) {
  std::vector<kiln::StateRef<Cpu>> want;
  cpu.visit([&](kiln::StateRef<Cpu> r) { want.push_back(r); }, "");
  std::size_t i = 0;
  cuda.visit(
      [&](kiln::StateRef<Cuda> r) {
        const auto& w = want.at(i++);
        if (r.value) report.compare(r.name, *r.value, *w.value, bound, floor);
        if (r.grad) report.compare(r.name + ".grad", *r.grad, *w.grad, bound, floor);
        if (r.counter) report.compare(r.name, {static_cast<float>(*r.counter)}, {static_cast<float>(*w.counter)}, 0.5);
      },
      "");
}

// A single-input layer: forward + backward twice on both devices, everything compared.
template <class CpuLayer, class CudaLayer>
void layer_case(Report& report, const Shape& in, kiln::Mode mode, std::uint64_t seed, double bound = tight,
                double grad_bound = loose, bool input_grad = true) {
  kiln::Rng rng(seed);
  CpuLayer cpu;
  CudaLayer cuda;
  randomise_state(cpu, rng);
  copy_state(cpu, cuda);
  if constexpr (requires { cpu.set_input_grad(false); }) {
    cpu.set_input_grad(input_grad);
    cuda.set_input_grad(input_grad);
  }
  kiln::Arena<Cpu> arena_cpu;
  kiln::Arena<Cuda> arena_cuda;
  arena_cpu.begin();
  arena_cuda.begin();
  const Shape out = cpu.plan(in, arena_cpu, "case");
  cuda.plan(in, arena_cuda, "case");
  arena_cpu.finalize();
  arena_cuda.finalize();
  for (int pass = 0; pass < 2; ++pass) {
    const std::string p = pass ? " (pass 2)" : "";
    const auto xv = random_vector(in.numel(), rng, -2.0f, 2.0f);
    const auto gv = random_vector(out.numel(), rng);
    const auto xc = kiln::Tensor<float, Cpu>::from_host(in, xv);
    const auto xg = kiln::Tensor<float, Cuda>::from_host(in, xv);
    const auto gc = kiln::Tensor<float, Cpu>::from_host(out, gv);
    const auto gg = kiln::Tensor<float, Cuda>::from_host(out, gv);
    report.compare("y" + p, cuda.forward(xg, mode), cpu.forward(xc, mode), bound);
    report.compare("dx" + p, cuda.backward(gg), cpu.backward(gc), bound);
    compare_state(report, cpu, cuda, grad_bound);
  }
}

// Concat<Ca, Cb>: two inputs, forward and the split backward.
template <int Ca, int Cb>
void concat_case(Report& report, std::int64_t n, std::int64_t h, std::int64_t w, std::uint64_t seed) {
  kiln::Rng rng(seed);
  kiln::Concat<Ca, Cb, Cpu> cpu;
  kiln::Concat<Ca, Cb, Cuda> cuda;
  const Shape a = Shape::nchw(n, Ca, h, w), b = Shape::nchw(n, Cb, h, w);
  kiln::Arena<Cpu> arena_cpu;
  kiln::Arena<Cuda> arena_cuda;
  arena_cpu.begin();
  arena_cuda.begin();
  const Shape out = cpu.plan(a, b, arena_cpu, "case");
  cuda.plan(a, b, arena_cuda, "case");
  arena_cpu.finalize();
  arena_cuda.finalize();
  const auto av = random_vector(a.numel(), rng), bv = random_vector(b.numel(), rng),
             gv = random_vector(out.numel(), rng);
  const auto ac = kiln::Tensor<float, Cpu>::from_host(a, av), bc = kiln::Tensor<float, Cpu>::from_host(b, bv);
  const auto ag = kiln::Tensor<float, Cuda>::from_host(a, av), bg = kiln::Tensor<float, Cuda>::from_host(b, bv);
  report.compare("y", cuda.forward(ag, bg), cpu.forward(ac, bc), 1e-7);
  const auto gc = kiln::Tensor<float, Cpu>::from_host(out, gv);
  const auto gg = kiln::Tensor<float, Cuda>::from_host(out, gv);
  auto [da_g, db_g] = cuda.backward(gg);
  auto [da_c, db_c] = cpu.backward(gc);
  report.compare("da", da_g, da_c, 1e-7);
  report.compare("db", db_g, db_c, 1e-7);
}

// Backend::add directly (SkipConcat's backward uses it).
inline void add_case(Report& report, const Shape& s, std::uint64_t seed) {
  kiln::Rng rng(seed);
  const auto av = random_vector(s.numel(), rng), bv = random_vector(s.numel(), rng);
  kiln::Tensor<float, Cpu> out_cpu(s);
  kiln::Tensor<float, Cuda> out_cuda(s);
  kiln::Backend<Cpu>::add(kiln::Tensor<float, Cpu>::from_host(s, av), kiln::Tensor<float, Cpu>::from_host(s, bv),
                          out_cpu);
  kiln::Backend<Cuda>::add(kiln::Tensor<float, Cuda>::from_host(s, av), kiln::Tensor<float, Cuda>::from_host(s, bv),
                           out_cuda);
  report.compare("a + b", out_cuda, out_cpu, 1e-7);
}

// Backend::maxpool2d_forward / backward directly (any input size, floor), argmax compared as floats.
inline void pool_backend_case(Report& report, const kiln::PoolArgs& a, std::uint64_t seed) {
  kiln::Rng rng(seed);
  const Shape in = Shape::nchw(a.n, a.c, a.h, a.w), out = Shape::nchw(a.n, a.c, a.out_h(), a.out_w());
  const auto xv = random_vector(in.numel(), rng), gv = random_vector(out.numel(), rng);
  kiln::Tensor<float, Cpu> y_cpu(out), dx_cpu(in);
  kiln::Tensor<std::int32_t, Cpu> i_cpu(out);
  kiln::Tensor<float, Cuda> y(out), dx = kiln::Tensor<float, Cuda>::from_host(in, std::vector<float>(in.numel(), 9.0f));
  kiln::Tensor<std::int32_t, Cuda> i_cuda(out);
  kiln::Backend<Cpu>::maxpool2d_forward(a, kiln::Tensor<float, Cpu>::from_host(in, xv), y_cpu, i_cpu);
  kiln::Backend<Cuda>::maxpool2d_forward(a, kiln::Tensor<float, Cuda>::from_host(in, xv), y, i_cuda);
  kiln::Backend<Cpu>::maxpool2d_backward(a, i_cpu, kiln::Tensor<float, Cpu>::from_host(out, gv), dx_cpu);
  kiln::Backend<Cuda>::maxpool2d_backward(a, i_cuda, kiln::Tensor<float, Cuda>::from_host(out, gv), dx);
  auto as_float = [](const std::vector<std::int32_t>& v) { return std::vector<float>(v.begin(), v.end()); };
  report.compare("y", y, y_cpu, 1e-7);
  report.compare("argmax", as_float(i_cuda.to_vector()), as_float(i_cpu.to_vector()), 1e-7);
  report.compare("dx (uncovered rows and columns zeroed)", dx, dx_cpu, 1e-7);
}

// The mma.sync convolution (kernels/conv2d_mma.cuh; Backend<Cuda>'s TF32 forward, which the tf32
// Conv2d rows run) against the CPU backend's forward: one variant per case, launched here directly
// through KILN_CUDA_LAUNCH (the local names spell the kernels without template commas), with grid
// and workspace for its BN x BM tile (the backend's plan, mma_conv::block_n and block_m, may pick
// another; BM = mma_conv::tall_bm: conv2d_mma_forward_tall_kernel). Bound: TF32 operands, the
// activations truncated (2^-10 relative, twice tf32_bound's rounding).
template <int K, int BN, bool ChannelTail, int BM = kiln::cuda::kernels::mma_conv::bm>
void mma_conv_case(Report& report, const kiln::ConvShape& s, std::uint64_t seed, int splits = 1) {
  namespace mc = kiln::cuda::kernels::mma_conv;
  kiln::Rng rng(seed);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ws{s.c_out, s.c_in, s.k, s.k},
              ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const auto xv = random_vector(xs.numel(), rng), wv = random_vector(ws.numel(), rng), bv = random_vector(s.c_out, rng);
  kiln::Tensor<float, Cpu> y_cpu(ys),
      work_cpu(Shape{static_cast<std::int64_t>(kiln::Backend<Cpu>::conv2d_workspace_floats(s)) + 1});
  kiln::Backend<Cpu>::conv2d_forward(s, kiln::Tensor<float, Cpu>::from_host(xs, xv),
                                     kiln::Tensor<float, Cpu>::from_host(ws, wv),
                                     kiln::Tensor<float, Cpu>::from_host(Shape{s.c_out}, bv), y_cpu, work_cpu);
  const auto x = kiln::Tensor<float, Cuda>::from_host(xs, xv), w = kiln::Tensor<float, Cuda>::from_host(ws, wv);
  const auto b = kiln::Tensor<float, Cuda>::from_host(Shape{s.c_out}, bv);
  kiln::Tensor<float, Cuda> y(ys), packed(Shape{mc::workspace_floats(s, splits, BN, BM)});
  auto* conv2d_mma_pack_weights_kernel = &kiln::cuda::kernels::conv2d_mma_pack_weights_kernel<K>;
  // splits > 1: the k steps in slices, the partial tiles and counters after the packed weights.
  unsigned* counters = mc::counters(s, packed.data(), splits, BN, BM);
  float* partials = splits > 1 ? packed.data() + mc::partials_offset(s) : nullptr;
  KILN_CUDA_LAUNCH(conv2d_mma_pack_weights_kernel, dim3(8), dim3(256), 0, s, w.data(), packed.data(), counters,
                   mc::counter_count(s, splits, BN, BM));
  using Tile = mc::Tile<BN, BM>;
  if constexpr (BM == mc::tall_bm) {
    auto* conv2d_mma_forward_tall_kernel = &kiln::cuda::kernels::conv2d_mma_forward_tall_kernel<K>;
    mc::allow_tall_shared<K>();
    KILN_CUDA_LAUNCH(conv2d_mma_forward_tall_kernel, mc::grid(s, splits, BN, BM), dim3(Tile::threads),
                     Tile::shared_bytes, s, x.data(), static_cast<const float*>(packed.data()), b.data(), y.data(),
                     partials, counters);
  } else {
    auto* conv2d_mma_forward_kernel = &kiln::cuda::kernels::conv2d_mma_forward_kernel<K, BN, ChannelTail>;
    KILN_CUDA_LAUNCH(conv2d_mma_forward_kernel, mc::grid(s, splits, BN), dim3(Tile::threads), Tile::shared_bytes, s,
                     x.data(), static_cast<const float*>(packed.data()), b.data(), y.data(), partials, counters);
  }
  report.compare(splits > 1          ? "y (mma.sync TF32, split-K)"
                 : BM == mc::tall_bm ? "y (mma.sync TF32, 256 x 64 tile)"
                                     : "y (mma.sync TF32)",
                 y, y_cpu, 2 * tf32_bound);
}

// On a GPU that runs no sm_90a code a wgmma launcher must refuse with kiln::gpu::Error, not trap:
// `launch` is such a launch.
template <class Launch>
void wgmma_refused(Report& report, Launch&& launch) {
  bool refused = false;
  try {
    launch();
  } catch (const kiln::gpu::Error&) {
    refused = true;
  }
  report.compare("wgmma refused where no sm_90a code runs", {refused ? 0.0f : 1.0f}, {0.0f}, 0.5, 1.0);
}

// The wgmma TF32 forward (kernels/conv2d_wgmma.cuh; not yet the backend's) against the CPU backend's
// forward, on mma_conv's packing, launched directly on 128 x BN tiles (`splits` slices of the k steps).
// Where the device does not run
// the binary's sm_90a code (a GPU other than an H100/H200, or a build without 90a) the kernel would
// trap: the case then checks that the launcher refuses with kiln::gpu::Error instead. Short: the
// 64 x 128 tile (conv2d_wgmma_forward_short_kernel, BN 128).
template <int K, int BN, bool Short = false>
void wgmma_conv_case(Report& report, const kiln::ConvShape& s, std::uint64_t seed, int splits = 1) {
  constexpr int BM = Short ? kiln::cuda::kernels::wgmma_conv::short_bm : kiln::cuda::kernels::wgmma_conv::bm;
  namespace mc = kiln::cuda::kernels::mma_conv;
  namespace wc = kiln::cuda::kernels::wgmma_conv;
  kiln::Rng rng(seed);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ws{s.c_out, s.c_in, s.k, s.k},
              ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const auto xv = random_vector(xs.numel(), rng), wv = random_vector(ws.numel(), rng), bv = random_vector(s.c_out, rng);
  const auto x = kiln::Tensor<float, Cuda>::from_host(xs, xv), w = kiln::Tensor<float, Cuda>::from_host(ws, wv);
  const auto b = kiln::Tensor<float, Cuda>::from_host(Shape{s.c_out}, bv);
  kiln::Tensor<float, Cuda> y(ys), packed(Shape{mc::workspace_floats(s, splits, BN, BM)});
  if (!kiln::gpu::wgmma::runs_here()) {
    wgmma_refused(report, [&] {
      wc::launch_packed(s, x.data(), packed.data(), b.data(), y.data(), BN, kiln::cuda::current_stream(), 1, BM);
    });
    return;
  }
  kiln::Tensor<float, Cpu> y_cpu(ys),
      work_cpu(Shape{static_cast<std::int64_t>(kiln::Backend<Cpu>::conv2d_workspace_floats(s)) + 1});
  kiln::Backend<Cpu>::conv2d_forward(s, kiln::Tensor<float, Cpu>::from_host(xs, xv),
                                     kiln::Tensor<float, Cpu>::from_host(ws, wv),
                                     kiln::Tensor<float, Cpu>::from_host(Shape{s.c_out}, bv), y_cpu, work_cpu);
  // splits > 1: the k steps in slices, the partial tiles and counters after the packed weights (mma_conv's).
  unsigned* counters = mc::counters(s, packed.data(), splits, BN, BM);
  float* partials = splits > 1 ? packed.data() + mc::partials_offset(s) : nullptr;
  auto* conv2d_mma_pack_weights_kernel = &kiln::cuda::kernels::conv2d_mma_pack_weights_kernel<K>;
  KILN_CUDA_LAUNCH(conv2d_mma_pack_weights_kernel, dim3(8), dim3(256), 0, s, w.data(), packed.data(), counters,
                   mc::counter_count(s, splits, BN, BM));
  wc::allow_shared<K, BN, BM>();
  if constexpr (Short) {
    using Tile = wc::Tile<BN, BM>;
    auto* conv2d_wgmma_forward_short_kernel = &kiln::cuda::kernels::conv2d_wgmma_forward_short_kernel<K>;
    KILN_CUDA_LAUNCH(conv2d_wgmma_forward_short_kernel, wc::grid(s, BN, splits, BM), dim3(Tile::threads),
                     Tile::shared_bytes, s, x.data(), static_cast<const float*>(packed.data()), b.data(), y.data(),
                     partials, counters);
  } else {
    auto* conv2d_wgmma_forward_kernel = &kiln::cuda::kernels::conv2d_wgmma_forward_kernel<K, BN>;
    KILN_CUDA_LAUNCH(conv2d_wgmma_forward_kernel, wc::grid(s, BN, splits), dim3(wc::threads),
                     wc::Tile<BN>::shared_bytes, s, x.data(), static_cast<const float*>(packed.data()), b.data(),
                     y.data(), partials, counters);
  }
  report.compare(splits > 1 ? "y (wgmma TF32, split-K)" : "y (wgmma TF32)", y, y_cpu, 2 * tf32_bound);
}

// A network's training forward under TF32 or BF16 packs every convolution's weights in one launch at
// its start (Backend<Cuda>::conv2d_pack_forwards: conv2d_mma_pack_batch_kernel, or
// conv2d_mma_pack_batch_bf16_kernel), then each convolution runs its GEMM alone
// (conv2d_forward_packed): against each layer's own conv2d_forward (its weights packed by
// conv2d_mma_pack_weights_both_kernel or ..._both_bf16_kernel), the same y and the same
// input-gradient packing kept in the workspace (bound 1e-12: the same bits); y also against the CPU
// backend (the mode's bound).
inline void conv_pack_batch_case(Report& report, const std::vector<kiln::ConvShape>& shapes, std::uint64_t seed,
                                 kiln::cuda::MathMode mode = kiln::cuda::MathMode::tf32) {
  namespace mc = kiln::cuda::kernels::mma_conv;
  namespace mbw = kiln::cuda::kernels::mma_bf16_wgrad;
  using B = kiln::Backend<Cuda>;
  using T = kiln::Tensor<float, Cuda>;
  kiln::cuda::MathModeScope scope(mode);
  const bool bf16 = mode == kiln::cuda::MathMode::bf16;
  kiln::Rng rng(seed);
  struct Conv {
    kiln::ConvShape s;
    T x, w, b, ws, y;
  };
  std::vector<Conv> convs;
  convs.reserve(shapes.size());
  for (const kiln::ConvShape& s : shapes) {
    const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), wshape{s.c_out, s.c_in, s.k, s.k};
    convs.push_back({s, T::from_host(xs, random_vector(xs.numel(), rng)),
                     T::from_host(wshape, random_vector(wshape.numel(), rng)),
                     T::from_host(Shape{s.c_out}, random_vector(s.c_out, rng)),
                     T(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1}),
                     T(Shape::nchw(s.n, s.c_out, s.h, s.w))});
  }
  std::vector<kiln::ConvPacking<Cuda>> packings;
  std::vector<kiln::ConvPacking<Cuda>*> registered;
  packings.reserve(convs.size());
  for (Conv& c : convs) registered.push_back(&packings.emplace_back(kiln::ConvPacking<Cuda>{c.s, &c.w, &c.ws}));
  B::conv2d_pack_forwards(registered);
  for (Conv& c : convs) B::conv2d_forward_packed(c.s, c.x, c.w, c.b, c.y, c.ws);
  for (Conv& c : convs) {
    T ws(c.ws.shape()), y(c.y.shape());
    B::conv2d_forward(c.s, c.x, c.w, c.b, y, ws);
    report.compare("y on the batched packing, against the layer's own", c.y, y, 1e-12);
    kiln::Tensor<float, Cpu> y_cpu(c.y.shape()),
        work_cpu(Shape{static_cast<std::int64_t>(kiln::Backend<Cpu>::conv2d_workspace_floats(c.s)) + 1});
    kiln::Backend<Cpu>::conv2d_forward(c.s, kiln::to<Cpu>(c.x), kiln::to<Cpu>(c.w), kiln::to<Cpu>(c.b), y_cpu,
                                       work_cpu);
    report.compare("y on the batched packing, against the CPU backend", c.y, y_cpu, bf16 ? bf16_bound : 2 * tf32_bound);
    const auto kept = c.ws.to_vector(), own = ws.to_vector();
    const auto l = mbw::layout(c.s);
    const auto at = static_cast<std::ptrdiff_t>(bf16 ? l.kept_dgrad
                                                     : kiln::cuda::kernels::tf32_forward::dgrad_offset(c.s)),
               end = bf16 ? static_cast<std::ptrdiff_t>(l.kept_total)
                          : at + static_cast<std::ptrdiff_t>(mc::packed_dgrad_weight_floats(c.s));
    report.compare("the input gradient's packing kept", std::vector<float>(kept.begin() + at, kept.begin() + end),
                   std::vector<float>(own.begin() + at, own.begin() + end), 1e-12);
  }
}

// A network's backward under TF32 or BF16 lists its weight gradients' split-K reductions and adds
// them all in one launch at its end (Backend<Cuda>::conv2d_defer_wgrad_reductions, ...flush...:
// conv2d_mma_wgrad_reduce_batch_kernel): each dw against the layer's own backward (its reduction
// launched right after its GEMM: conv2d_mma_wgrad_reduce_kernel; bound 1e-12: the same bits) and
// against the CPU backend (the mode's bound). Every shape must plan splits added apart.
inline void wgrad_reduce_batch_case(Report& report, const std::vector<kiln::ConvShape>& shapes, std::uint64_t seed,
                                    kiln::cuda::MathMode mode = kiln::cuda::MathMode::tf32) {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  using B = kiln::Backend<Cuda>;
  using C = kiln::Backend<Cpu>;
  using T = kiln::Tensor<float, Cuda>;
  kiln::cuda::MathModeScope scope(mode);
  const bool bf16 = mode == kiln::cuda::MathMode::bf16;
  kiln::Rng rng(seed);
  struct Conv {
    kiln::ConvShape s;
    std::vector<float> x, w, dy, dw0;
    T dx, dw, db, ws;
  };
  std::vector<Conv> convs;
  convs.reserve(shapes.size());
  for (const kiln::ConvShape& s : shapes) {
    const mw::Splits sp = bf16 ? mw::split_k(s, mw::single_tap(s)) : mw::splits(s, mw::geometry(s));
    if (sp.count < 2 || sp.one_launch || sp.stream_k)
      throw std::logic_error("wgrad_reduce_batch_case: a shape whose weight gradient is not reduced apart");
    const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), wshape{s.c_out, s.c_in, s.k, s.k},
                ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
    Conv c{s,
           random_vector(xs.numel(), rng),
           random_vector(wshape.numel(), rng),
           random_vector(ys.numel(), rng),
           random_vector(wshape.numel(), rng),
           T(xs),
           T(wshape),
           T{},
           T(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1})};
    c.dw.copy_from_host(c.dw0);  // the gradients accumulate
    convs.push_back(std::move(c));
  }
  auto backward = [](Conv& c, T& dw, T& ws) {
    const Shape xs = Shape::nchw(c.s.n, c.s.c_in, c.s.h, c.s.w), ys = Shape::nchw(c.s.n, c.s.c_out, c.s.h, c.s.w);
    B::conv2d_backward(c.s, T::from_host(xs, c.x), T::from_host(Shape{c.s.c_out, c.s.c_in, c.s.k, c.s.k}, c.w),
                       T::from_host(ys, c.dy), c.dx, dw, c.db, ws);
  };
  B::conv2d_defer_wgrad_reductions();
  for (Conv& c : convs) backward(c, c.dw, c.ws);
  B::conv2d_flush_wgrad_reductions();
  for (Conv& c : convs) {
    T dw = T::from_host(c.dw.shape(), c.dw0), ws(c.ws.shape());
    backward(c, dw, ws);
    report.compare("dw reduced in the batched launch, against the layer's own reduction", c.dw, dw, 1e-12);
    const Shape xs = Shape::nchw(c.s.n, c.s.c_in, c.s.h, c.s.w), ys = Shape::nchw(c.s.n, c.s.c_out, c.s.h, c.s.w);
    kiln::Tensor<float, Cpu> dx_cpu(xs),
        dw_cpu = kiln::Tensor<float, Cpu>::from_host(c.dw.shape(), c.dw0), db_cpu,
        work_cpu(Shape{static_cast<std::int64_t>(C::conv2d_workspace_floats(c.s)) + 1});
    C::conv2d_backward(c.s, kiln::Tensor<float, Cpu>::from_host(xs, c.x),
                       kiln::Tensor<float, Cpu>::from_host(c.dw.shape(), c.w),
                       kiln::Tensor<float, Cpu>::from_host(ys, c.dy), dx_cpu, dw_cpu, db_cpu, work_cpu);
    report.compare("dw reduced in the batched launch, against the CPU backend", c.dw, dw_cpu,
                   bf16 ? bf16_bound : 2 * tf32_bound);
  }
}

// Backend<Cuda> under BF16 outside a training forward, against the CPU backend: an eval forward (its
// workspace holds the forward's packing alone: conv2d_mma_pack_weights_bf16_kernel) and a backward
// told of nothing kept (the input gradient packs its own: conv2d_mma_pack_weights_dgrad_bf16_kernel).
inline void bf16_unkept_case(Report& report, const kiln::ConvShape& s, std::uint64_t seed) {
  using B = kiln::Backend<Cuda>;
  using C = kiln::Backend<Cpu>;
  kiln::cuda::MathModeScope bf16(kiln::cuda::MathMode::bf16);
  kiln::Rng rng(seed);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ws{s.c_out, s.c_in, s.k, s.k},
              ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const auto xv = random_vector(xs.numel(), rng), wv = random_vector(ws.numel(), rng), bv = random_vector(s.c_out, rng),
             dyv = random_vector(ys.numel(), rng);
  kiln::Tensor<float, Cpu> y_cpu(ys), dx_cpu(xs), dw_cpu(ws), db_cpu,
      work_cpu(Shape{static_cast<std::int64_t>(C::conv2d_workspace_floats(s)) + 1});
  dw_cpu.zero();
  const auto x_cpu = kiln::Tensor<float, Cpu>::from_host(xs, xv), w_cpu = kiln::Tensor<float, Cpu>::from_host(ws, wv);
  C::conv2d_forward(s, x_cpu, w_cpu, kiln::Tensor<float, Cpu>::from_host(Shape{s.c_out}, bv), y_cpu, work_cpu);
  C::conv2d_backward(s, x_cpu, w_cpu, kiln::Tensor<float, Cpu>::from_host(ys, dyv), dx_cpu, dw_cpu, db_cpu, work_cpu);
  const auto x = kiln::Tensor<float, Cuda>::from_host(xs, xv), w = kiln::Tensor<float, Cuda>::from_host(ws, wv);
  kiln::Tensor<float, Cuda> y(ys), dx(xs),
      dw = kiln::Tensor<float, Cuda>::from_host(ws, std::vector<float>(ws.numel())), db,
      eval_work(Shape{static_cast<std::int64_t>(B::conv2d_forward_workspace_floats(s)) + 1}),
      work(Shape{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1});
  B::conv2d_forward(s, x, w, kiln::Tensor<float, Cuda>::from_host(Shape{s.c_out}, bv), y, eval_work);
  report.compare("y (BF16, eval workspace: the forward's packing alone)", y, y_cpu, bf16_bound);
  B::conv2d_backward(s, x, w, kiln::Tensor<float, Cuda>::from_host(ys, dyv), dx, dw, db, work, kiln::ConvKept::nothing);
  report.compare("dx (BF16, nothing kept: the input gradient's own packing)", dx, dx_cpu, bf16_bound);
  report.compare("dw (BF16)", dw, dw_cpu, bf16_bound);
}

// Backend<Cuda>'s TF32 forward without its planned workspace (a layer planned under strict fp32):
// the implicit-GEMM forward of kernels/conv2d_igemm.cuh, against the CPU backend.
inline void igemm_forward_case(Report& report, const kiln::ConvShape& s, std::uint64_t seed) {
  kiln::cuda::MathModeScope tf32(kiln::cuda::MathMode::tf32);
  kiln::Rng rng(seed);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ws{s.c_out, s.c_in, s.k, s.k},
              ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const auto xv = random_vector(xs.numel(), rng), wv = random_vector(ws.numel(), rng), bv = random_vector(s.c_out, rng);
  kiln::Tensor<float, Cpu> y_cpu(ys),
      work_cpu(Shape{static_cast<std::int64_t>(kiln::Backend<Cpu>::conv2d_workspace_floats(s)) + 1});
  kiln::Backend<Cpu>::conv2d_forward(s, kiln::Tensor<float, Cpu>::from_host(xs, xv),
                                     kiln::Tensor<float, Cpu>::from_host(ws, wv),
                                     kiln::Tensor<float, Cpu>::from_host(Shape{s.c_out}, bv), y_cpu, work_cpu);
  kiln::Tensor<float, Cuda> y(ys), no_workspace(Shape{1});
  kiln::Backend<Cuda>::conv2d_forward(s, kiln::Tensor<float, Cuda>::from_host(xs, xv),
                                      kiln::Tensor<float, Cuda>::from_host(ws, wv),
                                      kiln::Tensor<float, Cuda>::from_host(Shape{s.c_out}, bv), y, no_workspace);
  report.compare("y (implicit GEMM, no workspace)", y, y_cpu, tf32_bound);
}

// Backend<Cuda>'s TF32 gradients without a workspace on an image of H*W % 4 != 0: the implicit-GEMM
// input and weight gradients of kernels/conv2d_igemm.cuh (the mma.sync ones need a workspace for
// the packed weights, and H*W % 4 == 0), against the CPU backend. planned: with the planned
// workspace but nothing kept from a forward (ConvKept::nothing), the mma.sync gradients, the input
// gradient's weights packed by its own launch (a training forward packs them: Conv2d's cases).
inline void igemm_backward_case(Report& report, const kiln::ConvShape& s, std::uint64_t seed, bool planned = false) {
  kiln::cuda::MathModeScope tf32(kiln::cuda::MathMode::tf32);
  kiln::Rng rng(seed);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ws{s.c_out, s.c_in, s.k, s.k},
              ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const auto xv = random_vector(xs.numel(), rng), wv = random_vector(ws.numel(), rng),
             dyv = random_vector(ys.numel(), rng);
  kiln::Tensor<float, Cpu> dx_cpu(xs), dw_cpu(ws), db_cpu,
      work_cpu(Shape{static_cast<std::int64_t>(kiln::Backend<Cpu>::conv2d_workspace_floats(s)) + 1});
  dw_cpu.zero();
  kiln::Backend<Cpu>::conv2d_backward(s, kiln::Tensor<float, Cpu>::from_host(xs, xv),
                                      kiln::Tensor<float, Cpu>::from_host(ws, wv),
                                      kiln::Tensor<float, Cpu>::from_host(ys, dyv), dx_cpu, dw_cpu, db_cpu, work_cpu);
  kiln::Tensor<float, Cuda> dx(xs),
      dw = kiln::Tensor<float, Cuda>::from_host(ws, std::vector<float>(ws.numel(), 0.0f)), db,
      work(Shape{planned ? static_cast<std::int64_t>(kiln::Backend<Cuda>::conv2d_workspace_floats(s)) + 1 : 1});
  kiln::Backend<Cuda>::conv2d_backward(
      s, kiln::Tensor<float, Cuda>::from_host(xs, xv), kiln::Tensor<float, Cuda>::from_host(ws, wv),
      kiln::Tensor<float, Cuda>::from_host(ys, dyv), dx, dw, db, work, kiln::ConvKept::nothing);
  report.compare(planned ? "dx (mma.sync, weights packed for it)" : "dx (implicit GEMM, no workspace)", dx, dx_cpu,
                 tf32_bound);
  report.compare(planned ? "dw (mma.sync)" : "dw (implicit GEMM, H*W % 4 != 0)", dw, dw_cpu, tf32_bound);
}

// The TF32 weight gradient (kernels/conv2d_mma_wgrad.cuh) in the splits `sp` on the shape's tile
// (mma_wgrad::geometry; with counters: added in the GEMM's launch where sp says one_launch) against
// the CPU backend's (exact-operand and order checks in test_conv_mma.cpp); `wgmma`: the tile's
// warpgroup-MMA variant (bit for bit the mma.sync one in test_conv_wgmma.cpp).
inline void mma_wgrad_plan_case(Report& report, const kiln::ConvShape& s, std::uint64_t seed,
                                const kiln::cuda::kernels::mma_wgrad::Splits& sp, bool wgmma) {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  kiln::Rng rng(seed);
  const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ws{s.c_out, s.c_in, s.k, s.k},
              ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
  const auto xv = random_vector(xs.numel(), rng), wv = random_vector(ws.numel(), rng),
             dyv = random_vector(ys.numel(), rng);
  kiln::Tensor<float, Cpu> dx_cpu, dw_cpu(ws), db_cpu,
      work_cpu(Shape{static_cast<std::int64_t>(kiln::Backend<Cpu>::conv2d_workspace_floats(s)) + 1});
  dw_cpu.zero();
  kiln::Backend<Cpu>::conv2d_backward(s, kiln::Tensor<float, Cpu>::from_host(xs, xv),
                                      kiln::Tensor<float, Cpu>::from_host(ws, wv),
                                      kiln::Tensor<float, Cpu>::from_host(ys, dyv), dx_cpu, dw_cpu, db_cpu, work_cpu);
  const mw::Geometry g = mw::geometry(s);
  const auto x = kiln::Tensor<float, Cuda>::from_host(xs, xv), dy = kiln::Tensor<float, Cuda>::from_host(ys, dyv);
  auto dw = kiln::Tensor<float, Cuda>::from_host(ws, std::vector<float>(ws.numel(), 0.0f));
  kiln::Tensor<float, Cuda> work(Shape{mw::partial_floats(s, g, sp) + 1});
  if (wgmma && !kiln::gpu::wgmma::runs_here()) {
    wgmma_refused(report, [&] {
      mw::backward_weight(s, g, sp, x.data(), dy.data(), dw.data(), work.data(), kiln::cuda::current_stream(), nullptr,
                          true);
    });
    return;
  }
  auto counters =
      kiln::Tensor<float, Cuda>::from_host(Shape{mw::tiles(s, g)},  // zero bits: the counters at 0
                                           std::vector<float>(static_cast<std::size_t>(mw::tiles(s, g)), 0.0f));
  mw::backward_weight(s, g, sp, x.data(), dy.data(), dw.data(), work.data(), kiln::cuda::current_stream(),
                      reinterpret_cast<unsigned*>(counters.data()), wgmma);
  report.compare(std::string(wgmma ? "dw (wgmma TF32" : "dw (mma.sync TF32") + (sp.stream_k ? ", stream-K)" : ")"), dw,
                 dw_cpu, tf32_bound);
}
// ... on the stream-K schedule (conv2d_mma_wgrad_stream_k_kernel: 128 x 128 tiles, `blocks` blocks
// over the tiles' k steps; mma_wgrad::stream_k_of; `wgmma`: conv2d_wgmma_wgrad_stream_k_kernel).
inline void mma_wgrad_stream_k_case(Report& report, const kiln::ConvShape& s, std::uint64_t seed, int blocks,
                                    bool wgmma = false) {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  const mw::Splits sp = mw::stream_k_of(s, mw::geometry(s), blocks);
  if (!sp.stream_k || sp.count != blocks || sp.slots < 2)
    throw std::logic_error("mma_wgrad_stream_k_case: the shape gives no stream-K plan with pieces on these blocks");
  mma_wgrad_plan_case(report, s, seed, sp, wgmma);
}

// A loss: value and gradient.
inline void loss_case(Report& report, kiln::LossKind kind, float delta, const Shape& s, std::uint64_t seed) {
  kiln::Rng rng(seed);
  const auto pv = random_vector(s.numel(), rng, -2.0f, 2.0f), tv = random_vector(s.numel(), rng, -2.0f, 2.0f);
  kiln::Loss<Cpu> cpu(kind, delta);
  kiln::Loss<Cuda> cuda(kind, delta);
  const auto pc = kiln::Tensor<float, Cpu>::from_host(s, pv), tc = kiln::Tensor<float, Cpu>::from_host(s, tv);
  const auto pg = kiln::Tensor<float, Cuda>::from_host(s, pv), tg = kiln::Tensor<float, Cuda>::from_host(s, tv);
  report.compare("loss", {cuda.forward(pg, tg)}, {cpu.forward(pc, tc)}, tight);
  report.compare("dprediction", cuda.backward(), cpu.backward(), tight);
}

// An optimizer: three steps on a Conv2d's parameters with random gradients; parameters and state.
template <template <class> class Optimizer, class Options>
void optimizer_case(Report& report, const Options& options, std::uint64_t seed) {
  kiln::Rng rng(seed);
  kiln::Conv2d<3, 5, 3, Cpu> cpu;
  kiln::Conv2d<3, 5, 3, Cuda> cuda;
  randomise_state(cpu, rng);
  copy_state(cpu, cuda);
  Optimizer<Cpu> opt_cpu(kiln::collect_parameters(cpu), options);
  Optimizer<Cuda> opt_cuda(kiln::collect_parameters(cuda), options);
  for (int step = 0; step < 3; ++step) {
    opt_cpu.step();
    opt_cuda.step();
  }
  compare_state(report, cpu, cuda, tight);
  std::vector<std::vector<float>> state_cpu;
  opt_cpu.visit_state([&](const std::string&, kiln::Tensor<float, Cpu>& t) { state_cpu.push_back(t.to_vector()); });
  std::size_t i = 0;
  opt_cuda.visit_state([&](const std::string& name, kiln::Tensor<float, Cuda>& t) {
    report.compare(name, t.to_vector(), state_cpu.at(i++), tight);
  });
}

// Adam's tensors for the optimizer cases: random parameters, gradients and moments of the given
// shapes, the same values on the CPU (p, g, m, v) and the Cuda device (dp, dg, dm, dv).
struct AdamTensorsOnBoth {
  std::vector<kiln::Tensor<float, Cpu>> p, g, m, v;
  std::vector<kiln::Tensor<float, Cuda>> dp, dg, dm, dv;
  void add(const Shape& s, kiln::Rng& rng) {
    const auto pv = random_vector(s.numel(), rng), gv = random_vector(s.numel(), rng);
    const auto mv = random_vector(s.numel(), rng, -0.1f, 0.1f), vv = random_vector(s.numel(), rng, 0.0f, 0.1f);
    p.push_back(kiln::Tensor<float, Cpu>::from_host(s, pv));
    g.push_back(kiln::Tensor<float, Cpu>::from_host(s, gv));
    m.push_back(kiln::Tensor<float, Cpu>::from_host(s, mv));
    v.push_back(kiln::Tensor<float, Cpu>::from_host(s, vv));
    dp.push_back(kiln::Tensor<float, Cuda>::from_host(s, pv));
    dg.push_back(kiln::Tensor<float, Cuda>::from_host(s, gv));
    dm.push_back(kiln::Tensor<float, Cuda>::from_host(s, mv));
    dv.push_back(kiln::Tensor<float, Cuda>::from_host(s, vv));
  }
  // Backend<Cpu>::adam_step on every CPU tensor.
  void cpu_step(kiln::AdamStepArgs a) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      a.numel = static_cast<std::int64_t>(p[i].numel());
      kiln::Backend<Cpu>::adam_step(a, p[i], g[i], m[i], v[i]);
    }
  }
};

// Step `step`'s arguments (lr 1e-2): Adam's L2 term at step 2 and AdamW's decay at step 3, one each.
inline kiln::AdamStepArgs adam_case_args(int step) {
  kiln::AdamStepArgs a;
  a.l2 = step == 2 ? 0.01f : 0.0f;
  a.decay = step == 3 ? 0.999f : 1.0f;
  a.step_size = static_cast<float>(1e-2 / (1.0 - std::pow(0.9, step)));
  a.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(0.999, step)));
  a.numel = -1;  // ignored by adam_step_multi
  return a;
}

// Backend<Cuda>::adam_step_multi (one launch per 64 tensors; Adam<Cuda> uses it) or, with
// per_tensor, Backend<Cuda>::adam_step (one launch per tensor) against Backend<Cpu>::adam_step per
// tensor: `count` tensors of assorted sizes (some empty), three steps, parameters and moments.
inline void adam_multi_case(Report& report, int count, std::uint64_t seed, bool per_tensor = false) {
  kiln::Rng rng(seed);
  AdamTensorsOnBoth t;
  for (int i = 0; i < count; ++i) t.add(Shape{(i % 7 == 3) ? 0 : 1 + (i * 37) % 300}, rng);
  std::vector<kiln::Backend<Cuda>::AdamTensors> list;
  for (int i = 0; i < count; ++i) list.push_back({&t.dp[i], &t.dg[i], &t.dm[i], &t.dv[i]});
  for (int step = 1; step <= 3; ++step) {
    kiln::AdamStepArgs a = adam_case_args(step);
    t.cpu_step(a);
    if (per_tensor) {
      for (int i = 0; i < count; ++i) {
        a.numel = static_cast<std::int64_t>(t.dp[i].numel());
        kiln::Backend<Cuda>::adam_step(a, t.dp[i], t.dg[i], t.dm[i], t.dv[i]);
      }
    } else {
      kiln::Backend<Cuda>::adam_step_multi(a, list);
    }
  }
  std::vector<float> all_cuda, all_cpu, m_cuda, m_cpu, v_cuda, v_cpu;
  auto append = [](std::vector<float>& to, const std::vector<float>& from) {
    to.insert(to.end(), from.begin(), from.end());
  };
  for (int i = 0; i < count; ++i) {
    append(all_cuda, t.dp[i].to_vector());
    append(all_cpu, t.p[i].to_vector());
    append(m_cuda, t.dm[i].to_vector());
    append(m_cpu, t.m[i].to_vector());
    append(v_cuda, t.dv[i].to_vector());
    append(v_cpu, t.v[i].to_vector());
  }
  report.compare("params", all_cuda, all_cpu, tight);
  report.compare("exp_avg", m_cuda, m_cpu, tight);
  report.compare("exp_avg_sq", v_cuda, v_cpu, tight);
}

// Backend<Cuda>::adam_step_multi on convolution weights whose TF32 packings it keeps
// (adam_conv_pack_kernel, kernels/adam_conv_pack.cuh; training workspaces under MathMode::tf32),
// three steps: the weights and moments against Backend<Cpu>::adam_step, the packings against their
// definition on the host (conv2d_mma.cuh: wp[o][t][c] = tf32(w[o][c][t]) at the workspace's start,
// the input gradient's wp[c][t][o] = tf32(w[o][c][K²-1-t]) at tf32_forward::dgrad_offset) of the
// weights it wrote.
inline void adam_conv_pack_case(Report& report, const std::vector<kiln::ConvShape>& shapes, std::uint64_t seed) {
  namespace tp = kiln::cuda::kernels::tf32_forward;
  using B = kiln::Backend<Cuda>;
  kiln::cuda::MathModeScope math(kiln::cuda::MathMode::tf32);
  kiln::Rng rng(seed);
  const std::size_t n = shapes.size();
  AdamTensorsOnBoth t;
  std::vector<kiln::Tensor<float, Cuda>> ws;
  for (const kiln::ConvShape& s : shapes) {
    t.add(Shape{s.c_out, s.c_in, s.k, s.k}, rng);
    const Shape work{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1};
    ws.push_back(kiln::Tensor<float, Cuda>::from_host(work, random_vector(work.numel(), rng)));  // counters not 0
  }
  std::vector<kiln::ConvPacking<Cuda>> packings;
  packings.reserve(n);
  std::vector<B::AdamTensors> list;
  for (std::size_t i = 0; i < n; ++i) {
    packings.push_back({shapes[i], &t.dp[i], &ws[i]});
    list.push_back({&t.dp[i], &t.dg[i], &t.dm[i], &t.dv[i], &packings[i]});
  }
  for (int step = 1; step <= 3; ++step) {
    t.cpu_step(adam_case_args(step));
    B::adam_step_multi(adam_case_args(step), list);
  }
  for (std::size_t i = 0; i < n; ++i) {
    const kiln::ConvShape& s = shapes[i];
    const std::string at =
        "conv " + std::to_string(s.c_in) + " -> " + std::to_string(s.c_out) + " k" + std::to_string(s.k) + ": ";
    report.compare(at + "weights", t.dp[i], t.p[i], tight);
    report.compare(at + "exp_avg", t.dm[i], t.m[i], tight);
    report.compare(at + "exp_avg_sq", t.dv[i], t.v[i], tight);
    report.compare(at + "packed by the optimizer, as the next forward asks (0: yes)",
                   {B::conv2d_packed_current(packings[i]) ? 0.0f : 1.0f}, {0.0f}, 0.5);
    const auto w = t.dp[i].to_vector(), work = ws[i].to_vector();
    const auto cin = static_cast<std::size_t>(s.c_in), cout = static_cast<std::size_t>(s.c_out),
               kk = static_cast<std::size_t>(s.k * s.k);
    std::vector<float> forward(cout * kk * cin), dgrad(cin * kk * cout);
    for (std::size_t o = 0; o < cout; ++o)
      for (std::size_t c = 0; c < cin; ++c)
        for (std::size_t tap = 0; tap < kk; ++tap) {
          forward[(o * kk + tap) * cin + c] = kiln::cpu::round_tf32(w[(o * cin + c) * kk + tap]);
          dgrad[(c * kk + tap) * cout + o] = kiln::cpu::round_tf32(w[(o * cin + c) * kk + (kk - 1 - tap)]);
        }
    const auto offset = static_cast<std::ptrdiff_t>(tp::dgrad_offset(s));
    report.compare(at + "the forward's packing", std::vector<float>(work.begin(), work.begin() + forward.size()),
                   forward, tight);
    report.compare(at + "the input gradient's packing",
                   std::vector<float>(work.begin() + offset, work.begin() + offset + dgrad.size()), dgrad, tight);
  }
}

// kiln::cuda::StepMonitor (kernels/step_guard.cuh: nonfinite_count_kernel, step_record_kernel)
// against a count on the host: `count` gradient tensors of assorted sizes (some empty; more than 64,
// so two launches), three steps: clean, then NaN / +inf / -inf planted in a few tensors, then other
// tensors bad. The read gives the three losses, step 2 as the first bad one, and per bad tensor of
// step 2 its count, first index and kind (step 3's are not kept).
inline void step_guard_case(Report& report, int count, std::uint64_t seed) {
  kiln::Rng rng(seed);
  std::vector<kiln::Tensor<float, Cuda>> grads;
  std::vector<std::vector<float>> values;
  for (int i = 0; i < count; ++i) {
    const Shape s{(i % 9 == 4) ? 0 : 1 + (i * 53) % 200};
    values.push_back(random_vector(s.numel(), rng));
    grads.push_back(kiln::Tensor<float, Cuda>::from_host(s, values.back()));
  }
  std::vector<const kiln::Tensor<float, Cuda>*> list;
  for (const auto& g : grads) list.push_back(&g);
  kiln::cuda::StepMonitor monitor(list);
  kiln::Tensor<float, Cuda> loss(Shape{1});
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // step 2's planted values: (tensor, index, value); the host reference is computed from them
  const struct {
    int tensor;
    std::size_t index;
    float value;
  } planted[] = {{1, 0, nan}, {1, 1, inf}, {70, 7, -inf}, {70, 3, nan}, {count - 1, 2, inf}};
  std::vector<float> losses;
  for (int step = 1; step <= 3; ++step) {
    std::vector<std::vector<float>> now = values;
    if (step == 2)
      for (const auto& p : planted) now.at(p.tensor).at(p.index) = p.value;
    if (step == 3) now.at(5).at(0) = nan;  // a later bad step: not the one reported
    for (int i = 0; i < count; ++i) grads[i].copy_from_host(now[i]);
    losses.push_back(0.25f * static_cast<float>(step));
    loss.copy_from_host(std::vector<float>{losses.back()});
    monitor.record(loss);
  }
  const auto r = monitor.read();
  report.compare("losses", r.losses, losses, 1e-12);
  report.compare("first bad step", {static_cast<float>(r.bad_step), r.bad_loss ? 1.0f : 0.0f}, {1.0f, 0.0f}, 1e-12);
  std::vector<float> found, expected;
  for (const auto& t : r.tensors) {
    const float kind = std::string(t.first_value) == "NaN" ? 0.0f : (std::string(t.first_value) == "inf" ? 1.0f : 2.0f);
    found.insert(found.end(),
                 {static_cast<float>(t.tensor), static_cast<float>(t.bad), static_cast<float>(t.first_index), kind});
  }
  for (int i = 0; i < count; ++i) {
    std::size_t bad = 0, first = 0;
    float kind = 0;
    for (const auto& p : planted)
      if (p.tensor == i) {
        if (bad == 0 || p.index < first) {
          first = p.index;
          kind = std::isnan(p.value) ? 0.0f : (p.value > 0 ? 1.0f : 2.0f);
        }
        ++bad;
      }
    if (bad > 0)
      expected.insert(expected.end(),
                      {static_cast<float>(i), static_cast<float>(bad), static_cast<float>(first), kind});
  }
  report.compare("bad tensors (index, count, first index, kind)", found, expected, 1e-12);
}

// ---- the table ------------------------------------------------------------------------------
// The cases are compiled in units of their own, tests/emu/cases/*.cpp (KILN_KERNEL_TABLE_PARTS in
// tests/CMakeLists.txt: the whole table in one unit took over 40 CPU-s), linked into every binary
// that runs the table; kernel_cases() lists them in one order.
void add_conv_cases(std::vector<KernelCase>& t);       // cases/conv.cpp
void add_tiny_conv_cases(std::vector<KernelCase>& t);  // cases/conv.cpp
void add_residual_cases(std::vector<KernelCase>& t);   // kernel_cases_residual.hpp, in cases/conv.cpp
void add_core_cases(std::vector<KernelCase>& t);       // cases/core.cpp
void add_tiny_core_cases(std::vector<KernelCase>& t);  // cases/core.cpp
void add_layer_cases(std::vector<KernelCase>& t);      // kernel_cases_layers.hpp, in cases/layers_colour.cpp
void add_colour_cases(std::vector<KernelCase>& t);     // kernel_cases_colour.hpp, in cases/layers_colour.cpp

inline std::vector<KernelCase> kernel_cases() {
  std::vector<KernelCase> t;
  add_conv_cases(t);
  add_core_cases(t);
  add_tiny_conv_cases(t);  // the tiny subset (small = true): every kernel at least once
  add_tiny_core_cases(t);
  add_layer_cases(t);
  add_residual_cases(t);
  add_colour_cases(t);
  return t;
}

}  // namespace kiln_test
