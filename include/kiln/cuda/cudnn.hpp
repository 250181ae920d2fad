#pragma once
// kiln::cudnn: a small RAII wrapper over cuDNN, used as the oracle of the gpu tests and as the
// unit of measurement of the benchmarks (docs/benchmarks.md). Only under nvcc with KILN_WITH_CUDNN
// defined (CMake: -DKILN_CUDNN=ON); otherwise this header declares nothing and kiln::cudnn::available
// is false.
//
// Covered: convolution forward (+ bias), backward data, backward filter and bias (accumulating like
// kiln's layers), batchnorm training forward / backward (spatial), max pooling forward.
// Uses cuDNN's legacy descriptor API (cudnnConvolutionForward & co.): deprecated in cuDNN 9 but
// supported there (it runs on the graph engines); enough for an oracle.
//
// Math mode is explicit: cuDNN may use TF32 tensor cores for fp32 convolutions on Ampere and later
// unless told not to. MathMode::fp32 (CUDNN_FMA_MATH: FMA only, no TF32/tensor cores) is the
// like-for-like comparison with kiln's fp32 kernels and the default; MathMode::tf32
// (CUDNN_TENSOR_OP_MATH, TF32 allowed) is what PyTorch gets with allow_tf32 = True;
// MathMode::default_math is CUDNN_DEFAULT_MATH, which on A100 and later PERMITS TF32 tensor-core
// math for fp32 data (a silent TF32-vs-fp32 comparison); NVIDIA_TF32_OVERRIDE=0 in the environment
// forbids TF32 whatever the mode. Conv2d::math_mode() and math_mode_name() say which mode a
// result came from.
#include "kiln/gpu/config.hpp"

namespace kiln::cudnn {
#if KILN_GPU_REAL && defined(KILN_WITH_CUDNN)
inline constexpr bool available = true;
#else
inline constexpr bool available = false;
#endif
}  // namespace kiln::cudnn

#if KILN_GPU_REAL && defined(KILN_WITH_CUDNN)

#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "kiln/core/conv_shape.hpp"
#include "kiln/ops/batchnorm.hpp"
#include "kiln/ops/pooling.hpp"
#include "kiln/gpu/gpu.hpp"

namespace kiln::cudnn {

// A cuDNN failure: names the call and cuDNN's error string (a kiln::gpu::Error, so callers
// handling GPU failures catch it too).
struct Error : kiln::gpu::Error {
  using kiln::gpu::Error::Error;
};

inline void check(cudnnStatus_t status, const char* what) {
  if (status != CUDNN_STATUS_SUCCESS)
    throw Error(std::string("kiln::cudnn: ") + what + " failed: " + cudnnGetErrorString(status));
}

enum class MathMode { fp32, tf32, default_math };

inline cudnnMathType_t to_cudnn(MathMode m) {
  switch (m) {
    case MathMode::fp32:
      return CUDNN_FMA_MATH;
    case MathMode::tf32:
      return CUDNN_TENSOR_OP_MATH;
    case MathMode::default_math:
      return CUDNN_DEFAULT_MATH;
  }
  return CUDNN_FMA_MATH;
}
inline const char* math_mode_name(MathMode m) {
  switch (m) {
    case MathMode::fp32:
      return "CUDNN_FMA_MATH (fp32, no TF32)";
    case MathMode::tf32:
      return "CUDNN_TENSOR_OP_MATH (TF32 allowed)";
    case MathMode::default_math:
      return "CUDNN_DEFAULT_MATH (TF32 permitted on sm_80+)";
  }
  return "?";
}

// Owns a cudnnHandle_t bound to a stream (default: the legacy default stream).
class Handle {
 public:
  explicit Handle(kiln::gpu::stream_handle stream = nullptr) {
    check(cudnnCreate(&handle_), "cudnnCreate");
    set_stream(stream);
  }
  ~Handle() {
    if (handle_) cudnnDestroy(handle_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      if (handle_) cudnnDestroy(handle_);
      handle_ = std::exchange(o.handle_, nullptr);
    }
    return *this;
  }
  void set_stream(kiln::gpu::stream_handle stream) { check(cudnnSetStream(handle_, stream), "cudnnSetStream"); }
  cudnnHandle_t get() const { return handle_; }
  operator cudnnHandle_t() const { return handle_; }

