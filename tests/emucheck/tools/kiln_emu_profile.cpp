// kiln_emu_profile: the memory traffic of every kernel launch of one U-Net training step
// (forward, MSE loss, backward, Adam) at real shapes, from the emulator's counters
// (kernels/kiln/gpu/emu_profile.hpp; checking build only, target kiln_emu_profile).
//
//   kiln_emu_profile [--width 16|32] [--batch N] [--size S] [--math strict|tf32|bf16]
//                    [--kernels step|mma-forward|wgmma-forward|wgmma-short-forward|backward]
//                    [--optimizer-packing on|off] [--csv FILE]
//
// --kernels mma-forward: instead of the step, only the forward convolutions of the same U-Net, each
// as conv2d_mma.cuh's weight packing + mma.sync forward kernel, so that its predicted time can be
// compared with conv2d_igemm_forward_kernel's rows of an older tf32 step.
// --kernels wgmma-forward: the same, with the GEMM on kernels/conv2d_wgmma.cuh (sm_90a warpgroup MMAs,
// its plan's tiles and slices, wgmma_conv::block_n and splits; the first layer, Cin < 16, on mma.sync),
// to compare with --kernels mma-forward (predict.py --by-layer). --kernels wgmma-short-forward: the
// same with the 3x3 128-wide tiles 64 pixels tall (one warpgroup; wgmma_conv::short_bm).
// --kernels backward: instead of the step, the step's backward convolutions (same shapes, same
// order, no input gradient for the first layer), each twice: on the implicit-GEMM kernels of
// conv2d_igemm.cuh (input gradient, split-K weight gradient + its reduction) and on the mma.sync
// kernels (conv2d_mma.cuh's input gradient, conv2d_mma_wgrad.cuh's weight gradient + reduction), so
// that predict.py puts both side by side (--by-layer: per layer).
// --optimizer-packing off: the step with Adam's fused packing turned off (kiln::cuda::set_optimizer_packing:
// the forward packs every convolution's weights, as before kernels/adam_conv_pack.cuh).
// Under --math tf32 the step runs the backend's TF32 kernels: the mma.sync forward, input gradient
// (the forward kernel on the transposed shape, named "conv2d_mma_forward_kernel<...> (dgrad)" here)
// and weight gradient (conv2d_mma_wgrad.cuh), the implicit GEMM where those do not take a shape;
// the forward and input gradient on wgmma where the backend's plan takes it (the emulator runs
// sm_90a code: an H100's plan, kernels/conv2d_tf32_plan.cuh).
//
// Prints a table per kernel (summed over the step's launches) and writes one CSV row per launch
// for tests/emucheck/predict.py (the predicted-time table of docs/kernels.md). Only sampled blocks
// run (at most KILN_EMU_PROFILE_BLOCKS per launch, default 64), so the step's numbers are garbage
// but its traffic is that of the full step. FLOPs are declared here, from the convolution layers'
// shapes: 2·N·H·W·Cin·Cout·K² for the forward, input-gradient and weight-gradient passes and
// N·H·W·Cout for the bias gradient; the other kernels are counted as 0 FLOPs (memory-bound). The
// convolutions' distinct global bytes are their tensors' sizes (see below).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "adam_conv_pack.cuh"
#include "conv2d_igemm.cuh"
#include "conv2d_mma.cuh"
#include "conv2d_mma_wgrad.cuh"
#include "conv2d_wgmma.cuh"
#include "emucheck/step_traffic.hpp"
#include "kiln/cuda.hpp"
#include "kiln/models/unet.hpp"

