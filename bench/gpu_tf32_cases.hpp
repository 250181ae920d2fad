#pragma once
// Our TF32 tensor-core convolutions (Backend<Cuda> under kiln::cuda::MathMode::tf32: the mma.sync
// kernels of kernels/conv2d_mma.cuh and conv2d_mma_wgrad.cuh with a planned workspace; the forward and
// input gradient on conv2d_wgmma.cuh where tf32_forward::plan takes it on an H100/H200) at the
// U-Net's shapes, next to cuDNN's TF32 rows:
//   <op>/cuda/tf32/<shape>   counters GFLOP/s, peak_frac (of the dense TF32 tensor-core peak),
//                            cudnn_us and x_cudnn = our time / cuDNN TF32's time
// (cudnn_cases.hpp stores cuDNN's TF32 times in tf32_reference_seconds(); register those rows
// first). The workspace is planned under TF32 for training, as a network planned in that mode gets
// it (the forward then packs both weight layouts in one launch).
//   conv*_fwd/cuda/mma_tf32/<shape>  mma_conv::forward, the forward packing + the GEMM timed together,
//                            as planned; mma_tf32_128x128 and mma_tf32_half_slices: the same with
//                            the tile width or split-K slices the plan did not take (add_mma_plan_rows).
//   conv*_fwd/cuda/wgmma_tf32_128x<bn>/<shape>  kernels/conv2d_wgmma.cuh (sm_90a warpgroup MMAs, on every
//                            shape, not only the plan's): the same packing + its GEMM on 128 x bn tiles, split as its
//                            plan says (add_wgmma_conv_row; skipped with a message where no sm_90a code runs);
//                            wgmma_tf32_64x128 the short tile where 128 x 128 ones split.
#include <cstdint>
#include <optional>
#include <string>

#include "bench_common.hpp"
#include "gpu_common.hpp"
#include "kiln/cuda.hpp"
#include "layer_cases.hpp"  // CaseTensors
#include "conv2d_mma.cuh"
#include "conv2d_wgmma.cuh"

namespace kiln::bench {

// Registers one timed row of this file: under MathMode::tf32 (the planned workspaces are TF32's),
// `setup(c)` gets the case's tensors from c and returns the call to time; a throw skips the row with
// its message. With `vs_cudnn`, cuDNN TF32's time of the same op and shape beside ours
// (tf32_reference_seconds: cudnn_us, x_cudnn).
template <class Setup>
void add_timed_tf32_row(const std::string& name, double flops, double peak, const std::string& label, bool vs_cudnn,
                        Setup setup) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    kiln::cuda::MathModeScope tf32(kiln::cuda::MathMode::tf32);
    try {
      auto timed = setup(CaseTensors<Cuda>::for_case(name));
      gpu_timed_loop(state, timed, kiln::cuda::current_stream());
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
    state.SetLabel(label);
    set_flops(state, flops, peak);
    const auto ref = tf32_reference_seconds().find(op_shape_key(name));
    if (vs_cudnn && ref != tf32_reference_seconds().end() && state.iterations() > 0 && last_loop_seconds() > 0) {
      state.counters["cudnn_us"] = ref->second * 1e6;
      state.counters["x_cudnn"] = last_loop_seconds() / static_cast<double>(state.iterations()) / ref->second;
    }
  });
  configure_gpu_row(b);
}

