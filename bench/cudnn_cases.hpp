#pragma once
// cuDNN at the same shapes as layer_cases.hpp: the unit of measurement for our
// kernels (docs/benchmarks.md). Self-contained (cudnn.h + the CUDA runtime), so it
// does not depend on kiln's own cuDNN wrapper.
//
// Rows: <op>/cudnn/fp32/<shape> and, for convolutions, <op>/cudnn/tf32/<shape>.
//   fp32: the convolution descriptor's math type is CUDNN_FMA_MATH (no tensor
//         cores, no TF32): like for like with our fp32 kernels.
//   tf32: CUDNN_TENSOR_OP_MATH, which lets cuDNN use TF32 tensor cores for
//         fp32 data on Ampere and later (what cuDNN and PyTorch do by default
//         for convolutions unless told otherwise).
// The algorithm is chosen by cudnnFind*Algorithm (cuDNN times them all) among
// those allowed by the math type; the label names the algorithm and its math.
// Convolution forward includes the bias (cudnnAddTensor), the weight gradient
// includes the bias gradient (cudnnConvolutionBackwardBias), as ours do.
// BatchNorm uses CUDNN_BATCHNORM_SPATIAL; ReLU cudnnActivation*; MaxPool
// cudnnPooling* (cuDNN's backward re-reads x and y instead of an arg-max).
// Upsample, concat, MSE and Adam have no cuDNN counterpart: our rows compare
// with the measured copy bandwidth instead.
//
// Every fp32 row stores its seconds per call in reference_seconds(), which our
// kernels' rows (registered after these) turn into x_cudnn = ours / cuDNN; the TF32
// rows store theirs in tf32_reference_seconds() for our cuda/tf32 rows.
#include <cudnn.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "gpu_common.hpp"

