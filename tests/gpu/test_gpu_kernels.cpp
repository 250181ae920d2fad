// kiln's CUDA kernels on a REAL GPU: the same table of cases as the emulated suite
// (tests/emu/kernel_cases.hpp) against the CPU backend, and the kernels against cuDNN
// (kiln::cudnn, when built with -DKILN_CUDNN=ON). Meaningful only when compiled by nvcc
// (tests/gpu.cmake does that for KILN_CUDA=ON builds); compiled by g++, or run on a machine
// without a GPU, every test case exits with code 77, which ctest reports as skipped.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "emu/kernel_cases.hpp"
#include "kiln/cuda/cudnn.hpp"

namespace {

void skip_without_device() {
  const char* why = nullptr;
  if (kiln::gpu::emulated)
    why =
        "SKIPPED: no CUDA device (this binary was compiled without nvcc; the emu suite tests the kernels on the "
        "emulator)";
  else if (!kiln::gpu::device_available())
    why = "SKIPPED: no CUDA device";
  if (why) {
    std::printf("%s\n", why);
    std::fflush(stdout);
    std::exit(77);  // ctest: SKIP_RETURN_CODE 77
  }
}

void check_report(const kiln_test::Report& report) {
  for (const auto& c : report.comparisons) {
    INFO(c.what, ": normalised error ", c.error, " (bound ", c.bound, ")");
    CHECK(c.ok());
  }
}

}  // namespace

TEST_CASE("gpu: every kernel case on the GPU matches the CPU backend") {
  skip_without_device();
  MESSAGE("device: ", kiln::gpu::device_name());
  for (const auto& c : kiln_test::kernel_cases()) {
    INFO("case: ", c.name);
    kiln_test::Report report;
    try {
      c.run(report);
      kiln::gpu::synchronize();
    } catch (const std::exception& e) {
      FAIL_CHECK("threw: ", e.what());
    }
    CHECK(!report.comparisons.empty());
    check_report(report);
  }
}

// The TF32 implicit-GEMM kernels (kernels/conv2d_igemm.cuh) at U-Net sizes the emulator cannot
// afford, against the strict fp32 CPU backend, with the TF32 bound of the emulated table.
TEST_CASE("gpu: TF32 tensor-core convolutions match the CPU backend") {
  skip_without_device();
  const std::vector<kiln::ConvShape> shapes = {{2, 5, 7, 13, 11, 3},
                                               {4, 64, 64, 64, 64, 3},
                                               {16, 1, 32, 64, 64, 3},
                                               {4, 128, 64, 32, 32, 1},
                                               {3, 33, 70, 4, 4, 3}};
  kiln::Rng rng(13);
  for (const auto& s : shapes) {
    CAPTURE(s.n);
    CAPTURE(s.c_in);
    CAPTURE(s.c_out);
    CAPTURE(s.h);
    CAPTURE(s.k);
    const auto xs = kiln::Shape::nchw(s.n, s.c_in, s.h, s.w), ys = kiln::Shape::nchw(s.n, s.c_out, s.h, s.w);
    const auto ws = kiln::Shape{s.c_out, s.c_in, s.k, s.k}, bs = kiln::Shape{s.c_out};
    const auto xv = kiln_test::random_vector(xs.numel(), rng), wv = kiln_test::random_vector(ws.numel(), rng);
    const auto bv = kiln_test::random_vector(bs.numel(), rng), gv = kiln_test::random_vector(ys.numel(), rng);
    using CpuT = kiln::Tensor<float, kiln::Cpu>;
    CpuT x_c = CpuT::from_host(xs, xv), w_c = CpuT::from_host(ws, wv), b_c = CpuT::from_host(bs, bv),
         g_c = CpuT::from_host(ys, gv);
    CpuT y_c(ys), dx_c(xs), dw_c(ws), db_c(bs);
    CpuT work_c(kiln::Shape{static_cast<std::int64_t>(kiln::Backend<kiln::Cpu>::conv2d_workspace_floats(s)) + 1});
    kiln::Backend<kiln::Cpu>::conv2d_forward(s, x_c, w_c, b_c, y_c, work_c);
    kiln::Backend<kiln::Cpu>::conv2d_backward(s, x_c, w_c, g_c, dx_c, dw_c, db_c, work_c);

    kiln::cuda::MathModeScope tf32(kiln::cuda::MathMode::tf32);
    using DeviceTensor = kiln::Tensor<float, kiln::Cuda>;
    DeviceTensor x = DeviceTensor::from_host(xs, xv), w = DeviceTensor::from_host(ws, wv);
    DeviceTensor b = DeviceTensor::from_host(bs, bv), dy = DeviceTensor::from_host(ys, gv);
    DeviceTensor y(ys), dx(xs), dw(ws), db(bs);
    DeviceTensor work(
        kiln::Shape{static_cast<std::int64_t>(kiln::Backend<kiln::Cuda>::conv2d_workspace_floats(s)) + 1});
    kiln::Backend<kiln::Cuda>::conv2d_forward(s, x, w, b, y, work);
    kiln::Backend<kiln::Cuda>::conv2d_backward(s, x, w, dy, dx, dw, db, work);
    kiln_test::Report r;
    r.compare("y", y, y_c, kiln_test::tf32_bound);
    r.compare("dx", dx, dx_c, kiln_test::tf32_bound);
    r.compare("dw", dw, dw_c, kiln_test::tf32_bound);
    r.compare("db", db, db_c, kiln_test::loose);
    for (const auto& c : r.comparisons) MESSAGE("tf32 ", c.what, ": normalised error vs CPU fp32 ", c.error);
    check_report(r);
  }
}