// One conv pass (0 forward, 1 input gradient, 2 weight + bias gradient) at one shape, as Backend<Cuda> runs it.
inline void add_tf32_conv_row(const std::string& name, const ConvShape& s, int pass, double flops, double peak,
                              const std::string& label) {
  add_timed_tf32_row(name, flops, peak, label, true, [=](CaseTensors<Cuda>& c) {
    using B = Backend<Cuda>;
    using T = Tensor<float, Cuda>;
    const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
    const Shape ws{s.c_out, s.c_in, s.k, s.k}, bs{s.c_out};
    const Shape work{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1};
    T &x = c.get("x", xs), &w = c.get("w", ws, -0.1f, 0.1f), &bias = c.get("b", bs), &dy = c.get("dy", ys);
    T &y = c.get("y", ys, 0, 0), &dx = c.get("dx", xs, 0, 0), &dw = c.get("dw", ws, 0, 0), &db = c.get("db", bs, 0, 0);
    T& wsp = c.get("ws", work, 0, 0);
    return [&, s, pass, none_dx = T(), none_dw = T(), none_db = T()]() mutable {
      if (pass == 0)
        B::conv2d_forward(s, x, w, bias, y, wsp);
      else if (pass == 1)
        B::conv2d_backward(s, x, w, dy, dx, none_dw, none_db, wsp);
      else
        B::conv2d_backward(s, x, w, dy, none_dx, dw, db, wsp);
    };
  });
}

// The forward pass of kernels/conv2d_mma.cuh (mma.sync m16n8k8, ldmatrix, 3-stage cp.async): as the
// backend plans it (splits and bn 0: its tile, 256 x 64 where mma_conv::tall), or on 128 x bn tiles in
// `splits` slices (the comparison rows).
inline void add_mma_conv_row(const std::string& name, const ConvShape& s, double flops, double peak,
                             const std::string& label, int splits = 0, int bn = 0) {
  add_timed_tf32_row(name, flops, peak, label, true, [=](CaseTensors<Cuda>& c) {
    using T = Tensor<float, Cuda>;
    namespace mc = kiln::cuda::kernels::mma_conv;
    const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
    T &x = c.get("x", xs), &w = c.get("w", Shape{s.c_out, s.c_in, s.k, s.k}, -0.1f, 0.1f),
      &bias = c.get("b", Shape{s.c_out});
    // split-K as the backend splits (mma_conv::splits) unless told: the partial tiles after the packed weights
    const int slices = splits != 0 ? splits : mc::splits(s);
    const std::int64_t floats = bn != 0 ? mc::workspace_floats(s, slices, bn) : mc::workspace_floats(s, slices);
    T &y = c.get("y", ys, 0, 0), &packed = c.get("packed", Shape{floats}, 0, 0);
    return [&, s, slices, bn] {
      mc::forward(s, x.data(), w.data(), bias.data(), y.data(), packed.data(), kiln::cuda::current_stream(), slices,
                  bn);
    };
  });
}

// Beside the planned mma.sync forward, where the plan splits or takes 128 x 64 tiles for a wider
// Cout, the alternatives the model weighed (docs/kernels.md "128 x 64 tiles on the deep levels"),
// for the first GPU run to settle: 128 x 128 tiles split as for them (the plan before 2026-12-06),
// and the planned tiles in half as many slices.
inline void add_mma_plan_rows(const std::string& kname, const std::string& shape, const ConvShape& s, double flops,
                              double peak, const std::string& label) {
  namespace mc = kiln::cuda::kernels::mma_conv;
  const int planned = mc::splits(s);
  if (mc::tall(s))  // the 128 x 64 tiles the tall ones replaced (docs/kernels.md "One reduction launch per backward;
                    // the tall 256 × 64 tile")
    add_mma_conv_row(kname + "_fwd/cuda/mma_tf32_128x64/" + shape, s, flops, peak,
                     label + " (conv2d_mma.cuh, 128x64 tiles instead of 256x64)", 1, 64);
  if (mc::wide_cout(s) && mc::block_n(s) == 64)
    add_mma_conv_row(kname + "_fwd/cuda/mma_tf32_128x128/" + shape, s, flops, peak,
                     label + " (conv2d_mma.cuh, 128x128 tiles, " + std::to_string(mc::splits_for(s, 128)) + " slices)",
                     mc::splits_for(s, 128), 128);
  if (planned > 1)
    add_mma_conv_row(kname + "_fwd/cuda/mma_tf32_half_slices/" + shape, s, flops, peak,
                     label + " (conv2d_mma.cuh, " + std::to_string(planned / 2) + " slices instead of " +
                         std::to_string(planned) + ")",
                     planned / 2, mc::block_n(s));
}