#define KILN_BENCH_CUDNN_CHECK(call)                                                                  \
  do {                                                                                                \
    const cudnnStatus_t kiln_status_ = (call);                                                        \
    if (kiln_status_ != CUDNN_STATUS_SUCCESS)                                                         \
      throw std::runtime_error(std::string(#call) + " failed: " + cudnnGetErrorString(kiln_status_)); \
  } while (0)

namespace kiln::bench::cudnn {

inline cudnnHandle_t handle() {
  static cudnnHandle_t h = [] {
    cudnnHandle_t created = nullptr;
    KILN_BENCH_CUDNN_CHECK(cudnnCreate(&created));
    KILN_BENCH_CUDNN_CHECK(cudnnSetStream(created, nullptr));  // the legacy default stream, as the timing
    return created;
  }();
  return h;
}

inline const float kOne = 1.0f, kZero = 0.0f;

// RAII holders for descriptors and device memory.
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(int n, int c, int h, int w) {
    KILN_BENCH_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
    KILN_BENCH_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
  }
  TensorDesc() { KILN_BENCH_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d)); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc(int k, int c, int h, int w) {
    KILN_BENCH_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
    KILN_BENCH_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k, c, h, w));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(int pad, cudnnMathType_t math) {
    KILN_BENCH_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
    KILN_BENCH_CUDNN_CHECK(
        cudnnSetConvolution2dDescriptor(d, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    KILN_BENCH_CUDNN_CHECK(cudnnSetConvolutionMathType(d, math));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};
struct Buffer {
  float* p = nullptr;
  std::size_t count = 0;
  // Uniform in [lo, hi), or zeros when lo == hi.
  explicit Buffer(std::size_t n, float lo = -1.0f, float hi = 1.0f, std::uint64_t seed = 0) : count(n) {
    KILN_BENCH_CUDA(cudaMalloc(reinterpret_cast<void**>(&p), std::max<std::size_t>(n, 1) * sizeof(float)));
    if (lo == hi)
      KILN_BENCH_CUDA(cudaMemset(p, 0, n * sizeof(float)));
    else
      KILN_BENCH_CUDA(cudaMemcpy(p, random_values(n, seed, lo, hi), n * sizeof(float), cudaMemcpyHostToDevice));
  }
  ~Buffer() { cudaFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

inline bool is_tensor_op(cudnnMathType_t m) {
  return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}
inline std::string math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH:
      return "default math";
    case CUDNN_TENSOR_OP_MATH:
      return "tensor-op (TF32)";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
      return "tensor-op, conversion allowed";
    case CUDNN_FMA_MATH:
      return "FMA (strict fp32)";
  }
  return "?";
}

// The fastest successful algorithm of a cudnnFind* result list.
template <class Perf>
const Perf& fastest(const std::vector<Perf>& perfs, int returned, bool strict, const char* what) {
  for (int i = 0; i < returned; ++i)
    if (perfs[i].status == CUDNN_STATUS_SUCCESS && !(strict && is_tensor_op(perfs[i].mathType))) return perfs[i];
  throw std::runtime_error(std::string("cuDNN found no usable algorithm for ") + what);
}

enum class Pass { fwd, dgrad, wgrad };

// One convolution pass at one shape and math mode, set up once (cuDNN's
// algorithm search included) and run many times.
struct ConvCase {
  ConvCase(int n, int cin, int cout, int k, int h, Pass pass, bool strict)
      : pass(pass), x(n, cin, h, h), y(n, cout, h, h), bias(1, cout, 1, 1), w(cout, cin, k, k),
        conv(k / 2, strict ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH), X(std::size_t(n) * cin * h * h),
        W(std::size_t(cout) * cin * k * k, -0.1f, 0.1f, 1), B(cout, -1.0f, 1.0f, 2),
        Y(std::size_t(n) * cout * h * h, 0, 0), dY(std::size_t(n) * cout * h * h, -1.0f, 1.0f, 3),
        dX(std::size_t(n) * cin * h * h, 0, 0), dW(std::size_t(cout) * cin * k * k, 0, 0), dB(cout, 0, 0) {
    cudnnHandle_t hd = handle();
    int max_count = 0, returned = 0;
    cudnnMathType_t chosen_math = CUDNN_DEFAULT_MATH;
    if (pass == Pass::fwd) {
      KILN_BENCH_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(hd, &max_count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perfs(max_count);
      KILN_BENCH_CUDNN_CHECK(
          cudnnFindConvolutionForwardAlgorithm(hd, x.d, w.d, conv.d, y.d, max_count, &returned, perfs.data()));
      const auto& best = fastest(perfs, returned, strict, "the forward convolution");
      fwd_algo = best.algo;
      workspace_bytes = best.memory;
      chosen_math = best.mathType;
      algo = static_cast<int>(best.algo);
    } else if (pass == Pass::dgrad) {
      KILN_BENCH_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(hd, &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perfs(max_count);
      KILN_BENCH_CUDNN_CHECK(
          cudnnFindConvolutionBackwardDataAlgorithm(hd, w.d, y.d, conv.d, x.d, max_count, &returned, perfs.data()));
      const auto& best = fastest(perfs, returned, strict, "the input gradient");
      dgrad_algo = best.algo;
      workspace_bytes = best.memory;
      chosen_math = best.mathType;
      algo = static_cast<int>(best.algo);
    } else {
      KILN_BENCH_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(hd, &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perfs(max_count);
      KILN_BENCH_CUDNN_CHECK(
          cudnnFindConvolutionBackwardFilterAlgorithm(hd, x.d, y.d, conv.d, w.d, max_count, &returned, perfs.data()));
      const auto& best = fastest(perfs, returned, strict, "the weight gradient");
      wgrad_algo = best.algo;
      workspace_bytes = best.memory;
      chosen_math = best.mathType;
      algo = static_cast<int>(best.algo);
    }
    // As PyTorch does: run with the math type the chosen algorithm was found with.
    KILN_BENCH_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.d, strict ? CUDNN_FMA_MATH : chosen_math));
    if (workspace_bytes) KILN_BENCH_CUDA(cudaMalloc(&workspace, workspace_bytes));
    label = "algo " + std::to_string(algo) + ", " + math_name(strict ? CUDNN_FMA_MATH : chosen_math) + ", workspace " +
            std::to_string(workspace_bytes >> 20) + " MiB";
  }
  ~ConvCase() { cudaFree(workspace); }

  void run() {
    cudnnHandle_t hd = handle();
    switch (pass) {
      case Pass::fwd:
        KILN_BENCH_CUDNN_CHECK(cudnnConvolutionForward(hd, &kOne, x.d, X.p, w.d, W.p, conv.d, fwd_algo, workspace,
                                                       workspace_bytes, &kZero, y.d, Y.p));
        KILN_BENCH_CUDNN_CHECK(cudnnAddTensor(hd, &kOne, bias.d, B.p, &kOne, y.d, Y.p));
        break;
      case Pass::dgrad:
        KILN_BENCH_CUDNN_CHECK(cudnnConvolutionBackwardData(hd, &kOne, w.d, W.p, y.d, dY.p, conv.d, dgrad_algo,
                                                            workspace, workspace_bytes, &kZero, x.d, dX.p));
        break;
      case Pass::wgrad:  // accumulate (beta = 1), as kiln's parameter gradients do
        KILN_BENCH_CUDNN_CHECK(cudnnConvolutionBackwardFilter(hd, &kOne, x.d, X.p, y.d, dY.p, conv.d, wgrad_algo,
                                                              workspace, workspace_bytes, &kOne, w.d, dW.p));
        KILN_BENCH_CUDNN_CHECK(cudnnConvolutionBackwardBias(hd, &kOne, y.d, dY.p, &kOne, bias.d, dB.p));
        break;
    }
  }

  Pass pass;
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  Buffer X, W, B, Y, dY, dX, dW, dB;
  cudnnConvolutionFwdAlgo_t fwd_algo{};
  cudnnConvolutionBwdDataAlgo_t dgrad_algo{};
  cudnnConvolutionBwdFilterAlgo_t wgrad_algo{};
  int algo = -1;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  std::string label;
};

// BatchNorm2d (spatial), ReLU and MaxPool2d(2) at one activation shape.
enum class Op { bn_train, bn_bwd, bn_eval, relu_fwd, relu_bwd, pool_fwd, pool_bwd };

struct ElementCase {
  ElementCase(int n, int c, int h, Op op)
      : op(op), x(n, c, h, h), half(n, c, h / 2, h / 2), X(std::size_t(n) * c * h * h),
        Y(std::size_t(n) * c * h * h, 0, 0), dY(std::size_t(n) * c * h * h, -1.0f, 1.0f, 5),
        dX(std::size_t(n) * c * h * h, 0, 0), scale(c, 0.5f, 1.5f, 6), shift(c, -1.0f, 1.0f, 7),
        mean(c, -0.1f, 0.1f, 8), var(c, 0.5f, 1.5f, 9), save_mean(c, 0, 0), save_invvar(c, 0, 0), dscale(c, 0, 0),
        dshift(c, 0, 0) {
    KILN_BENCH_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(bn.d, x.d, CUDNN_BATCHNORM_SPATIAL));
    KILN_BENCH_CUDNN_CHECK(cudnnCreateActivationDescriptor(&act));
    KILN_BENCH_CUDNN_CHECK(cudnnSetActivationDescriptor(act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    KILN_BENCH_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&pool));
    KILN_BENCH_CUDNN_CHECK(
        cudnnSetPooling2dDescriptor(pool, CUDNN_POOLING_MAX, CUDNN_NOT_PROPAGATE_NAN, 2, 2, 0, 0, 2, 2));
    // What the backward passes read: the saved batch statistics, ReLU's output, the pooled output.
    if (op == Op::bn_bwd) run_op(Op::bn_train);
    if (op == Op::relu_bwd) run_op(Op::relu_fwd);
    if (op == Op::pool_bwd) run_op(Op::pool_fwd);
  }
  ~ElementCase() {
    cudnnDestroyActivationDescriptor(act);
    cudnnDestroyPoolingDescriptor(pool);
  }
  ElementCase(const ElementCase&) = delete;
  ElementCase& operator=(const ElementCase&) = delete;

  void run() { run_op(op); }
  void run_op(Op which) {
    cudnnHandle_t hd = handle();
    constexpr double eps = 1e-5, momentum = 0.1;
    switch (which) {
      case Op::bn_train:
        KILN_BENCH_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(hd, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, x.d,
                                                                      X.p, x.d, Y.p, bn.d, scale.p, shift.p, momentum,
                                                                      mean.p, var.p, eps, save_mean.p, save_invvar.p));
        break;
      case Op::bn_bwd:  // parameter gradients accumulate (beta = 1), as kiln's do
        KILN_BENCH_CUDNN_CHECK(cudnnBatchNormalizationBackward(hd, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, &kOne, &kOne,
                                                               x.d, X.p, x.d, dY.p, x.d, dX.p, bn.d, scale.p, dscale.p,
                                                               dshift.p, eps, save_mean.p, save_invvar.p));
        break;
      case Op::bn_eval:
        KILN_BENCH_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(hd, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, x.d,
                                                                       X.p, x.d, Y.p, bn.d, scale.p, shift.p, mean.p,
                                                                       var.p, eps));
        break;
      case Op::relu_fwd:
        KILN_BENCH_CUDNN_CHECK(cudnnActivationForward(hd, act, &kOne, x.d, X.p, &kZero, x.d, Y.p));
        break;
      case Op::relu_bwd:
        KILN_BENCH_CUDNN_CHECK(
            cudnnActivationBackward(hd, act, &kOne, x.d, Y.p, x.d, dY.p, x.d, X.p, &kZero, x.d, dX.p));
        break;
      case Op::pool_fwd:
        KILN_BENCH_CUDNN_CHECK(cudnnPoolingForward(hd, pool, &kOne, x.d, X.p, &kZero, half.d, Y.p));
        break;
      case Op::pool_bwd:
        KILN_BENCH_CUDNN_CHECK(
            cudnnPoolingBackward(hd, pool, &kOne, half.d, Y.p, half.d, dY.p, x.d, X.p, &kZero, x.d, dX.p));
        break;
    }
  }

  Op op;
  TensorDesc x, half, bn;
  Buffer X, Y, dY, dX, scale, shift, mean, var, save_mean, save_invvar, dscale, dshift;
  cudnnActivationDescriptor_t act = nullptr;
  cudnnPoolingDescriptor_t pool = nullptr;
};

// The case of the benchmark being run, kept across Google Benchmark's repeated
// calls of one benchmark (cuDNN's algorithm search runs once), freed when the
// next benchmark starts.
template <class Case, class Make>
Case& current_case(const std::string& name, Make&& make) {
  static std::string current;
  static std::unique_ptr<Case> instance;
  if (current != name || !instance) {
    instance.reset();  // free the previous case's memory first
    instance = make();
    current = name;
  }
  return *instance;
}

template <class Case, class Make>
void add_row(const std::string& name, double work, bool is_flops, double peak, bool reference, Make make) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    try {
      Case& c = current_case<Case>(name, make);
      gpu_timed_loop(state, [&] { c.run(); });
      if constexpr (std::is_same_v<Case, ConvCase>) state.SetLabel(c.label);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
    if (is_flops)
      set_flops(state, work, peak);
    else
      set_bytes(state, work, peak);
    if (state.iterations() > 0) {
      const double seconds = last_loop_seconds() / static_cast<double>(state.iterations());
      if (reference)
        reference_seconds()[op_shape_key(name)] = seconds;
      else  // cuDNN TF32: the reference of our TF32 rows
        tf32_reference_seconds()[op_shape_key(name)] = seconds;
    }
  });
  configure_gpu_row(b);
}

