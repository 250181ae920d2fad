// The kernel table's convolution cases (direct, TF32, mma.sync, implicit GEMM) and the residual
// blocks built of them (kernel_cases_residual.hpp), compiled apart from test_kernels_table.cpp so
// that no unit of the table is over 40 CPU-s (tests/emu/kernel_cases.hpp declares the add_*_cases
// functions; this file, like the other parts, is linked into every binary that runs the table).
#include "emu/kernel_cases.hpp"

#include "emu/kernel_cases_residual.hpp"

namespace kiln_test {

void add_conv_cases(std::vector<KernelCase>& t) {
  using kiln::Mode;
  auto conv = [&]<int In, int Out, int K>(std::int64_t n, std::int64_t h, std::int64_t w, bool input_grad = true) {
    std::ostringstream name;
    name << "Conv2d<" << In << "," << Out << "," << K << "> N=" << n << " " << h << "x" << w
         << (input_grad ? "" : " (no dx)");
    t.push_back({name.str(), [=](Report& r) {
                   layer_case<kiln::Conv2d<In, Out, K, Cpu>, kiln::Conv2d<In, Out, K, Cuda>>(
                       r, Shape::nchw(n, In, h, w), Mode::train, 11 + n * 7 + h, tight, loose, input_grad);
                 }});
  };
  conv.template operator()<3, 5, 3>(1, 13, 11);
  conv.template operator()<5, 7, 3>(3, 13, 11);
  conv.template operator()<7, 3, 3>(2, 17, 20);  // 2x2 tiles, partial in both directions
  conv.template operator()<9, 10, 3>(1, 5, 6);   // channel groups of 8: one full, one partial
  conv.template operator()<5, 3, 1>(3, 13, 11);
  conv.template operator()<16, 9, 1>(1, 7, 9);
  conv.template operator()<3, 4, 5>(2, 9, 7);  // run-time kernel size (generic path)
  conv.template operator()<3, 5, 3>(3, 13, 11, false);
  conv.template operator()<2, 3, 1>(3, 32, 32);  // bias gradient: float4, two chunks per channel

  // MathMode::tf32: the tensor-core kernels (forward and input gradient: kernels/conv2d_mma.cuh;
  // weight gradient: kernels/conv2d_mma_wgrad.cuh where H*W % 4 == 0, else kernels/conv2d_igemm.cuh)
  // against the strict CPU backend. TF32 keeps 10 mantissa bits, so the bound is TF32's
  // (tf32_bound); the exact-rounding checks are in tests/emu/test_conv_igemm.cpp.
  auto conv_tf32 = [&]<int In, int Out, int K>(std::int64_t n, std::int64_t h, std::int64_t w, bool small = false) {
    std::ostringstream name;
    name << (small ? "tiny " : "") << "tf32 Conv2d<" << In << "," << Out << "," << K << "> N=" << n << " " << h << "x"
         << w;
    t.push_back({name.str(),
                 [=](Report& r) {
                   kiln::cuda::MathModeScope tf32(kiln::cuda::MathMode::tf32);
                   layer_case<kiln::Conv2d<In, Out, K, Cpu>, kiln::Conv2d<In, Out, K, Cuda>>(
                       r, Shape::nchw(n, In, h, w), Mode::train, 301 + n * 7 + h, tf32_bound, tf32_bound);
                 },
                 small});
  };
  conv_tf32.template operator()<5, 7, 3>(3, 13, 11);  // tiles crossing images, channels not multiples of 16
  conv_tf32.template operator()<16, 16, 3>(2, 16, 16);
  conv_tf32.template operator()<70, 9, 1>(1, 9, 9);         // 1x1: Kg = 70 with a tail, M = 9 of a 64 tile
  conv_tf32.template operator()<2, 3, 3>(1, 4, 5, true);    // the TSan subset: one block per pass
  conv_tf32.template operator()<3, 2, 1>(1, 16, 16, true);  // 256 pixels: a split weight gradient
  conv_tf32.template operator()<3, 2, 1>(1, 17, 15, true);  // H*W % 4 != 0: the implicit GEMM's, split
  conv_tf32.template operator()<96, 80, 3>(1, 8, 8);        // the 128x128 mma tiles (dgrad, wgrad), channel tails

  // MathMode::bf16: the same mma.sync kernels on BF16 m16n8k16 (exact-operand checks in test_conv_mma_bf16.cpp).
  auto conv_bf16 = [&]<int In, int Out, int K>(std::int64_t n, std::int64_t h, std::int64_t w, bool small = false) {
    std::ostringstream name;
    name << (small ? "tiny " : "") << "bf16 Conv2d<" << In << "," << Out << "," << K << "> N=" << n << " " << h << "x"
         << w;
    t.push_back({name.str(),
                 [=](Report& r) {
                   kiln::cuda::MathModeScope bf16(kiln::cuda::MathMode::bf16);
                   layer_case<kiln::Conv2d<In, Out, K, Cpu>, kiln::Conv2d<In, Out, K, Cuda>>(
                       r, Shape::nchw(n, In, h, w), Mode::train, 401 + n * 7 + h, bf16_bound, bf16_bound);
                 },
                 small});
  };
  conv_bf16.template operator()<16, 16, 3>(2, 8, 8);
  conv_bf16.template operator()<70, 9, 1>(1, 8, 6);       // 1x1, a channel tail, the 128x64 forward tile
  conv_bf16.template operator()<96, 80, 3>(1, 4, 8);      // the 128x128 tiles, channel tails
  conv_bf16.template operator()<2, 3, 3>(1, 4, 5, true);  // the TSan subset: one block per pass
  // A ConvBlock under MathMode::bf16: its fused BatchNorm + ReLU write the convolutions' BF16 copies
  // (kernels/batchnorm_nhwc.cuh; the bits are checked in test_bn_activation_copies.cpp). The bound
  // is wide: bn2's backward leaves dy with each channel's sum near zero, so bn1's sums over conv2's
  // input gradient cancel, and BF16's rounding of that dy's copy comes out about 10x (0.04-0.08 on
  // N=2 8x8: the gradients of dx, conv1 and bn1); a wrong channel or a stale copy gives about 1.
  constexpr double block_bound = 0.25;
  auto block_bf16 = [&]<int In, int C>(std::int64_t n, std::int64_t h, std::int64_t w, bool small) {
    std::ostringstream name;
    name << (small ? "tiny " : "") << "bf16 ConvBlock<" << In << "," << C << "> N=" << n << " " << h << "x" << w;
    t.push_back({name.str(),
                 [=](Report& r) {
                   kiln::cuda::MathModeScope bf16(kiln::cuda::MathMode::bf16);
                   layer_case<kiln::ConvBlock<In, C, Cpu>, kiln::ConvBlock<In, C, Cuda>>(
                       r, Shape::nchw(n, In, h, w), Mode::train, 421 + n * 7 + h, block_bound, block_bound);
                 },
                 small});
  };
  block_bf16.template operator()<3, 20>(2, 8, 8, false);  // two channel groups of the copy kernels
  block_bf16.template operator()<2, 3>(1, 4, 5, true);    // the TSan subset

  // The mma.sync TF32 convolution (kernels/conv2d_mma.cuh; exact-operand checks in test_conv_mma.cpp).
  t.push_back({"mma.sync conv2d 5->7 K=3 N=3 13x11 (128x64 tile, channel tail)", [](Report& r) {
                 mma_conv_case<3, 64, true>(r, {3, 5, 7, 13, 11, 3}, 311);
               }});
  t.push_back({"mma.sync conv2d 32->80 K=1 N=1 12x12 (128x128 tile)", [](Report& r) {
                 mma_conv_case<1, 128, false>(r, {1, 32, 80, 12, 12, 1}, 313);
               }});
  t.push_back({"mma.sync conv2d 40->72 K=3 N=1 6x6 split-K over 4 slices (128x128 tile, channel tail)", [](Report& r) {
                 mma_conv_case<3, 128, false>(r, {1, 40, 72, 6, 6, 3}, 331, 4);
               }});
  t.push_back({"mma.sync conv2d 20->40 K=3 N=2 13x11 on the 256x64 tile (channel tail, a partial tile across images)",
               [](Report& r) {
                 mma_conv_case<3, 64, false, kiln::cuda::kernels::mma_conv::tall_bm>(r, {2, 20, 40, 13, 11, 3}, 349);
               }});
  t.push_back({"tiny mma.sync conv2d 16->3 K=1 N=1 4x5 on the 256x64 tile",
               [](Report& r) {
                 mma_conv_case<1, 64, false, kiln::cuda::kernels::mma_conv::tall_bm>(r, {1, 16, 3, 4, 5, 1}, 351);
               },
               true});
  // The wgmma TF32 forward (kernels/conv2d_wgmma.cuh; bit for bit the mma.sync one in test_conv_wgmma.cpp).
  t.push_back({"wgmma conv2d 40->72 K=3 N=2 9x11 on the 128x128 tile (channel tail, a partial tile across images)",
               [](Report& r) {
                 wgmma_conv_case<3, 128>(r, {2, 40, 72, 9, 11, 3}, 361);
               }});
  t.push_back({"wgmma conv2d 32->200 K=1 N=1 10x10 on the 128x256 tile", [](Report& r) {
                 wgmma_conv_case<1, 256>(r, {1, 32, 200, 10, 10, 1}, 363);
               }});
  t.push_back({"wgmma conv2d 48->96 K=3 N=1 6x6 split-K over 3 slices (128x128 tile, channel tail)", [](Report& r) {
                 wgmma_conv_case<3, 128>(r, {1, 48, 96, 6, 6, 3}, 367, 3);
               }});
  t.push_back(
      {"wgmma conv2d 48->136 K=3 N=2 7x9 on the short 64x128 tile split-K over 2 slices (channel tail)", [](Report& r) {
         wgmma_conv_case<3, 128, true>(r, {2, 48, 136, 7, 9, 3}, 371, 2);
       }});
  t.push_back({"tiny wgmma conv2d 16->6 K=3 N=1 3x4 on the short 64x128 tile",
               [](Report& r) {
                 wgmma_conv_case<3, 128, true>(r, {1, 16, 6, 3, 4, 3}, 373);
               },
               true});
  // Backend<Cuda>'s TF32 plan with wgmma wherever it takes the shape (kernels/conv2d_tf32_plan.cuh): the
  // forward and input gradient on conv2d_wgmma.cuh where sm_90a code runs (the emulator, an H100/H200),
  // on mma.sync elsewhere; the layer against the CPU backend either way.
  t.push_back({"tf32 Conv2d<32,136,3> N=2 8x8 through the backend's plan with the wgmma preference", [](Report& r) {
                 namespace tp = kiln::cuda::kernels::tf32_forward;
                 kiln::cuda::MathModeScope tf32(kiln::cuda::MathMode::tf32);
                 tp::PreferenceScope wgmma(tp::Preference::wgmma);
                 layer_case<kiln::Conv2d<32, 136, 3, Cpu>, kiln::Conv2d<32, 136, 3, Cuda>>(
                     r, Shape::nchw(2, 32, 8, 8), Mode::train, 369, tf32_bound, tf32_bound);
               }});
  t.push_back({"tiny wgmma conv2d 16->5 K=3 N=1 4x5 on the 128x64 tile",
               [](Report& r) {
                 wgmma_conv_case<3, 64>(r, {1, 16, 5, 4, 5, 3}, 365);
               },
               true});
  t.push_back({"tiny tf32 weight gradient 65->65 K=3 N=1 4x8 on the stream-K schedule (2 blocks, a tile in 2 pieces)",
               [](Report& r) {
                 mma_wgrad_stream_k_case(r, {1, 65, 65, 4, 8, 3}, 341, 2);
               },
               true});
  t.push_back({"tiny wgmma weight gradient 65->65 K=3 N=1 4x8 on the stream-K schedule (2 blocks, a tile in 2 pieces)",
               [](Report& r) {
                 mma_wgrad_stream_k_case(r, {1, 65, 65, 4, 8, 3}, 344, 2, true);
               },
               true});
  t.push_back({"tiny wgmma weight gradient 64->65 K=3 N=1 4x8 on the 128 x 2*64 tap pair, 2 splits in a cluster",
               [](Report& r) {
                 namespace mw = kiln::cuda::kernels::mma_wgrad;
                 const kiln::ConvShape s{1, 64, 65, 4, 8, 3};
                 mw::Splits sp = mw::splits_of(s, mw::geometry(s), 2);
                 sp.cluster = 2;  // (the ninth tap alone: its zeroed rows)
                 mma_wgrad_plan_case(r, s, 345, sp, true);
               },
               true});
  t.push_back({"tiny mma.sync conv2d 2->3 K=3 N=1 4x5",
               [](Report& r) {
                 mma_conv_case<3, 64, true>(r, {1, 2, 3, 4, 5, 3}, 317);
               },
               true});
  t.push_back({"tiny tf32 conv2d 2->3 K=3 N=1 4x5 forward without workspace (implicit GEMM)",
               [](Report& r) {
                 igemm_forward_case(r, {1, 2, 3, 4, 5, 3}, 319);
               },
               true});
  t.push_back({"tiny tf32 conv2d 2->3 K=3 N=1 5x3 gradients without workspace (implicit GEMM)",
               [](Report& r) {
                 igemm_backward_case(r, {1, 2, 3, 5, 3, 3}, 323);
               },
               true});
  t.push_back({"tiny tf32 packings of three convolutions in one launch (a network's forward), then their GEMMs",
               [](Report& r) {
                 conv_pack_batch_case(r, {{1, 2, 3, 4, 5, 3}, {1, 3, 2, 4, 4, 1}, {1, 20, 17, 3, 3, 3}}, 329);
               },
               true});
  t.push_back({"tiny tf32 weight gradients of two convolutions reduced in one launch (a network's backward)",
               [](Report& r) {
                 wgrad_reduce_batch_case(r, {{1, 3, 2, 16, 16, 1}, {1, 2, 3, 16, 16, 3}}, 343);
               },
               true});
  t.push_back(
      {"tiny bf16 weight gradients of two convolutions reduced in one launch (a network's backward)",
       [](Report& r) {
         wgrad_reduce_batch_case(r, {{1, 3, 2, 16, 16, 1}, {1, 2, 3, 16, 16, 3}}, 347, kiln::cuda::MathMode::bf16);
       },
       true});
  t.push_back({"tiny bf16 conv2d 2->3 K=3 and 3->2 K=1: eval forward and a backward with nothing kept",
               [](Report& r) {
                 bf16_unkept_case(r, {1, 2, 3, 4, 5, 3}, 333);
                 bf16_unkept_case(r, {1, 3, 2, 4, 4, 1}, 337);
               },
               true});
  t.push_back({"tiny bf16 packings of three convolutions in one launch (a network's forward), then their GEMMs",
               [](Report& r) {
                 conv_pack_batch_case(r, {{1, 2, 3, 4, 5, 3}, {1, 3, 2, 4, 4, 1}, {1, 20, 17, 3, 3, 3}}, 331,
                                      kiln::cuda::MathMode::bf16);
               },
               true});
  t.push_back({"tiny tf32 conv2d 2->3 K=3 N=1 4x4 gradients with nothing kept (input gradient's packing launched)",
               [](Report& r) {
                 igemm_backward_case(r, {1, 2, 3, 4, 4, 3}, 327, true);
               },
               true});
  t.push_back(
      {"tf32 conv2d weight gradients on tap pairs: 64->72 (128 x 2*64), 136->8 (64 x 2*128, 60 KiB)", [](Report& r) {
         igemm_backward_case(r, {1, 64, 72, 4, 4, 3}, 341, true);
         igemm_backward_case(r, {1, 136, 8, 4, 4, 3}, 342, true);
       }});
  t.push_back({"tf32 conv2d weight gradient with its 2 splits added in the GEMM's launch: 64->72 16x16 (128 x 2*64)",
               [](Report& r) {
                 igemm_backward_case(r, {1, 64, 72, 16, 16, 3}, 343, true);
               }});
}

void add_tiny_conv_cases(std::vector<KernelCase>& t) {
  using kiln::Mode;
  // The tiny subset (small = true): every kernel at least once, with the fewest CUDA threads.
  auto tiny = [&](std::string name, std::function<void(Report&)> run) {
    t.push_back({std::move(name), std::move(run), true});
  };
  tiny("tiny Conv2d<2,3,3> N=1 4x5", [](Report& r) {
    layer_case<kiln::Conv2d<2, 3, 3, Cpu>, kiln::Conv2d<2, 3, 3, Cuda>>(r, Shape::nchw(1, 2, 4, 5), Mode::train, 201);
  });
  tiny("tiny Conv2d<2,3,1> N=1 4x5", [](Report& r) {
    layer_case<kiln::Conv2d<2, 3, 1, Cpu>, kiln::Conv2d<2, 3, 1, Cuda>>(r, Shape::nchw(1, 2, 4, 5), Mode::train, 203);
  });
  tiny("tiny Conv2d<2,3,1> N=1 32x16 (split SIMT weight gradient)", [](Report& r) {
    layer_case<kiln::Conv2d<2, 3, 1, Cpu>, kiln::Conv2d<2, 3, 1, Cuda>>(r, Shape::nchw(1, 2, 32, 16), Mode::train, 207,
                                                                        tight, loose);
  });
  tiny("tiny Conv2d<1,2,5> N=1 3x4", [](Report& r) {
    layer_case<kiln::Conv2d<1, 2, 5, Cpu>, kiln::Conv2d<1, 2, 5, Cuda>>(r, Shape::nchw(1, 1, 3, 4), Mode::train, 205);
  });
}

}  // namespace kiln_test