// The forward of kernels/conv2d_wgmma.cuh (warpgroup MMAs, sm_90a) on 128 x bn tiles in the slices its
// plan gives them (wgmma_conv::splits): mma_conv's packing + the wgmma GEMM, timed together as the
// mma_tf32 rows (docs/kernels.md "wgmma").
inline void add_wgmma_conv_row(const std::string& name, const ConvShape& s, double flops, double peak,
                               const std::string& label, int bn, int rows = kiln::cuda::kernels::wgmma_conv::bm) {
  add_timed_tf32_row(name, flops, peak, label, true, [=](CaseTensors<Cuda>& c) {
    using T = Tensor<float, Cuda>;
    namespace mc = kiln::cuda::kernels::mma_conv;
    namespace wc = kiln::cuda::kernels::wgmma_conv;
    if (!wc::supports(s)) throw kiln::gpu::Error("conv2d_wgmma takes Cin >= 16");
    if (!kiln::gpu::wgmma::runs_here()) throw kiln::gpu::Error("no sm_90a code runs on this device (wgmma)");
    const Shape xs = Shape::nchw(s.n, s.c_in, s.h, s.w), ys = Shape::nchw(s.n, s.c_out, s.h, s.w);
    T &x = c.get("x", xs), &w = c.get("w", Shape{s.c_out, s.c_in, s.k, s.k}, -0.1f, 0.1f),
      &bias = c.get("b", Shape{s.c_out});
    const int slices = wc::splits(s, bn, rows);
    T &y = c.get("y", ys, 0, 0), &packed = c.get("packed", Shape{mc::workspace_floats(s, slices, bn, rows)}, 0, 0);
    return [&, s, bn, slices, rows] {
      const auto stream = kiln::cuda::current_stream();
      mc::pack_weights(s, w.data(), packed.data(), stream, slices, bn, rows);
      wc::launch_packed(s, x.data(), packed.data(), bias.data(), y.data(), bn, stream, slices, rows);
    };
  });
}

// The weight gradient of kernels/conv2d_mma_wgrad.cuh on a given tile (the reduction of its splits
// included: in the GEMM's launch where the plan says one_launch, unless `reduction_launch`): where the
// plan takes a pair of taps (mma_wgrad::geometry), the pair and the one-tap tile it replaced
// (docs/kernels.md "Tap pairs for the weight gradient"); where it adds few splits in one launch, that
// and the reduction launch ("Few weight-gradient splits added in the GEMM's launch"), for the first GPU
// run to settle. `given`: a plan of the row's own (mma_wgrad::splits_of, split_k, past_a_wave) instead.
// `wgmma`: the tile's warpgroup-MMA variant (conv2d_wgmma_wgrad_kernel; mma_wgrad::wgmma_tile).
inline void add_mma_wgrad_row(const std::string& name, const ConvShape& s,
                              const kiln::cuda::kernels::mma_wgrad::Geometry& g, double flops, double peak,
                              const std::string& label, bool reduction_launch = false,
                              std::optional<kiln::cuda::kernels::mma_wgrad::Splits> given = std::nullopt,
                              bool wgmma = false) {
  add_timed_tf32_row(name, flops, peak, label, false, [=](CaseTensors<Cuda>& c) {
    using T = Tensor<float, Cuda>;
    namespace mw = kiln::cuda::kernels::mma_wgrad;
    const mw::Splits sp = given ? *given : mw::splits(s, g);
    T &x = c.get("x", Shape::nchw(s.n, s.c_in, s.h, s.w)), &dy = c.get("dy", Shape::nchw(s.n, s.c_out, s.h, s.w));
    T &dw = c.get("dw", Shape{s.c_out, s.c_in, s.k, s.k}, 0, 0),
      &work = c.get("work", Shape{mw::partial_floats(s, g, sp) + 1}, 0, 0),
      &counters = c.get("counters", Shape{mw::tiles(s, g)}, 0, 0);  // zero bits: the counters at 0
    unsigned* one_launch = reduction_launch ? nullptr : reinterpret_cast<unsigned*>(counters.data());
    return [&, s, g, sp, one_launch, wgmma] {
      mw::backward_weight(s, g, sp, x.data(), dy.data(), dw.data(), work.data(), kiln::cuda::current_stream(),
                          one_launch, wgmma);
    };
  });
}