namespace {

using kiln_step_traffic::contains;
using kiln_step_traffic::short_name;

// The TF32 weight gradient's grid kernel (split-K over gridDim.z), mma.sync or its wgmma variant.
bool tf32_wgrad_grid(const std::string& kernel) {
  return contains(kernel, "conv2d_mma_wgrad_kernel") || contains(kernel, "conv2d_wgmma_wgrad_kernel");
}
// The plan Backend<Cuda> ran a TF32 weight-gradient kernel in (the wgmma variant's own: wgmma_splits).
kiln::cuda::kernels::mma_wgrad::Splits tf32_wgrad_plan(const std::string& kernel, const kiln::ConvShape& s) {
  namespace mw = kiln::cuda::kernels::mma_wgrad;
  const mw::Geometry g = mw::geometry(s);
  return contains(kernel, "wgmma") ? mw::wgmma_splits(s, g) : mw::splits(s, g);
}

struct Options {
  int width = 32, batch = 16, size = 64;
  std::string math = "strict", kernels = "step", csv;
  bool optimizer_packing = true;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(
      stderr,
      "kiln_emu_profile: %s\nusage: kiln_emu_profile [--width 16|32] [--batch N] [--size S] [--math strict|tf32|bf16] "
      "[--kernels step|mma-forward|wgmma-forward|wgmma-short-forward|backward] [--optimizer-packing on|off] "
      "[--csv FILE]\n",
      why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage("'" + a + "' needs a value");
    const std::string v = argv[++i];
    if (a == "--width")
      o.width = std::atoi(v.c_str());
    else if (a == "--batch")
      o.batch = std::atoi(v.c_str());
    else if (a == "--size")
      o.size = std::atoi(v.c_str());
    else if (a == "--math")
      o.math = v;
    else if (a == "--kernels")
      o.kernels = v;
    else if (a == "--csv")
      o.csv = v;
    else if (a == "--optimizer-packing")
      o.optimizer_packing = v == "on"    ? true
                            : v == "off" ? false
                                         : (usage("--optimizer-packing must be on or off"), true);
    else
      usage("unknown option '" + a + "'");
  }
  if (o.width != 16 && o.width != 32) usage("--width must be 16 (model small) or 32 (model base)");
  if (o.batch < 1 || o.size < 16 || o.size % 16 != 0) usage("--batch must be >= 1 and --size a multiple of 16");
  if (o.math != "strict" && o.math != "tf32" && o.math != "bf16") usage("--math must be strict, tf32 or bf16");
  if (o.kernels != "step" && o.kernels != "mma-forward" && o.kernels != "wgmma-forward" &&
      o.kernels != "wgmma-short-forward" && o.kernels != "backward")
    usage("--kernels must be step, mma-forward, wgmma-forward, wgmma-short-forward or backward");
  return o;
}

struct ConvLayer {
  std::string name;
  long long c_in, c_out, k, h, w;
};

struct Row {
  const kiln::gpu::emu::LaunchProfile* p;
  std::string kernel, phase, layer;
  double compulsory_bytes = 0;  // convolution GEMMs: every tensor once (the roofline of predict.py --targets)
  double split_tail_bytes = 0;  // split-K in one launch: what the tile's last block writes and reads alone
  bool cluster = false;         // a weight gradient whose splits a cluster adds on chip
  int cluster_groups = 0;       // ... in this many clusters per tile (more than 1: partial sums to reduce)
  double partial_bytes = 0;     // a split mma.sync weight gradient's partial sums [splits][K*K][Cout][Cin]
  double pack_bytes = 0;        // forward GEMMs: the convolution's share of a batched packing launch (both layouts)
  double stream_k_bytes = 0;    // a stream-K weight gradient's partial tiles (mma_wgrad::stream_k_pieces)
  double reduce_bytes = 0;      // a weight gradient reduced in the backward's batched launch: its share of it
};

template <int Width>
int run(const Options& o) {
  constexpr int depth = 4;
  using Cuda = kiln::Cuda;
  namespace emu = kiln::gpu::emu;
  if (o.math != "strict") kiln::cuda::set_math_mode(kiln::cuda::parse_math_mode(o.math));
  kiln::cuda::set_optimizer_packing(o.optimizer_packing);
  kiln::Network<kiln::UNet<1, 2, Width, depth, Cuda>> net;
  kiln::Rng rng(1);
  net.reset_parameters(rng);
  kiln::Adam<Cuda> opt(kiln::collect_parameters(net));
  kiln::MSELoss<Cuda> loss;
  const kiln::Shape in = kiln::Shape::nchw(o.batch, 1, o.size, o.size),
                    out = kiln::Shape::nchw(o.batch, 2, o.size, o.size);
  const auto x =
      kiln::Tensor<float, Cuda>::from_host(in, std::vector<float>(static_cast<std::size_t>(in.numel()), 0.5f));
  const auto target =
      kiln::Tensor<float, Cuda>::from_host(out, std::vector<float>(static_cast<std::size_t>(out.numel()), 0.25f));

  // The convolutions in execution order (= visit order) with their input sizes.
  std::vector<ConvLayer> convs;
  net.visit([&](kiln::StateRef<Cuda> ref) {
    if (ref.kind != kiln::StateRef<Cuda>::Kind::parameter || ref.value->shape().rank() != 4) return;
    const kiln::Shape& s = ref.value->shape();  // [Cout, Cin, K, K]
    int level = 0;
    const std::string& n = ref.name;
    if (n.rfind("down.", 0) == 0)
      level = std::atoi(n.c_str() + 5);
    else if (n.rfind("bottleneck", 0) == 0)
      level = depth;
    else if (n.rfind("up.", 0) == 0)
      level = depth - 1 - std::atoi(n.c_str() + 3) + (contains(n, ".reduce.") ? 1 : 0);
    const long long side = o.size >> level;
    convs.push_back({n.substr(0, n.rfind('.')), s.c(), s.n(), s.h(), side, side});
  });

  emu::set_race_check(false);  // skipped blocks leave shared/global data unwritten on purpose
  emu::set_profile_sampled_only(true);
  emu::set_profile(true);
  std::vector<std::string> mma_names;     // the mma kernels' instantiations, in launch order
  std::vector<std::size_t> launch_layer;  // --kernels backward: the layer of each launch
  auto device = [](long long count, float value) {
    return kiln::Tensor<float, Cuda>::from_host(kiln::Shape::nchw(count, 1, 1, 1),
                                                std::vector<float>(static_cast<std::size_t>(count), value));
  };
  if (o.kernels == "step") {
    kiln_step_traffic::profile_training_step(net, opt, loss, x, target);
  } else if (o.kernels == "backward") {
    namespace k = kiln::cuda::kernels;
    namespace ig = k::igemm;
    namespace mc = k::mma_conv;
    namespace mw = k::mma_wgrad;
    emu::profile_log().clear();
    for (std::size_t layer = convs.size(); layer-- > 0;) {
      const ConvLayer& c = convs[layer];
      const kiln::ConvShape s{o.batch, c.c_in, c.c_out, c.h, c.w, c.k};
      const std::string K = std::to_string(s.k);
      const bool dx_wanted = layer > 0;  // the step computes no input gradient for the first layer
      const ig::Splits sp = ig::weight_grad_splits(s);
      const std::int64_t scratch = std::max(
          {ig::weight_grad_workspace_floats(s), mc::workspace_floats(mc::transposed(s)), mw::workspace_floats(s)});
      auto xs = device(s.n * s.c_in * s.h * s.w, 0.5f), ws = device(s.c_out * s.c_in * s.k * s.k, 0.1f),
           dys = device(s.n * s.c_out * s.h * s.w, 0.25f), dxs = device(s.n * s.c_in * s.h * s.w, 0.0f),
           dws = device(s.c_out * s.c_in * s.k * s.k, 0.0f), work = device(scratch + 1, 0.0f);
      // The implicit GEMM, launched as Backend<Cuda>::conv2d_backward_tf32 launched it.
      const auto pixels = s.n * s.h * s.w, weights = s.c_out * s.c_in * s.k * s.k;
      auto igemm = [&]<int KS>() {
        if (dx_wanted) {
          KILN_LAUNCH(k::conv2d_igemm_backward_data_kernel<KS>,
                      dim3(static_cast<unsigned>(ig::ceil_div(pixels, ig::bn)),
                           static_cast<unsigned>(ig::ceil_div(s.c_in, ig::bm))),
                      dim3(ig::threads), ig::shared_bytes, nullptr, s, ws.data(), dys.data(), dxs.data());
          mma_names.push_back("conv2d_igemm_backward_data_kernel<" + K + ">");
        }
        KILN_LAUNCH(k::conv2d_igemm_backward_weight_kernel<KS>,
                    dim3(static_cast<unsigned>(ig::ceil_div(s.c_in * s.k * s.k, ig::bn)),
                         static_cast<unsigned>(ig::ceil_div(s.c_out, ig::bm)), static_cast<unsigned>(sp.count)),
                    dim3(ig::threads), ig::shared_bytes, nullptr, s, xs.data(), dys.data(),
                    sp.count > 1 ? work.data() : dws.data(), sp.k_tiles_per_split);
        mma_names.push_back("conv2d_igemm_backward_weight_kernel<" + K + ">");
        if (sp.count > 1) {
          const auto g = k::grid_stride(weights);
          KILN_LAUNCH(k::conv2d_igemm_reduce_splits_kernel<float>, dim3(g.blocks), dim3(g.threads), 0, nullptr,
                      static_cast<const float*>(work.data()), sp.count, weights, dws.data());
          mma_names.push_back("conv2d_igemm_reduce_splits_kernel<float>");
        }
      };
      s.k == 3 ? igemm.template operator()<3>() : igemm.template operator()<1>();
      // mma.sync: the input gradient on the forward kernel, the weight gradient + its reduction.
      if (dx_wanted) {
        const kiln::ConvShape t = mc::transposed(s);
        mc::backward_data(s, ws.data(), dys.data(), dxs.data(), work.data(), nullptr, mc::splits(t));
        mma_names.push_back("conv2d_mma_pack_weights_dgrad_kernel<" + K + ">");
        mma_names.push_back((mc::tall(t) ? "conv2d_mma_forward_tall_kernel<" + K + ">"
                                         : "conv2d_mma_forward_kernel<" + K + ", " + std::to_string(mc::block_n(t)) +
                                               ", " + (mc::narrow(t) ? "true" : "false") + ">") +
                            " (dgrad)");
      }
      const mw::Geometry g = mw::geometry(s);
      auto counters = device(mw::tiles(s, g), 0.0f);  // zero bits: the one-launch reduction's counters at 0
      mw::backward_weight(s, xs.data(), dys.data(), dws.data(), work.data(), false, nullptr,
                          reinterpret_cast<unsigned*>(counters.data()));
      mma_names.push_back(
          std::string(mw::splits(s, g).stream_k ? "conv2d_mma_wgrad_stream_k_kernel<" : "conv2d_mma_wgrad_kernel<") +
          K + ", " + std::to_string(g.bm) + ", " + std::to_string(g.ct) + ", " + std::to_string(g.taps) + ", " +
          (g.tail ? "true" : "false") + ">");
      if (mw::splits(s).count > 1 && !mw::splits(s).one_launch)
        mma_names.push_back("conv2d_mma_wgrad_reduce_kernel<" + K + ">");
      launch_layer.resize(emu::profile_log().size(), layer);
      if (launch_layer.size() != mma_names.size())
        throw std::runtime_error("kiln_emu_profile: the backward launches and their names disagree");
    }
  } else {
    namespace mc = kiln::cuda::kernels::mma_conv;
    emu::profile_log().clear();
    for (const ConvLayer& c : convs) {
      const kiln::ConvShape s{o.batch, c.c_in, c.c_out, c.h, c.w, c.k};
      auto xs = device(s.n * s.c_in * s.h * s.w, 0.5f), ws = device(s.c_out * s.c_in * s.k * s.k, 0.1f),
           bs = device(s.c_out, 0.0f);
      auto ys = device(s.n * s.c_out * s.h * s.w, 0.0f), packed = device(mc::workspace_floats(s), 0.0f);
      namespace wc = kiln::cuda::kernels::wgmma_conv;
      if ((o.kernels == "wgmma-forward" || o.kernels == "wgmma-short-forward") && wc::supports(s)) {
        const int bn = wc::block_n(s);
        const int rows = o.kernels == "wgmma-short-forward" && bn == 128 && s.k == 3 ? wc::short_bm : wc::bm;
        const int slices = wc::splits(s, bn, rows);
        auto work = device(mc::workspace_floats(s, slices, bn, rows), 0.0f);
        mc::pack_weights(s, ws.data(), work.data(), nullptr, slices, bn, rows);
        wc::launch_packed(s, xs.data(), work.data(), bs.data(), ys.data(), bn, nullptr, slices, rows);
        mma_names.push_back("conv2d_mma_pack_weights_kernel<" + std::to_string(s.k) + ">");
        mma_names.push_back(rows == wc::short_bm ? "conv2d_wgmma_forward_short_kernel<3>"
                                                 : "conv2d_wgmma_forward_kernel<" + std::to_string(s.k) + ", " +
                                                       std::to_string(bn) + ">");
        continue;
      }
      mc::forward(s, xs.data(), ws.data(), bs.data(), ys.data(), packed.data(), nullptr, mc::splits(s));
      mma_names.push_back("conv2d_mma_pack_weights_kernel<" + std::to_string(s.k) + ">");
      mma_names.push_back(mc::tall(s)
                              ? "conv2d_mma_forward_tall_kernel<" + std::to_string(s.k) + ">"
                              : "conv2d_mma_forward_kernel<" + std::to_string(s.k) + ", " +
                                    std::to_string(mc::block_n(s)) + ", " + (mc::narrow(s) ? "true" : "false") + ">");
    }
  }
  emu::set_profile(false);

  std::vector<Row> rows;
  // A launch whose split-K slices are added by each tile's last block (mma_pipeline::reduce_split_k):
  // its partial tiles (gridDim.z slices of 128 floats per thread per tile) written and read once beyond
  // the tensors, and the last block's tail: its own tile written, the S - 1 others read, S tiles.
  auto one_launch_split = [](kiln::gpu::emu::LaunchProfile& p, Row& r) {
    const double tile_bytes = 4.0 * 128.0 * (p.block.x * p.block.y * p.block.z);
    p.global_distinct_bytes += tile_bytes * p.grid.x * p.grid.y * p.grid.z;
    r.split_tail_bytes = tile_bytes * p.grid.z;
  };
  std::string phase = o.kernels == "backward" ? "backward" : "forward";
  std::size_t next_forward = 0, next_backward = convs.size();
  bool in_backward_group = false;
  for (std::size_t launch = 0; launch < emu::profile_log().size(); ++launch) {
    auto& p = emu::profile_log()[launch];
    Row r{&p, launch < mma_names.size() ? mma_names[launch] : short_name(p.kernel), phase, ""};
    if (contains(r.kernel, "loss_backward")) phase = r.phase = "backward";
    if (contains(r.kernel, "adam") || contains(r.kernel, "sgd")) phase = r.phase = "optimizer";
    if (contains(r.kernel, "conv2d_mma_wgrad_reduce_batch")) {  // every split weight gradient's sums, at the end
      r.layer = "*";  // all layers: predict.py --targets shares it out by reduce_bytes (set below)
      in_backward_group = false;
      rows.push_back(r);
      continue;
    }
    // The mma.sync (or wgmma) input gradient is the forward kernel on the transposed shape: named apart.
    if (phase == "backward" &&
        (contains(r.kernel, "conv2d_mma_forward") || contains(r.kernel, "conv2d_mma_bf16_forward") ||
         contains(r.kernel, "conv2d_simt_forward") || contains(r.kernel, "conv2d_wgmma_forward")) &&
        !contains(r.kernel, "(dgrad)"))
      r.kernel += " (dgrad)";
    const bool forward_conv =
        (contains(r.kernel, "conv2d_forward") || contains(r.kernel, "conv2d_igemm_forward") ||
         contains(r.kernel, "conv2d_mma_forward") || contains(r.kernel, "conv2d_mma_bf16_forward") ||
         contains(r.kernel, "conv2d_simt_forward") || contains(r.kernel, "conv2d_wgmma_forward")) &&
        !contains(r.kernel, "(dgrad)");
    const bool backward_conv = contains(r.kernel, "conv2d_backward") || contains(r.kernel, "conv2d_igemm_backward") ||
                               contains(r.kernel, "reduce_splits") || contains(r.kernel, "(dgrad)") ||
                               contains(r.kernel, "conv2d_mma_wgrad") || contains(r.kernel, "conv2d_wgmma_wgrad") ||
                               contains(r.kernel, "conv2d_mma_bf16_wgrad") ||
                               contains(r.kernel, "pack_weights_dgrad") || contains(r.kernel, "conv2d_simt_wgrad") ||
                               contains(r.kernel, "conv2d_simt_pack_weights_kernel<true>");
    // Convolutions: FLOPs and the compulsory global bytes (every tensor read or written once) from
    // the layer's shape. The sampled-block extrapolation of distinct bytes cannot see that every
    // block of a weight gradient reads the same activations, so it is replaced here.
    auto pixels = [&](const ConvLayer& c) { return 1.0 * o.batch * c.h * c.w; };
    auto weights = [&](const ConvLayer& c) { return 1.0 * c.c_in * c.c_out * c.k * c.k; };
    // The forward's and the input gradient's packed weights (channels padded to 16), in floats.
    auto padded = [&](const ConvLayer& c) { return 1.0 * c.c_out * c.k * c.k * ((c.c_in + 15) / 16 * 16); };
    auto dgrad_padded = [&](const ConvLayer& c) { return 1.0 * c.c_in * c.k * c.k * ((c.c_out + 15) / 16 * 16); };
    // Both layouts of one convolution's weights: w read once, the forward's and the input gradient's
    // written (as BF16 under --math bf16).
    auto packed_bytes = [&](const ConvLayer& c) {
      return 4.0 * weights(c) + (o.math == "bf16" ? 2.0 : 4.0) * (padded(c) + dgrad_padded(c));
    };
    // Under TF32 the step's optimizer (the profiled step's second) packed the convolutions that
    // adam_conv_pack_kernel takes as it wrote their weights: w, its gradient and moments read, w and
    // the moments written, both layouts written. The forward's batched packing has the others.
    auto optimizer_packed = [&](const ConvLayer& c) {
      return o.optimizer_packing && o.math == "tf32" && kiln::cuda::kernels::adam_pack::supports(c.c_in, c.c_out, c.k);
    };
    // Adam reads p, g, m, v and writes p, m, v in place: the extrapolation counts each address once
    // (16 bytes a parameter), DRAM moves the written ones twice (28), as the weight gradient's dw +=.
    if (contains(r.kernel, "adam_multi_tensor") || contains(r.kernel, "adam_step_kernel"))
      p.global_distinct_bytes *= 28.0 / 16.0;
    if (contains(r.kernel, "adam_conv_pack")) {  // (a launch of unequal entries: counted here)
      p.global_distinct_bytes = 0;
      for (const ConvLayer& c : convs)
        if (optimizer_packed(c)) p.global_distinct_bytes += 4.0 * (7.0 * weights(c) + padded(c) + dgrad_padded(c));
    }
    if (contains(r.kernel, "conv2d_mma_pack_batch")) {  // the other convolutions' packings at the forward's start
      r.layer = "*";                                    // all layers: predict.py --targets shares it out by pack_bytes
      p.global_distinct_bytes = 0;
      for (const ConvLayer& c : convs)
        if (!optimizer_packed(c)) p.global_distinct_bytes += packed_bytes(c);
    }
    if (forward_conv && next_forward < convs.size()) {
      const ConvLayer& c = convs[next_forward++];
      r.layer = c.name;
      r.pack_bytes = optimizer_packed(c) ? 0.0 : packed_bytes(c);
      p.flops = 2.0 * pixels(c) * weights(c);
      p.global_distinct_bytes = 4.0 * (pixels(c) * (c.c_in + c.c_out) + weights(c) + c.c_out);
      if (contains(r.kernel, "conv2d_mma_bf16_forward"))  // x as the NHWC BF16 copy (channels padded to 16), w as BF16
        p.global_distinct_bytes =
            2.0 * pixels(c) * ((c.c_in + 15) / 16 * 16) + 2.0 * weights(c) + 4.0 * (pixels(c) * c.c_out + c.c_out);
    } else if (backward_conv) {
      if (!in_backward_group && next_backward > 0) --next_backward;
      in_backward_group = true;
      const ConvLayer& c = launch < launch_layer.size() ? convs[launch_layer[launch]] : convs[next_backward];
      r.layer = c.name;
      if (contains(r.kernel, "bias")) {
        p.flops = pixels(c) * c.c_out;
        p.global_distinct_bytes = 4.0 * (pixels(c) * c.c_out + 2.0 * c.c_out);
      } else if (contains(r.kernel, "backward_data") || contains(r.kernel, "(dgrad)")) {
        p.flops = 2.0 * pixels(c) * weights(c);
        p.global_distinct_bytes = 4.0 * (pixels(c) * (c.c_in + c.c_out) + weights(c));
        if (contains(r.kernel, "conv2d_mma_bf16_forward"))  // dy as the NHWC BF16 copy, w as BF16
          p.global_distinct_bytes =
              2.0 * pixels(c) * ((c.c_out + 15) / 16 * 16) + 2.0 * weights(c) + 4.0 * pixels(c) * c.c_in;
      } else if (contains(r.kernel, "pack_weights_dgrad") ||
                 contains(r.kernel,
                          "conv2d_simt_pack_weights_kernel<true>")) {  // w read, the transposed copy written (as below)
        p.global_distinct_bytes = 4.0 * (weights(c) + dgrad_padded(c));
      } else if (contains(r.kernel, "backward_weight") || tf32_wgrad_grid(r.kernel) ||
                 contains(r.kernel, "wgrad_stream_k_kernel") ||
                 contains(r.kernel,
                          "conv2d_simt_wgrad_kernel")) {  // dw read and written (+=)
        p.flops = 2.0 * pixels(c) * weights(c);
        p.global_distinct_bytes = 4.0 * (pixels(c) * (c.c_in + c.c_out) + 2.0 * weights(c));
        if (tf32_wgrad_grid(r.kernel) && p.grid.z > 1) r.partial_bytes = 4.0 * p.grid.z * weights(c);
        const kiln::ConvShape cs{o.batch, c.c_in, c.c_out, c.h, c.w, c.k};
        const auto plan = tf32_wgrad_plan(r.kernel, cs);
        if (contains(r.kernel, "conv2d_wgmma_wgrad_kernel") && p.grid.z > 1 && plan.cluster > 1) {
          // A cluster of the tile's C splits adds them on chip (cluster_sum_wgmma): no partial sums in
          // DRAM; after the k loop each block reads (C - 1) / C of a 64 KiB partial tile from the
          // others' shared memory, which the emulator counts as shared loads: taken out of them and
          // priced apart as the tail (predict.py: at the assumed 64 bytes per clock), once per wave
          // of resident blocks (two per SM: mma_wgrad::cluster_seconds). Several clusters per tile
          // write a partial sum each, which the backward's batched reduction adds (below).
          r.cluster_groups = plan.count / plan.cluster;
          r.partial_bytes = r.cluster_groups > 1 ? 4.0 * r.cluster_groups * weights(c) : 0.0;
          r.cluster = true;
          const double remote = (plan.cluster - 1.0) / plan.cluster * 4.0 * 128 * 128;
          r.split_tail_bytes = remote * std::ceil(static_cast<double>(p.blocks) / (132.0 * 2));
          p.shared_load.units -= remote / 128.0 * static_cast<double>(p.blocks);
          p.shared_load.conflict_free_units -= remote / 128.0 * static_cast<double>(p.blocks);
        }
        if (contains(r.kernel, "wgrad_stream_k_kernel")) {  // its pieces, its tail (mma.sync or wgmma)
          namespace mw = kiln::cuda::kernels::mma_wgrad;
          const mw::Geometry g = mw::geometry(cs);
          const mw::Splits sp = tf32_wgrad_plan(r.kernel, cs);
          if (sp.stream_k) {
            const double tile_bytes = 4.0 * static_cast<double>(mw::tile_floats(g));
            r.stream_k_bytes = tile_bytes * static_cast<double>(mw::stream_k_pieces(cs, g, sp));
            r.split_tail_bytes = tile_bytes * sp.slots * std::min(2.0, std::ceil(sp.count / 132.0));
          }
        }
      } else if (contains(r.kernel, "conv2d_mma_bf16_wgrad_kernel")) {  // x and dy as NHWC BF16 copies; dw += as above
        p.flops = 2.0 * pixels(c) * weights(c);
        p.global_distinct_bytes =
            2.0 * pixels(c) * ((c.c_in + 15) / 16 * 16 + (c.c_out + 15) / 16 * 16) + 8.0 * weights(c);
        if (p.grid.z > 1) r.partial_bytes = 4.0 * p.grid.z * weights(c);
      }
    }
    const bool both_packings = contains(r.kernel, "conv2d_mma_pack_weights_both");  // a TF32 training forward
    if ((contains(r.kernel, "conv2d_mma_pack_weights_kernel") || contains(r.kernel, "conv2d_mma_pack_weights_bf16") ||
         contains(r.kernel, "conv2d_simt_pack_weights_kernel<false>") || both_packings) &&
        next_forward < convs.size()) {  // the next forward conv
      // The sampled-block extrapolation cannot see that the grid-stride blocks re-read w's sectors.
      const ConvLayer& c = convs[next_forward];
      r.layer = c.name;
      // both: the input gradient's layout too (kept for the backward)
      p.global_distinct_bytes = both_packings ? packed_bytes(c) : 4.0 * (weights(c) + padded(c));
    }
    if (p.flops > 0) r.compulsory_bytes = p.global_distinct_bytes;
    p.global_distinct_bytes += r.partial_bytes;  // written beyond the tensors (read by the reduction launch)
    // The mma.sync forwards' (TF32, BF16) split-K partial tiles (gridDim.z slices of 128 x BN floats per tile,
    // BN = its threads): written once and read once by the tile's last slice, beyond the tensors.
    // (In sampled-only mode a tile's last slice rarely runs: its reads and y stores are not counted.)
    // The tile's last block writes its own partial and then reads the S - 1 others alone: S tiles
    // (mma_pipeline::reduce_split_k).
    if ((contains(r.kernel, "conv2d_mma_forward_kernel") || contains(r.kernel, "conv2d_mma_bf16_forward_kernel")) &&
        p.grid.z > 1)
      one_launch_split(p, r);
    if (contains(r.kernel, "conv2d_wgmma_forward_kernel") && p.grid.z > 1) {  // BM x BN floats per partial tile
      const bool short_tile = contains(r.kernel, "forward_short");            // the 64 x 128 tile
      const double tile_bytes =
          4.0 * (short_tile ? 64.0 : 128.0) * (r.kernel.find(", 256>") != std::string::npos ? 256 : 128);
      p.global_distinct_bytes += tile_bytes * p.grid.x * p.grid.y * p.grid.z;
      r.split_tail_bytes = tile_bytes * p.grid.z;
    }
    // (dy's NHWC BF16 copy sits between the input gradient's packing and its GEMM: same group.)
    if (!backward_conv && !(phase == "backward" && contains(r.kernel, "conv2d_nhwc_bf16"))) in_backward_group = false;
    rows.push_back(r);
  }

  // A split weight gradient with no reduction launch after it added its splits in its own launch
  // (mma_wgrad::Splits::one_launch, reduce_split_k): its partial tiles (in place of the partial sums
  // counted above) and the last block's tail, as the forwards'. In a step whose backward reduces
  // them all in one launch at its end (conv2d_mma_wgrad_reduce_batch_kernel), the plan says which
  // were listed for it (not one_launch): each one's share of that launch is its partial sums read
  // and dw read and written, and the launch moves the sum of the shares.
  const auto batch = std::find_if(rows.begin(), rows.end(),
                                  [](const Row& r) { return contains(r.kernel, "conv2d_mma_wgrad_reduce_batch"); });
  double batch_bytes = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    auto& p = emu::profile_log()[i];
    const bool bf16_wgrad = contains(rows[i].kernel, "conv2d_mma_bf16_wgrad_kernel");
    const bool wgrad = tf32_wgrad_grid(rows[i].kernel) || bf16_wgrad;
    if (rows[i].cluster) {  // added on chip (its tail set above); several clusters' sums in the batch
      if (rows[i].cluster_groups > 1 && batch != rows.end()) {
        const auto c =
            std::find_if(convs.begin(), convs.end(), [&](const ConvLayer& l) { return l.name == rows[i].layer; });
        if (c != convs.end()) {
          rows[i].reduce_bytes = rows[i].partial_bytes + 8.0 * static_cast<double>(c->c_out * c->c_in * c->k * c->k);
          batch_bytes += rows[i].reduce_bytes;
        }
      }
      continue;
    }
    bool reduced_apart = i + 1 < rows.size() && contains(rows[i + 1].kernel, "conv2d_mma_wgrad_reduce_kernel");
    if (wgrad && p.grid.z > 1 && !reduced_apart && batch != rows.end()) {
      namespace mw = kiln::cuda::kernels::mma_wgrad;
      const auto c =
          std::find_if(convs.begin(), convs.end(), [&](const ConvLayer& l) { return l.name == rows[i].layer; });
      if (c != convs.end()) {
        const kiln::ConvShape cs{o.batch, c->c_in, c->c_out, c->h, c->w, c->k};
        const mw::Splits sp = bf16_wgrad ? mw::split_k(cs, mw::single_tap(cs)) : tf32_wgrad_plan(rows[i].kernel, cs);
        if (!sp.one_launch) {
          reduced_apart = true;
          rows[i].reduce_bytes = rows[i].partial_bytes + 8.0 * static_cast<double>(c->c_out * c->c_in * c->k * c->k);
          batch_bytes += rows[i].reduce_bytes;
        }
      }
    }
    if (rows[i].stream_k_bytes > 0) p.global_distinct_bytes += rows[i].stream_k_bytes;  // tail: set above
    if (!wgrad || p.grid.z <= 1 || reduced_apart) continue;
    p.global_distinct_bytes -= rows[i].partial_bytes;
    one_launch_split(p, rows[i]);
  }
  // (The sampled-block extrapolation of a launch of unequal entries cannot count its bytes.)
  if (batch != rows.end())
    emu::profile_log()[static_cast<std::size_t>(batch - rows.begin())].global_distinct_bytes = batch_bytes;

