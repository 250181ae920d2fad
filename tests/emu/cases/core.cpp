// The kernel table's BatchNorm, ReLU, add, Concat, MaxPool2d, Upsample, loss and optimizer cases,
// compiled apart from test_kernels_table.cpp and from the convolution cases (cases/conv.cpp) so
// that no unit of the table is over 40 CPU-s (tests/emu/kernel_cases.hpp declares the add_*_cases
// functions).
#include "emu/kernel_cases.hpp"

namespace kiln_test {

void add_core_cases(std::vector<KernelCase>& t) {
  using kiln::Mode;
  using kiln::UpsampleMode;
  auto bn = [&]<int C>(std::int64_t n, std::int64_t h, std::int64_t w, Mode mode) {
    std::ostringstream name;
    name << "BatchNorm2d<" << C << "> N=" << n << " " << h << "x" << w << (mode == Mode::train ? " train" : " eval");
    t.push_back({name.str(), [=](Report& r) {
                   layer_case<kiln::BatchNorm2d<C, Cpu>, kiln::BatchNorm2d<C, Cuda>>(r, Shape::nchw(n, C, h, w), mode,
                                                                                     23 + n + h, tight, loose);
                 }});
  };
  bn.template operator()<3>(1, 13, 11, Mode::train);
  bn.template operator()<5>(3, 13, 11, Mode::train);
  bn.template operator()<7>(3, 2, 1, Mode::train);  // 6 values per channel
  bn.template operator()<5>(3, 13, 11, Mode::eval);
  // HW a multiple of 4: the float4 kernels; several chunks per channel (reduce.cuh's plan) and a
  // thread stride (1024 positions) that is not a whole number of 3x4 planes (the cursor's wrap).
  bn.template operator()<3>(3, 32, 32, Mode::train);
  bn.template operator()<3>(200, 3, 4, Mode::train);
  bn.template operator()<4>(2, 8, 12, Mode::eval);

  // BatchNorm2d + ReLU: Sequential runs the pair through Backend::batchnorm_relu_* on both devices.
  auto bn_relu = [&]<int C>(std::int64_t n, std::int64_t h, std::int64_t w, Mode mode, bool small = false) {
    std::ostringstream name;
    name << (small ? "tiny " : "") << "BatchNorm2d<" << C << "> + ReLU (fused) N=" << n << " " << h << "x" << w
         << (mode == Mode::train ? " train" : " eval");
    t.push_back({name.str(),
                 [=](Report& r) {
                   layer_case<kiln::Sequential<kiln::BatchNorm2d<C, Cpu>, kiln::ReLU<Cpu>>,
                              kiln::Sequential<kiln::BatchNorm2d<C, Cuda>, kiln::ReLU<Cuda>>>(
                       r, Shape::nchw(n, C, h, w), mode, 29 + n + h, tight, loose);
                 },
                 small});
  };
  bn_relu.template operator()<5>(3, 13, 11, Mode::train);
  bn_relu.template operator()<3>(3, 32, 32, Mode::train);  // float4, two chunks per channel
  bn_relu.template operator()<4>(2, 8, 12, Mode::eval);
  bn_relu.template operator()<2>(2, 2, 3, Mode::train, true);

  t.push_back({"ReLU N=3 5x13x11", [](Report& r) {
                 layer_case<kiln::ReLU<Cpu>, kiln::ReLU<Cuda>>(r, Shape::nchw(3, 5, 13, 11), Mode::train, 31, 1e-7,
                                                               1e-7);
               }});
  t.push_back({"ReLU N=2 4x6x8 (float4)", [](Report& r) {
                 layer_case<kiln::ReLU<Cpu>, kiln::ReLU<Cuda>>(r, Shape::nchw(2, 4, 6, 8), Mode::train, 33, 1e-7, 1e-7);
               }});
  t.push_back({"add 3x5x13x11", [](Report& r) { add_case(r, Shape::nchw(3, 5, 13, 11), 37); }});
  t.push_back({"add 2x3x8x8 (float4)", [](Report& r) { add_case(r, Shape::nchw(2, 3, 8, 8), 39); }});
  t.push_back({"Concat<3,5> N=2 8x12 (float4)", [](Report& r) { concat_case<3, 5>(r, 2, 8, 12, 45); }});
  t.push_back({"Concat<3,5> N=3 13x11", [](Report& r) { concat_case<3, 5>(r, 3, 13, 11, 41); }});
  t.push_back({"Concat<7,1> N=1 4x3", [](Report& r) { concat_case<7, 1>(r, 1, 4, 3, 43); }});

  t.push_back({"MaxPool2d<2> N=3 5x14x10", [](Report& r) {
                 layer_case<kiln::MaxPool2d<2, Cpu>, kiln::MaxPool2d<2, Cuda>>(r, Shape::nchw(3, 5, 14, 10),
                                                                               Mode::train, 47, 1e-7, 1e-7);
               }});
  // The layer asks for divisible sizes; the backend floors (PyTorch's rule): rows and columns no
  // window covers get a zero gradient. Scalar kernels (odd width), then float2 rows (odd height).
  t.push_back({"maxpool2d backend 2x2 N=2 3x7x9", [](Report& r) { pool_backend_case(r, {2, 3, 7, 9, 2}, 49); }});
  t.push_back({"maxpool2d backend 2x2 N=2 3x7x10", [](Report& r) { pool_backend_case(r, {2, 3, 7, 10, 2}, 51); }});
  t.push_back({"MaxPool2d<3> N=1 3x12x9", [](Report& r) {
                 layer_case<kiln::MaxPool2d<3, Cpu>, kiln::MaxPool2d<3, Cuda>>(r, Shape::nchw(1, 3, 12, 9), Mode::train,
                                                                               53, 1e-7, 1e-7);
               }});

  auto up = [&]<int S, UpsampleMode M>(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
    std::ostringstream name;
    name << "Upsample<" << S << (M == UpsampleMode::nearest ? ",nearest" : ",bilinear") << "> N=" << n << " " << c
         << "x" << h << "x" << w;
    t.push_back({name.str(), [=](Report& r) {
                   layer_case<kiln::Upsample<S, M, Cpu>, kiln::Upsample<S, M, Cuda>>(
                       r, Shape::nchw(n, c, h, w), Mode::train, 59 + S + h, tight, tight);
                 }});
  };
  up.template operator()<2, UpsampleMode::nearest>(3, 5, 13, 11);
  up.template operator()<3, UpsampleMode::nearest>(1, 3, 5, 7);
  up.template operator()<2, UpsampleMode::bilinear>(3, 5, 13, 11);
  up.template operator()<3, UpsampleMode::bilinear>(1, 3, 5, 7);
  up.template operator()<2, UpsampleMode::bilinear>(1, 1, 1, 2);  // a one-row image: both edges clamp

  t.push_back(
      {"MSELoss 3x2x13x11", [](Report& r) { loss_case(r, kiln::LossKind::mse, 1.0f, Shape::nchw(3, 2, 13, 11), 61); }});
  t.push_back(
      {"L1Loss 3x2x13x11", [](Report& r) { loss_case(r, kiln::LossKind::l1, 1.0f, Shape::nchw(3, 2, 13, 11), 67); }});
  t.push_back({"MSELoss 4x2x32x32 (float4, 4 chunks)",
               [](Report& r) { loss_case(r, kiln::LossKind::mse, 1.0f, Shape::nchw(4, 2, 32, 32), 63); }});
  t.push_back({"HuberLoss(0.5) 1x3x7x5",
               [](Report& r) { loss_case(r, kiln::LossKind::huber, 0.5f, Shape::nchw(1, 3, 7, 5), 71); }});

  t.push_back({"Adam", [](Report& r) {
                 optimizer_case<kiln::Adam>(r, kiln::AdamOptions{.lr = 1e-2f, .weight_decay = 0.1}, 73);
               }});
  t.push_back({"AdamW", [](Report& r) { optimizer_case<kiln::AdamW>(r, kiln::AdamWOptions{.lr = 1e-2f}, 79); }});
  t.push_back({"SGD", [](Report& r) { optimizer_case<kiln::SGD>(r, kiln::SgdOptions{.lr = 0.1f}, 83); }});
  t.push_back({"SGD momentum nesterov wd", [](Report& r) {
                 optimizer_case<kiln::SGD>(
                     r, kiln::SgdOptions{.lr = 0.1f, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}, 89);
               }});
  t.push_back({"SGD momentum dampening", [](Report& r) {
                 optimizer_case<kiln::SGD>(r, kiln::SgdOptions{.lr = 0.1f, .momentum = 0.9, .dampening = 0.3}, 97);
               }});

  t.push_back({"Adam multi-tensor, 150 tensors (3 launches)", [](Report& r) { adam_multi_case(r, 150, 103); }});
  t.push_back({"Adam per-tensor kernel, 20 tensors", [](Report& r) { adam_multi_case(r, 20, 107, true); }});
  t.push_back({"Adam fused with the convolutions' TF32 packings, 4 convolutions", [](Report& r) {
                 adam_conv_pack_case(
                     r, {{1, 16, 16, 4, 4, 3}, {1, 32, 48, 4, 4, 3}, {1, 48, 16, 4, 4, 3}, {1, 64, 32, 4, 4, 1}}, 113);
               }});
  t.push_back({"step guard: NaN/Inf counts, 75 tensors (2 launches)", [](Report& r) { step_guard_case(r, 75, 109); }});
}

void add_tiny_core_cases(std::vector<KernelCase>& t) {
  using kiln::Mode;
  using kiln::UpsampleMode;
  // The tiny subset (small = true): every kernel at least once, with the fewest CUDA threads.
  auto tiny = [&](std::string name, std::function<void(Report&)> run) {
    t.push_back({std::move(name), std::move(run), true});
  };
  tiny("tiny BatchNorm2d<2> N=2 2x3 train", [](Report& r) {
    layer_case<kiln::BatchNorm2d<2, Cpu>, kiln::BatchNorm2d<2, Cuda>>(r, Shape::nchw(2, 2, 2, 3), Mode::train, 207);
  });
  tiny("tiny BatchNorm2d<2> N=2 2x3 eval", [](Report& r) {
    layer_case<kiln::BatchNorm2d<2, Cpu>, kiln::BatchNorm2d<2, Cuda>>(r, Shape::nchw(2, 2, 2, 3), Mode::eval, 209);
  });
  tiny("tiny ReLU", [](Report& r) {
    layer_case<kiln::ReLU<Cpu>, kiln::ReLU<Cuda>>(r, Shape::nchw(1, 2, 3, 5), Mode::train, 211, 1e-7, 1e-7);
  });
  tiny("tiny add", [](Report& r) { add_case(r, Shape::nchw(1, 2, 3, 5), 213); });
  tiny("tiny Concat<2,1>", [](Report& r) { concat_case<2, 1>(r, 1, 3, 5, 215); });
  tiny("tiny MaxPool2d<2>", [](Report& r) {
    layer_case<kiln::MaxPool2d<2, Cpu>, kiln::MaxPool2d<2, Cuda>>(r, Shape::nchw(1, 2, 4, 6), Mode::train, 217, 1e-7,
                                                                  1e-7);
  });
  tiny("tiny Upsample<2,nearest>", [](Report& r) {
    layer_case<kiln::Upsample<2, UpsampleMode::nearest, Cpu>, kiln::Upsample<2, UpsampleMode::nearest, Cuda>>(
        r, Shape::nchw(1, 2, 3, 5), Mode::train, 219, tight, tight);
  });
  tiny("tiny Upsample<2,bilinear>", [](Report& r) {
    layer_case<kiln::Upsample<2, UpsampleMode::bilinear, Cpu>, kiln::Upsample<2, UpsampleMode::bilinear, Cuda>>(
        r, Shape::nchw(1, 2, 3, 5), Mode::train, 221, tight, tight);
  });
  tiny("tiny HuberLoss", [](Report& r) { loss_case(r, kiln::LossKind::huber, 1.0f, Shape::nchw(1, 2, 3, 5), 223); });
  tiny("tiny Adam", [](Report& r) { optimizer_case<kiln::Adam>(r, kiln::AdamOptions{.lr = 1e-2f}, 225); });
  tiny("tiny SGD momentum",
       [](Report& r) { optimizer_case<kiln::SGD>(r, kiln::SgdOptions{.lr = 0.1f, .momentum = 0.9}, 227); });
  tiny("tiny Adam multi-tensor", [](Report& r) { adam_multi_case(r, 5, 231); });
  tiny("tiny Adam per-tensor kernel", [](Report& r) { adam_multi_case(r, 3, 233, true); });
  tiny("tiny Adam fused with a convolution's packings", [](Report& r) {
    adam_conv_pack_case(r, {{1, 16, 16, 2, 2, 1}}, 237);
  });
  tiny("tiny step guard", [](Report& r) { step_guard_case(r, 71, 235); });
}

}  // namespace kiln_test