// The U-Net's convolutions with a side of 64 channels and the other wider (down.2.conv1, 64 -> 128,
// and up.2.conv1, 128 -> 64), where the weight gradient takes a pair of taps: both tiles.
inline void register_tf32_wgrad_tile_rows(const GpuFacts& f) {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  for (const ShapeSet& set : unet_shape_sets())
    for (const auto& [c, h] : set.levels) {
      // down.2.conv1 at the 128-channel level's size, up.2.conv1 at the 64-channel level's
      if (c != 128 && c != 64) continue;
      const std::int64_t cin = c == 128 ? 64 : 128, cout = c;
      const ConvShape s{set.n, cin, cout, h, h, 3};
      if (mw::geometry(s).taps != 2) continue;
      const std::string shape = "C" + std::to_string(cin) + "to" + std::to_string(cout) + "_H" + std::to_string(h) +
                                "_N" + std::to_string(set.n);
      const std::string label = std::to_string(cin) + "->" + std::to_string(cout) + " (conv2d_mma_wgrad.cuh, ";
      const double flops = conv_flops(set.n, cin, cout, 3, h, h);
      const mw::Geometry pair = mw::geometry(s), one = mw::single_tap(s);
      add_mma_wgrad_row("conv3x3_wgrad/cuda/mma_tf32_tap_pairs/" + shape, s, pair, flops, f.tf32_flops,
                        label + std::to_string(pair.bm) + " x 2*" + std::to_string(pair.ct) + " tiles, planned)");
      add_mma_wgrad_row("conv3x3_wgrad/cuda/mma_tf32_one_tap/" + shape, s, one, flops, f.tf32_flops,
                        label + std::to_string(one.bm) + " x " + std::to_string(one.ct) + " tiles)");
    }
}

// Each of the U-Net's 3 x 3 weight gradients (C -> C, and each down block's C/2 -> C, at both inputs'
// sizes): f(shape, its rows' tag).
template <class F>
void for_each_unet_wgrad(F&& f) {
  for (const ShapeSet& set : unet_shape_sets())
    for (const auto& [c, h] : set.levels)
      for (const std::int64_t cin : {c, c / 2}) {
        if (cin < 1) continue;
        f(ConvShape{set.n, cin, c, h, h, 3}, cin == c ? shape_tag(c, h, set.n)
                                                      : "C" + std::to_string(cin) + "to" + std::to_string(c) + "_H" +
                                                            std::to_string(h) + "_N" + std::to_string(set.n));
      }
}

// The weight gradients whose few grid splits (mma_wgrad::split_k) are added in the GEMM's launch
// (mma_wgrad::Splits::one_launch): that and the reduction launch.
inline void register_tf32_wgrad_reduction_rows(const GpuFacts& f) {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  for_each_unet_wgrad([&](const ConvShape& s, const std::string& shape) {
    const mw::Splits sp = mw::split_k(s, mw::geometry(s));
    if (!sp.one_launch || sp.count < 2) return;
    const std::string label = std::to_string(s.c_in) + "->" + std::to_string(s.c_out) + " (conv2d_mma_wgrad.cuh, " +
                              std::to_string(sp.count) + " splits added ";
    const double flops = conv_flops(s.n, s.c_in, s.c_out, 3, s.h, s.w);
    add_mma_wgrad_row("conv3x3_wgrad/cuda/mma_tf32_one_launch/" + shape, s, mw::geometry(s), flops, f.tf32_flops,
                      label + "in the GEMM's launch, planned)", false, sp);
    add_mma_wgrad_row("conv3x3_wgrad/cuda/mma_tf32_reduction_launch/" + shape, s, mw::geometry(s), flops, f.tf32_flops,
                      label + "by the reduction kernel)", true, sp);
  });
}