  if (!o.csv.empty()) {
    std::ofstream f(o.csv);
    if (!f) usage("cannot write '" + o.csv + "'");
    f << "launch,phase,kernel,layer,blocks,threads,dynamic_shared,sampled_blocks,flops,gld_requests,gld_sectors,gld_"
         "bytes,"
         "gst_requests,gst_sectors,gst_bytes,sld_requests,sld_wavefronts,sld_bytes,sst_requests,sst_wavefronts,sst_"
         "bytes,"
         "global_distinct_bytes,gld_request_distinct_bytes,gst_request_distinct_bytes,tensor_flops,hmma,compulsory_"
         "bytes,split_tail_bytes,pack_bytes,reduce_bytes\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& p = *rows[i].p;
      // The kernel's name is quoted: template arguments hold commas.
      f << i << ',' << rows[i].phase << ",\"" << rows[i].kernel << "\"," << rows[i].layer << ',' << p.blocks << ','
        << p.block.x * p.block.y * p.block.z << ',' << p.dynamic_shared_bytes << ',' << p.sampled_blocks << ','
        << p.flops;
      for (const emu::TrafficCounts* c : {&p.global_load, &p.global_store, &p.shared_load, &p.shared_store})
        f << ',' << c->requests << ',' << c->units << ',' << c->bytes;
      f << ',' << p.global_distinct_bytes << ',' << p.global_load.distinct_bytes << ',' << p.global_store.distinct_bytes
        << ',' << p.tensor_flops << ',' << p.hmma << ',' << rows[i].compulsory_bytes << ',' << rows[i].split_tail_bytes
        << ',' << rows[i].pack_bytes << ',' << rows[i].reduce_bytes << '\n';
    }
  }

  // Per kernel, summed over the step.
  std::map<std::string, kiln_step_traffic::KernelTraffic> sums;
  for (const Row& r : rows) sums[r.kernel].add(*r.p);
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  std::printf("UNet<1,2,%d,%d>, batch %d, %dx%d, %s: %zu launches\n\n", Width, depth, o.batch, o.size, o.size,
              o.kernels == "step"       ? (o.math + " convolutions, one training step").c_str()
              : o.kernels == "backward" ? "the backward convolutions, implicit GEMM and mma.sync"
                                        : "the forward convolutions on conv2d_mma.cuh",
              rows.size());
  std::printf(
      "| kernel | launches | GFLOP | tensor-core GFLOP | HMMA (M) | global MB (distinct) | ld sectors/req | st "
      "sectors/req | coalescing | shared ld wavefronts/req | shared st wavefronts/req |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& [name, s] : sums) {
    const double efficiency = s.coalescing();
    std::printf("| `%s` | %d | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f | %.0f %% | %s | %s |\n", name.c_str(),
                s.launches, s.flops / 1e9, s.tensor_flops / 1e9, s.hmma / 1e6, s.distinct / 1e6,
                ratio(s.gld_sec, s.gld_req), ratio(s.gst_sec, s.gst_req), 100 * efficiency,
                s.sld_req > 0 ? std::to_string(ratio(s.sld_wf, s.sld_req)).substr(0, 4).c_str() : "-",
                s.sst_req > 0 ? std::to_string(ratio(s.sst_wf, s.sst_req)).substr(0, 4).c_str() : "-");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    return o.width == 16 ? run<16>(o) : run<32>(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_emu_profile: %s\n", e.what());
    return 1;
  }
}