#if KILN_GPU_REAL && defined(KILN_WITH_CUDNN)

namespace {

using DeviceTensor = kiln::Tensor<float, kiln::Cuda>;

DeviceTensor random_tensor(const kiln::Shape& s, kiln::Rng& rng) {
  return DeviceTensor::from_host(s, kiln_test::random_vector(s.numel(), rng));
}

}  // namespace

TEST_CASE("gpu: conv2d kernels match cuDNN (fp32 math, no TF32)") {
  skip_without_device();
  kiln::cudnn::Handle handle;
  const std::vector<kiln::ConvShape> shapes = {{1, 3, 5, 13, 11, 3}, {3, 5, 7, 13, 11, 3},   {2, 16, 32, 64, 64, 3},
                                               {3, 5, 3, 13, 11, 1}, {2, 32, 16, 40, 24, 1}, {2, 3, 4, 9, 7, 5}};
  kiln::Rng rng(7);
  for (const auto& s : shapes) {
    CAPTURE(s.n);
    CAPTURE(s.c_in);
    CAPTURE(s.c_out);
    CAPTURE(s.h);
    CAPTURE(s.w);
    CAPTURE(s.k);
    const auto xs = kiln::Shape::nchw(s.n, s.c_in, s.h, s.w), ys = kiln::Shape::nchw(s.n, s.c_out, s.h, s.w);
    const auto ws = kiln::Shape{s.c_out, s.c_in, s.k, s.k};
    DeviceTensor x = random_tensor(xs, rng), w = random_tensor(ws, rng), b = random_tensor(kiln::Shape{s.c_out}, rng);
    DeviceTensor dy = random_tensor(ys, rng);
    DeviceTensor y_kiln(ys), y_cudnn(ys), dx_kiln(xs), dx_cudnn(xs), dw_kiln(ws), dw_cudnn(ws),
        db_kiln(kiln::Shape{s.c_out}), db_cudnn(kiln::Shape{s.c_out}), workspace;
    kiln::cudnn::Conv2d conv(handle, s, kiln::cudnn::MathMode::fp32);
    kiln::Backend<kiln::Cuda>::conv2d_forward(s, x, w, b, y_kiln, workspace);
    conv.forward(x.data(), w.data(), b.data(), y_cudnn.data());
    kiln::Backend<kiln::Cuda>::conv2d_backward(s, x, w, dy, dx_kiln, dw_kiln, db_kiln, workspace);
    conv.backward_data(w.data(), dy.data(), dx_cudnn.data());
    conv.backward_filter(x.data(), dy.data(), dw_cudnn.data(), db_cudnn.data());
    kiln_test::Report r;
    r.compare("y", y_kiln, y_cudnn, kiln_test::tight);
    r.compare("dx", dx_kiln, dx_cudnn, kiln_test::tight);
    r.compare("dw", dw_kiln, dw_cudnn, kiln_test::loose);
    r.compare("db", db_kiln, db_cudnn, kiln_test::loose);
    check_report(r);

    // TF32 for information: cuDNN's default on sm_80+ differs from fp32 by ~1e-3.
    kiln::cudnn::Conv2d tf32(handle, s, kiln::cudnn::MathMode::tf32);
    DeviceTensor y_tf32(ys);
    tf32.forward(x.data(), w.data(), b.data(), y_tf32.data());
    MESSAGE("conv forward ", kiln::cudnn::math_mode_name(kiln::cudnn::MathMode::tf32),
            " vs kiln fp32: normalised error ", kiln_test::normalised_error(y_tf32.to_vector(), y_kiln.to_vector()));
    // kiln's TF32 kernels (MathMode::tf32, K = 1 and 3) against cuDNN TF32: both within TF32's bound of fp32.
    if (s.k == 1 || s.k == 3) {
      kiln::cuda::MathModeScope mode(kiln::cuda::MathMode::tf32);
      DeviceTensor y_ours(ys),
          tf32_work(kiln::Shape{static_cast<std::int64_t>(kiln::Backend<kiln::Cuda>::conv2d_workspace_floats(s)) + 1});
      kiln::Backend<kiln::Cuda>::conv2d_forward(s, x, w, b, y_ours, tf32_work);
      kiln_test::Report t;
      t.compare("kiln tf32 y vs cuDNN tf32", y_ours, y_tf32, 2 * kiln_test::tf32_bound);
      t.compare("kiln tf32 y vs cuDNN fp32", y_ours, y_cudnn, kiln_test::tf32_bound);
      check_report(t);
    }
  }
}