 private:
  cudnnHandle_t handle_ = nullptr;
};

// A float NCHW tensor descriptor.
class TensorDesc {
 public:
  TensorDesc(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
    check(cudnnCreateTensorDescriptor(&d_), "cudnnCreateTensorDescriptor");
    check(cudnnSetTensor4dDescriptor(d_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, static_cast<int>(n), static_cast<int>(c),
                                     static_cast<int>(h), static_cast<int>(w)),
          "cudnnSetTensor4dDescriptor");
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  operator cudnnTensorDescriptor_t() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

// A float filter descriptor [K (out), C (in), R, S].
class FilterDesc {
 public:
  FilterDesc(std::int64_t k, std::int64_t c, std::int64_t r, std::int64_t s) {
    check(cudnnCreateFilterDescriptor(&d_), "cudnnCreateFilterDescriptor");
    check(cudnnSetFilter4dDescriptor(d_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, static_cast<int>(k), static_cast<int>(c),
                                     static_cast<int>(r), static_cast<int>(s)),
          "cudnnSetFilter4dDescriptor");
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d_); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  operator cudnnFilterDescriptor_t() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

// Stride 1, padding `pad`, cross-correlation (what PyTorch and kiln call convolution), fp32.
class ConvDesc {
 public:
  ConvDesc(int pad, MathMode math) {
    check(cudnnCreateConvolutionDescriptor(&d_), "cudnnCreateConvolutionDescriptor");
    check(cudnnSetConvolution2dDescriptor(d_, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
          "cudnnSetConvolution2dDescriptor");
    check(cudnnSetConvolutionMathType(d_, to_cudnn(math)), "cudnnSetConvolutionMathType");
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  operator cudnnConvolutionDescriptor_t() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

// Device scratch memory that grows on demand.
class Workspace {
 public:
  Workspace() = default;
  ~Workspace() {
    if (p_) (void)cudaFree(p_);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  void* get(std::size_t bytes) {
    if (bytes > size_) {
      if (p_) (void)cudaFree(p_);
      p_ = kiln::gpu::device_malloc(bytes);
      size_ = bytes;
    }
    return p_;
  }

 private:
  void* p_ = nullptr;
  std::size_t size_ = 0;
};

// A convolution of kiln's geometry (ConvShape: stride 1, padding K/2) with cuDNN. The algorithms
// are cuDNN's heuristic first choice (cudnnGet*Algorithm_v7) for the math mode.
class Conv2d {
 public:
  Conv2d(Handle& handle, const ConvShape& s, MathMode math = MathMode::fp32)
      : handle_(handle), s_(s), math_(math), x_(s.n, s.c_in, s.h, s.w), y_(s.n, s.c_out, s.h, s.w),
        bias_(1, s.c_out, 1, 1), w_(s.c_out, s.c_in, s.k, s.k), conv_(static_cast<int>(s.k / 2), math) {
    int returned = 0;
    cudnnConvolutionFwdAlgoPerf_t fwd{};
    check(cudnnGetConvolutionForwardAlgorithm_v7(handle_, x_, w_, conv_, y_, 1, &returned, &fwd),
          "cudnnGetConvolutionForwardAlgorithm_v7");
    fwd_ = fwd.algo;
    cudnnConvolutionBwdDataAlgoPerf_t data{};
    check(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle_, w_, y_, conv_, x_, 1, &returned, &data),
          "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    data_ = data.algo;
    cudnnConvolutionBwdFilterAlgoPerf_t filter{};
    check(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle_, x_, y_, conv_, w_, 1, &returned, &filter),
          "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    filter_ = filter.algo;
  }

  MathMode math_mode() const { return math_; }
  cudnnConvolutionFwdAlgo_t forward_algorithm() const { return fwd_; }

  // y = conv(x, w) (+ b when b is not null).
  void forward(const float* x, const float* w, const float* b, float* y) {
    const float one = 1.0f, zero = 0.0f;
    std::size_t bytes = 0;
    check(cudnnGetConvolutionForwardWorkspaceSize(handle_, x_, w_, conv_, y_, fwd_, &bytes),
          "cudnnGetConvolutionForwardWorkspaceSize");
    check(cudnnConvolutionForward(handle_, &one, x_, x, w_, w, conv_, fwd_, workspace_.get(bytes), bytes, &zero, y_, y),
          "cudnnConvolutionForward");
    if (b) check(cudnnAddTensor(handle_, &one, bias_, b, &one, y_, y), "cudnnAddTensor (bias)");
  }
  // dx = conv_transpose(dy, w) (overwritten).
  void backward_data(const float* w, const float* dy, float* dx) {
    const float one = 1.0f, zero = 0.0f;
    std::size_t bytes = 0;
    check(cudnnGetConvolutionBackwardDataWorkspaceSize(handle_, w_, y_, conv_, x_, data_, &bytes),
          "cudnnGetConvolutionBackwardDataWorkspaceSize");
    check(cudnnConvolutionBackwardData(handle_, &one, w_, w, y_, dy, conv_, data_, workspace_.get(bytes), bytes, &zero,
                                       x_, dx),
          "cudnnConvolutionBackwardData");
  }
  // dw += dL/dw; db += dL/db when db is not null (accumulating, like kiln's layers).
  void backward_filter(const float* x, const float* dy, float* dw, float* db) {
    const float one = 1.0f;
    std::size_t bytes = 0;
    check(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle_, x_, y_, conv_, w_, filter_, &bytes),
          "cudnnGetConvolutionBackwardFilterWorkspaceSize");
    check(cudnnConvolutionBackwardFilter(handle_, &one, x_, x, y_, dy, conv_, filter_, workspace_.get(bytes), bytes,
                                         &one, w_, dw),
          "cudnnConvolutionBackwardFilter");
    if (db) check(cudnnConvolutionBackwardBias(handle_, &one, y_, dy, &one, bias_, db), "cudnnConvolutionBackwardBias");
  }

 private:
  Handle& handle_;
  ConvShape s_;
  MathMode math_;
  TensorDesc x_, y_, bias_;
  FilterDesc w_;
  ConvDesc conv_;
  cudnnConvolutionFwdAlgo_t fwd_{};
  cudnnConvolutionBwdDataAlgo_t data_{};
  cudnnConvolutionBwdFilterAlgo_t filter_{};
  Workspace workspace_;
};

// BatchNorm2d training forward (spatial): batch statistics, running statistics updated with
// momentum a.momentum (cuDNN uses the unbiased variance for them, as PyTorch and kiln do);
// save_mean/save_invstd receive the batch mean and 1/sqrt(var + eps).
inline void batchnorm_forward_training(Handle& handle, const BatchNormArgs& a, const float* x, const float* weight,
                                       const float* bias, float* running_mean, float* running_var, float* save_mean,
                                       float* save_invstd, float* y) {
  const float one = 1.0f, zero = 0.0f;
  const TensorDesc data(a.n, a.c, a.hw, 1), param(1, a.c, 1, 1);
  check(cudnnBatchNormalizationForwardTraining(handle, CUDNN_BATCHNORM_SPATIAL, &one, &zero, data, x, data, y, param,
                                               weight, bias, static_cast<double>(a.momentum), running_mean, running_var,
                                               static_cast<double>(a.eps), save_mean, save_invstd),
        "cudnnBatchNormalizationForwardTraining");
}

// BatchNorm2d training backward: dx overwritten, dweight and dbias accumulated (as kiln's layers).
inline void batchnorm_backward(Handle& handle, const BatchNormArgs& a, const float* x, const float* weight,
                               const float* save_mean, const float* save_invstd, const float* dy, float* dx,
                               float* dweight, float* dbias) {
  const float one = 1.0f, zero = 0.0f;
  const TensorDesc data(a.n, a.c, a.hw, 1), param(1, a.c, 1, 1);
  check(cudnnBatchNormalizationBackward(handle, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &one, data, x, data, dy,
                                        data, dx, param, weight, dweight, dbias, static_cast<double>(a.eps), save_mean,
                                        save_invstd),
        "cudnnBatchNormalizationBackward");
}

// Max pooling forward, window = stride = a.size, no padding (NaN propagates: CUDNN_PROPAGATE_NAN).
inline void maxpool2d_forward(Handle& handle, const PoolArgs& a, const float* x, float* y) {
  const float one = 1.0f, zero = 0.0f;
  const TensorDesc in(a.n, a.c, a.h, a.w), out(a.n, a.c, a.h / a.size, a.w / a.size);
  cudnnPoolingDescriptor_t pool = nullptr;
  check(cudnnCreatePoolingDescriptor(&pool), "cudnnCreatePoolingDescriptor");
  const int size = static_cast<int>(a.size);
  cudnnStatus_t status =
      cudnnSetPooling2dDescriptor(pool, CUDNN_POOLING_MAX, CUDNN_PROPAGATE_NAN, size, size, 0, 0, size, size);
  if (status == CUDNN_STATUS_SUCCESS) status = cudnnPoolingForward(handle, pool, &one, in, x, &zero, out, y);
  cudnnDestroyPoolingDescriptor(pool);
  check(status, "cudnnPoolingForward");
}

}  // namespace kiln::cudnn

#endif  // KILN_GPU_REAL && KILN_WITH_CUDNN