// The weight gradients in the grid's planned splits (mma_wgrad::split_k) and in the plan before the
// busiest-SM model (mma_wgrad::past_a_wave: one block past a whole wave), where the two differ: a GPU
// checks the model's waves (docs/kernels.md "Waves").
inline void register_tf32_wgrad_wave_rows(const GpuFacts& f) {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  for_each_unet_wgrad([&](const ConvShape& s, const std::string& shape) {
    const mw::Geometry g = mw::geometry(s);
    const mw::Splits planned = mw::split_k(s, g), past = mw::past_a_wave(s, g);
    if (planned.count == past.count) return;
    const std::string label = std::to_string(s.c_in) + "->" + std::to_string(s.c_out) + " (conv2d_mma_wgrad.cuh, " +
                              std::to_string(mw::tiles(s, g)) + " tiles in ";
    const double flops = conv_flops(s.n, s.c_in, s.c_out, 3, s.h, s.w);
    add_mma_wgrad_row("conv3x3_wgrad/cuda/mma_tf32_planned_splits/" + shape, s, g, flops, f.tf32_flops,
                      label + std::to_string(planned.count) + " splits, planned)", false, planned);
    add_mma_wgrad_row("conv3x3_wgrad/cuda/mma_tf32_past_a_wave/" + shape, s, g, flops, f.tf32_flops,
                      label + std::to_string(past.count) + " splits, one block past a wave)", false, past);
  });
}

// The weight gradients the plan runs stream-K (mma_wgrad::Splits::stream_k) and the grid's best split
// count (mma_wgrad::split_k): a GPU checks the stream-K schedule (docs/kernels.md "Stream-K").
inline void register_tf32_wgrad_stream_k_rows(const GpuFacts& f) {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  for_each_unet_wgrad([&](const ConvShape& s, const std::string& shape) {
    const mw::Geometry g = mw::geometry(s);
    const mw::Splits planned = mw::splits(s, g), grid = mw::split_k(s, g);
    if (!planned.stream_k) return;
    const std::string label = std::to_string(s.c_in) + "->" + std::to_string(s.c_out) + " (conv2d_mma_wgrad.cuh, " +
                              std::to_string(mw::tiles(s, g)) + " tiles ";
    const double flops = conv_flops(s.n, s.c_in, s.c_out, 3, s.h, s.w);
    add_mma_wgrad_row("conv3x3_wgrad/cuda/mma_tf32_stream_k/" + shape, s, g, flops, f.tf32_flops,
                      label + "stream-K on " + std::to_string(planned.count) + " blocks, planned)", false, planned);
    add_mma_wgrad_row("conv3x3_wgrad/cuda/mma_tf32_split_k/" + shape, s, g, flops, f.tf32_flops,
                      label + "in " + std::to_string(grid.count) + " splits)", false, grid);
  });
}

// The weight gradients whose tile has a warpgroup-MMA variant (mma_wgrad::wgmma_tile; where sm_90a
// code runs): it and the mma.sync kernel in mma.sync's planned splits (docs/kernels.md "The weight
// gradient on wgmma": 1.25 shared wavefronts per m16n8k8-equivalent against 1.5, by the model 10-20 %
// faster), and where wgmma's own plan differs (a tile's splits added in a cluster,
// mma_wgrad::wgmma_splits) that plan too: the GPU settles the cluster tail the model assumes.
inline void register_tf32_wgrad_wgmma_rows(const GpuFacts& f) {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  if (!kiln::gpu::wgmma::runs_here()) return;
  for_each_unet_wgrad([&](const ConvShape& s, const std::string& shape) {
    const mw::Geometry g = mw::geometry(s);
    if (!mw::wgmma_tile(g)) return;
    const mw::Splits planned = mw::splits(s, g), own = mw::wgmma_splits(s, g);
    const std::string label = std::to_string(s.c_in) + "->" + std::to_string(s.c_out) + " (conv2d_mma_wgrad.cuh, " +
                              std::to_string(g.bm) + " x " + std::to_string(g.taps) + "*" + std::to_string(g.ct) +
                              " tiles, ";
    const double flops = conv_flops(s.n, s.c_in, s.c_out, 3, s.h, s.w);
    add_mma_wgrad_row("conv3x3_wgrad/cuda/wgmma_tf32/" + shape, s, g, flops, f.tf32_flops,
                      label + "mma.sync's planned splits, wgmma)", false, planned, true);
    add_mma_wgrad_row("conv3x3_wgrad/cuda/mma_tf32_planned/" + shape, s, g, flops, f.tf32_flops,
                      label + "planned splits, mma.sync)", false, planned);
    if (own.cluster > 1)
      add_mma_wgrad_row("conv3x3_wgrad/cuda/wgmma_tf32_cluster/" + shape, s, g, flops, f.tf32_flops,
                        label + std::to_string(own.cluster) + " splits added in a cluster, planned, wgmma)", false, own,
                        true);
  });
}