TEST_CASE("gpu: batchnorm training forward/backward and max pooling match cuDNN") {
  skip_without_device();
  kiln::cudnn::Handle handle;
  kiln::Rng rng(11);
  for (const auto& shape : {kiln::Shape::nchw(3, 5, 13, 11), kiln::Shape::nchw(8, 32, 32, 32)}) {
    CAPTURE(shape.str());
    kiln::BatchNormArgs a;
    a.n = shape.n();
    a.c = shape.c();
    a.hw = shape.h() * shape.w();
    a.training = true;
    const kiln::Shape cs{shape.c()};
    DeviceTensor x = random_tensor(shape, rng), dy = random_tensor(shape, rng);
    DeviceTensor weight = random_tensor(cs, rng), bias = random_tensor(cs, rng);
    const auto ones = std::vector<float>(static_cast<std::size_t>(shape.c()), 1.0f);
    DeviceTensor rm_k(cs), rv_k = DeviceTensor::from_host(cs, ones), rm_c(cs), rv_c = DeviceTensor::from_host(cs, ones);
    DeviceTensor sm_k(cs), si_k(cs), sm_c(cs), si_c(cs), y_k(shape), y_c(shape), dx_k(shape), dx_c(shape);
    DeviceTensor dw_k(cs), db_k(cs), dw_c(cs), db_c(cs);
    kiln::Backend<kiln::Cuda>::batchnorm_forward(a, x, weight, bias, rm_k, rv_k, sm_k, si_k, y_k);
    kiln::cudnn::batchnorm_forward_training(handle, a, x.data(), weight.data(), bias.data(), rm_c.data(), rv_c.data(),
                                            sm_c.data(), si_c.data(), y_c.data());
    kiln::Backend<kiln::Cuda>::batchnorm_backward(a, x, weight, sm_k, si_k, dy, dx_k, dw_k, db_k);
    kiln::cudnn::batchnorm_backward(handle, a, x.data(), weight.data(), sm_c.data(), si_c.data(), dy.data(),
                                    dx_c.data(), dw_c.data(), db_c.data());
    kiln_test::Report r;
    r.compare("y", y_k, y_c, kiln_test::loose);
    r.compare("save_mean", sm_k, sm_c, kiln_test::loose);
    r.compare("save_invstd", si_k, si_c, kiln_test::loose);
    r.compare("running_mean", rm_k, rm_c, kiln_test::loose);
    r.compare("running_var", rv_k, rv_c, kiln_test::loose);
    r.compare("dx", dx_k, dx_c, kiln_test::loose);
    r.compare("dweight", dw_k, dw_c, kiln_test::loose);
    r.compare("dbias", db_k, db_c, kiln_test::loose);

    const kiln::PoolArgs p{shape.n(), shape.c(), shape.h() / 2 * 2, shape.w() / 2 * 2, 2};
    const auto ps = kiln::Shape::nchw(p.n, p.c, p.h, p.w), pos = kiln::Shape::nchw(p.n, p.c, p.out_h(), p.out_w());
    DeviceTensor px = random_tensor(ps, rng), py_k(pos), py_c(pos);
    kiln::Tensor<std::int32_t, kiln::Cuda> argmax(pos);
    kiln::Backend<kiln::Cuda>::maxpool2d_forward(p, px, py_k, argmax);
    kiln::cudnn::maxpool2d_forward(handle, p, px.data(), py_c.data());
    r.compare("maxpool y", py_k, py_c, 1e-7);
    check_report(r);
  }
}

#endif  // KILN_GPU_REAL && KILN_WITH_CUDNN
