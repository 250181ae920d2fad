#pragma once
// The math mode of Backend<Cuda>'s convolutions, a process-wide setting (default strict fp32):
//   MathMode::strict_fp32  fp32 multiply-adds, the reference (like cuDNN's CUDNN_FMA_MATH): the
//                          SIMT implicit GEMMs of kernels/conv2d_simt*.cuh for K = 1 and 3, the
//                          direct kernels of kernels/conv2d.cuh elsewhere (other K, no workspace).
//   MathMode::tf32         the implicit-GEMM tensor-core kernels of kernels/conv2d_igemm.cuh for
//                          K = 1 and 3 (other kernel sizes keep the strict kernels): operands rounded
//                          to TF32 (10 mantissa bits), fp32 accumulation (like CUDNN_TENSOR_OP_MATH
//                          or PyTorch's allow_tf32). Relative errors around 1e-3 instead of 1e-6.
//   MathMode::bf16         kernels/conv2d_mma*.cuh on BF16 tensor cores (m16n8k16, 7 mantissa
//                          bits, twice TF32's peak) for K = 1 and 3: weights packed as BF16; the
//                          forward, the input gradient and the weight gradient read x / dy from
//                          NHWC BF16 copies in the layer's workspace (conv2d_mma_bf16.cuh,
//                          conv2d_mma_bf16_wgrad.cuh; x's made once, by the forward); with a workspace planned under
//                          another mode the kernels round them to BF16 in registers; all to nearest even, fp32
//                          accumulation; master weights, BN statistics and losses stay fp32 (like PyTorch's autocast to
//                          bfloat16). Normalised errors around 2e-3.
// Set it before planning a network: Conv2d asks for its workspace (the TF32 weight gradient's
// split-K partial sums) when it is planned; with a smaller workspace the TF32 weight gradient
// runs unsplit (correct, fewer blocks).
//   kiln::cuda::set_math_mode(kiln::cuda::MathMode::tf32);       // or Backend<Cuda>::set_math_mode
//   { kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32); ... }   // restored on exit
#include <atomic>
#include <string>

#include "kiln/core/error.hpp"

namespace kiln::cuda {

enum class MathMode { strict_fp32, tf32, bf16 };

namespace detail {
inline std::atomic<MathMode>& math_mode_setting() {
  static std::atomic<MathMode> mode{MathMode::strict_fp32};
  return mode;
}
}  // namespace detail

inline void set_math_mode(MathMode mode) { detail::math_mode_setting().store(mode); }
inline MathMode math_mode() { return detail::math_mode_setting().load(); }

inline const char* math_mode_name(MathMode mode) {
  return mode == MathMode::tf32 ? "tf32" : mode == MathMode::bf16 ? "bf16" : "fp32";
}
// Whether the mode runs the K = 1 and 3 convolutions on tensor cores (tf32 or bf16).
inline bool tensor_core_mode(MathMode mode) { return mode != MathMode::strict_fp32; }

// "fp32", "tf32" or "bf16" (command lines, benchmark names); anything else is an error saying what is accepted.
inline MathMode parse_math_mode(const std::string& text) {
  if (text == "fp32") return MathMode::strict_fp32;
  if (text == "tf32") return MathMode::tf32;
  if (text == "bf16") return MathMode::bf16;
  KILN_CHECK(false, "unknown CUDA math mode '", text, "': use fp32 (strict, the default), tf32 or bf16 (tensor cores)");
  return MathMode::strict_fp32;
}

// Sets the mode for the scope's lifetime and restores the previous one.
class MathModeScope {
 public:
  explicit MathModeScope(MathMode mode) : saved_(math_mode()) { set_math_mode(mode); }
  ~MathModeScope() { set_math_mode(saved_); }
  MathModeScope(const MathModeScope&) = delete;
  MathModeScope& operator=(const MathModeScope&) = delete;

 private:
  MathMode saved_;
};

}  // namespace kiln::cuda