inline void register_benchmarks(const GpuFacts& f) {
  for (const ShapeSet& set : unet_shape_sets()) {
    const int n = set.n;
    for (std::size_t i = 0; i < set.levels.size(); ++i) {
      const auto [c, h] = set.levels[i];
      const bool bottleneck = i + 1 == set.levels.size();
      // Convolutions: 3x3 C->C and (not at the bottleneck) the 1x1 reduce 2C->C, which runs
      // before the upsample, on the level below's H/2 grid (as layer_cases.hpp).
      for (int k : {3, 1}) {
        if (k == 1 && bottleneck) continue;
        const int cin = k == 3 ? c : 2 * c, cout = c, hk = k == 3 ? h : h / 2;
        const std::string kname = "conv" + std::to_string(k) + "x" + std::to_string(k);
        const double flops = conv_flops(n, cin, cout, k, hk, hk);
        for (auto [pass, pname] : {std::pair{Pass::fwd, "_fwd"}, {Pass::dgrad, "_dgrad"}, {Pass::wgrad, "_wgrad"}})
          for (bool strict : {true, false}) {
            const std::string name = kname + pname + "/cudnn/" + (strict ? "fp32/" : "tf32/") + shape_tag(cin, hk, n);
            add_row<ConvCase>(name, flops, true, strict ? f.fp32_flops : f.tf32_flops, strict,
                              [=] { return std::make_unique<ConvCase>(n, cin, cout, k, hk, pass, strict); });
          }
      }
      const double bytes = 4.0 * n * c * h * h;
      const std::string shape = shape_tag(c, h, n);
      struct Row {
        const char* op;
        Op which;
        double bytes;
      };
      std::vector<Row> rows = {{"batchnorm_fwd_train", Op::bn_train, 2 * bytes},
                               {"batchnorm_bwd", Op::bn_bwd, 3 * bytes},
                               {"batchnorm_fwd_eval", Op::bn_eval, 2 * bytes},
                               {"relu_fwd", Op::relu_fwd, 2 * bytes},
                               {"relu_bwd", Op::relu_bwd, 3 * bytes}};
      if (!bottleneck) {  // same byte counts as our rows (compulsory traffic incl. our arg-max)
        rows.push_back({"maxpool_fwd", Op::pool_fwd, bytes * 1.5});
        rows.push_back({"maxpool_bwd", Op::pool_bwd, bytes * 1.5});
      }
      for (const Row& r : rows)
        add_row<ElementCase>(std::string(r.op) + "/cudnn/fp32/" + shape, r.bytes, false, f.copy_bytes_per_s, true,
                             [=] { return std::make_unique<ElementCase>(n, c, h, r.which); });
    }
  }
}

}  // namespace kiln::bench::cudnn
