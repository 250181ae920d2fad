#pragma once
// Operand rounding of the CPU convolutions: the numerics of Backend<Cuda>'s tensor-core math modes
// (kiln/cuda/math_mode.hpp), simulated on the CPU, a process-wide setting (default none).
//   ConvRounding::none  the fp32 convolutions, untouched (one branch per call).
//   ConvRounding::bf16  as MathMode::bf16: the K = 1 and 3 convolutions (forward, input gradient,
//                       weight gradient) round their operands (x or dy, and the weights) to bfloat16,
//                       to nearest even like cvt.rn.bf16x2.f32, then run the usual fp32 GEMMs on
//                       the rounded copies. The bias and its gradient stay fp32 (from the unrounded dy).
//   ConvRounding::tf32  as MathMode::tf32 on the mma.sync kernels (conv2d_mma*.cuh): the weights
//                       rounded to TF32 to nearest, ties away from zero (cvt.rna.tf32.f32); x and dy
//                       truncated to TF32 (the tensor core ignores their 13 low mantissa bits);
//                       where CUDA falls back to the wmma implicit GEMM (a weight gradient with
//                       H*W % 4 != 0) it rounds x and dy to nearest instead.
// Same rounded operands as the CUDA kernels, fp32 accumulation in another order: the products
// agree exactly, the sums within fp32 accumulation error. Slower than fp32, never faster: a
// rounded copy of each operand per pass (thread-local buffers that only grow).
//   kiln::cpu::set_conv_rounding(kiln::cpu::ConvRounding::bf16);
//   { kiln::cpu::ConvRoundingScope scope(kiln::cpu::ConvRounding::bf16); ... }   // restored on exit
#include <atomic>
#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "kiln/core/conv_shape.hpp"
#include "kiln/core/error.hpp"

namespace kiln::cpu {

enum class ConvRounding { none, tf32, bf16 };

// The setting itself (one object per process: a function-local static of an inline function).
inline std::atomic<ConvRounding>& conv_rounding_setting() {
  static std::atomic<ConvRounding> mode{ConvRounding::none};
  return mode;
}

inline void set_conv_rounding(ConvRounding mode) { conv_rounding_setting().store(mode); }
inline ConvRounding conv_rounding() { return conv_rounding_setting().load(std::memory_order_relaxed); }

// "fp32" (none), "tf32" or "bf16", the names of kiln-train's --precision.
inline const char* conv_rounding_name(ConvRounding mode) {
  return mode == ConvRounding::tf32 ? "tf32" : mode == ConvRounding::bf16 ? "bf16" : "fp32";
}
inline ConvRounding parse_conv_rounding(const std::string& text) {
  if (text == "fp32") return ConvRounding::none;
  if (text == "tf32") return ConvRounding::tf32;
  if (text == "bf16") return ConvRounding::bf16;
  KILN_CHECK(false, "unknown convolution precision '", text, "': use fp32, tf32 or bf16");
  return ConvRounding::none;
}

// The convolutions the CUDA tensor-core modes take: K = 1 and 3 (all CPU ConvShapes are stride 1).
inline bool rounds_operands(ConvRounding mode, const ConvShape& s) {
  return mode != ConvRounding::none && (s.k == 1 || s.k == 3);
}

// x rounded to bfloat16 (to nearest, ties to even; NaN kept quiet; overflow gives inf), as a float:
// the bits of the emulator's __float2bfloat16_rn.
inline float round_bf16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::bit_cast<float>((u | 0x00400000u) & 0xffff0000u);
  return std::bit_cast<float>((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}
// x rounded to TF32 (10 mantissa bits; to nearest, ties away from zero; NaN and inf unchanged):
// cvt.rna.tf32.f32 as the emulator's kiln::gpu::mma::float_to_tf32.
inline float round_tf32(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;
  return std::bit_cast<float>((u + 0x1000u) & 0xffffe000u);
}
// What a tensor core multiplies when given fp32 bits as a TF32 operand: the low 13 bits dropped.
inline float truncate_tf32(float x) { return std::bit_cast<float>(std::bit_cast<std::uint32_t>(x) & 0xffffe000u); }

// Which operand a copy is for: the weights are rounded to nearest under TF32, x and dy truncated.
enum class ConvOperand { weight, activation };

// out[i] = the operand in[i] as the mode's tensor core sees it (mode != none), in parallel.
inline void round_operand(ConvRounding mode, ConvOperand what, const float* in, float* out, std::int64_t n) {
  if (mode == ConvRounding::bf16) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (std::int64_t i = 0; i < n; ++i) out[i] = round_bf16(in[i]);
  } else if (what == ConvOperand::weight) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (std::int64_t i = 0; i < n; ++i) out[i] = round_tf32(in[i]);
  } else {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (std::int64_t i = 0; i < n; ++i) out[i] = truncate_tf32(in[i]);
  }
}

// A rounded copy of an operand in a thread-local buffer (slot: 0 x, 1 w, 2 dy), valid until the
// same slot is rounded again on this thread.
inline const float* rounded_copy(int slot, ConvRounding mode, ConvOperand what, const float* in, std::int64_t n) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& b = buffers[slot];
  if (b.size() < static_cast<std::size_t>(n)) b.resize(static_cast<std::size_t>(n));
  round_operand(mode, what, in, b.data(), n);
  return b.data();
}

// Sets the rounding for the scope's lifetime and restores the previous one.
class ConvRoundingScope {
 public:
  explicit ConvRoundingScope(ConvRounding mode) : saved_(conv_rounding()) { set_conv_rounding(mode); }
  ~ConvRoundingScope() { set_conv_rounding(saved_); }
  ConvRoundingScope(const ConvRoundingScope&) = delete;
  ConvRoundingScope& operator=(const ConvRoundingScope&) = delete;

 private:
  ConvRounding saved_;
};

}  // namespace kiln::cpu