// The same convolutions as layer_cases.hpp / cudnn_cases.hpp: per level the 3x3 C -> C and (not at
// the bottleneck) the 1x1 reduce 2C -> C at H/2; forward, input gradient, weight (+ bias) gradient.
inline void register_tf32_conv_benchmarks(const GpuFacts& f) {
  for (const ShapeSet& set : unet_shape_sets()) {
    const int top = set.levels.front().h;
    const std::string tag =
        "(UNet level, " + std::to_string(top) + "x" + std::to_string(top) + " input, TF32 tensor cores)";
    for (std::size_t i = 0; i < set.levels.size(); ++i) {
      const auto [c, h] = set.levels[i];
      const bool bottleneck = i + 1 == set.levels.size();
      for (int k : {3, 1}) {
        if (k == 1 && bottleneck) continue;
        // the 1x1 reduce runs before the upsample, on the level below's H/2 grid (layer_cases.hpp)
        const std::int64_t cin = k == 3 ? c : 2 * c, cout = c, hk = k == 3 ? h : h / 2;
        const ConvShape s{set.n, cin, cout, hk, hk, k};
        const std::string kname = "conv" + std::to_string(k) + "x" + std::to_string(k);
        const std::string shape = shape_tag(cin, hk, set.n),
                          label = std::to_string(cin) + "->" + std::to_string(cout) + " " + tag;
        const double flops = conv_flops(set.n, cin, cout, k, hk, hk);
        add_tf32_conv_row(kname + "_fwd/cuda/tf32/" + shape, s, 0, flops, f.tf32_flops, label);
        add_mma_conv_row(kname + "_fwd/cuda/mma_tf32/" + shape, s, flops, f.tf32_flops, label + " (conv2d_mma.cuh)");
        add_mma_plan_rows(kname, shape, s, flops, f.tf32_flops, label);
        for (int bn : {128, 256})
          if (cin >= 16 && (bn == 128 || cout > 128))
            add_wgmma_conv_row(kname + "_fwd/cuda/wgmma_tf32_128x" + std::to_string(bn) + "/" + shape, s, flops,
                               f.tf32_flops, label + " (conv2d_wgmma.cuh, 128x" + std::to_string(bn) + " tiles)", bn);
        if (cin >= 16 && k == 3 && kiln::cuda::kernels::wgmma_conv::splits(s, 128) > 1)  // split: the short tile too
          add_wgmma_conv_row(kname + "_fwd/cuda/wgmma_tf32_64x128/" + shape, s, flops, f.tf32_flops,
                             label + " (conv2d_wgmma.cuh, 64x128 tiles)", 128,
                             kiln::cuda::kernels::wgmma_conv::short_bm);
        add_tf32_conv_row(kname + "_dgrad/cuda/tf32/" + shape, s, 1, flops, f.tf32_flops, label + " (dx only)");
        add_tf32_conv_row(kname + "_wgrad/cuda/tf32/" + shape, s, 2, flops, f.tf32_flops, label + " (dw += , db +=)");
      }
    }
  }
}

}  // namespace kiln::bench
