#pragma once
// The run-time geometry of a stride-1, "same"-padded convolution, shared by
// the CPU and CUDA implementations.
#include <cstdint>

namespace kiln {

struct ConvShape {
  std::int64_t n, c_in, c_out, h, w, k;
  constexpr std::int64_t pad() const { return k / 2; }
  constexpr std::int64_t hw() const { return h * w; }
  constexpr std::int64_t patch() const { return c_in * k * k; }  // rows of the im2col matrix
};

// What a stride-1 convolution's training forward leaves in its workspace for the backward of the
// same step. Conv2d asks Backend::conv2d_forward_kept(shape, workspace) right after its forward and
// hands the answer to Backend::conv2d_backward; nothing else writes a trained layer's workspace in
// between. x_bf16_copy: Backend<Cuda> under MathMode::bf16 wrote x's NHWC BF16 copy there, and its
// weight gradient reads it instead of copying x again. tf32_dgrad_packing: Backend<Cuda> under
// MathMode::tf32 packed the input gradient's weights there with the forward's (one launch), and its
// input gradient runs on them without packing. bf16_copy_and_dgrad_packing: both under
// MathMode::bf16 (x's copy, and the input gradient's BF16 packing written with the forward's). The
// CPU keeps nothing.
enum class ConvKept : std::uint8_t { nothing, x_bf16_copy, tf32_dgrad_packing, bf16_copy_and_dgrad_packing };

}  // namespace kiln

namespace kiln {

// A convolution with stride `stride` and zero padding K/2 (K odd), as
// torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=k//2): the output is
// ho() x wo() = floor((h - 1) / stride) + 1 per side. The fast stride-1 paths use ConvShape;
// this one is served by the general kernels (cpu/conv2d_strided.hpp, kernels/conv2d_strided.cuh).
struct StridedConvShape {
  std::int64_t n, c_in, c_out, h, w, k, stride;
  constexpr std::int64_t pad() const { return k / 2; }
  constexpr std::int64_t ho() const { return h == 0 ? 0 : (h + 2 * pad() - k) / stride + 1; }
  constexpr std::int64_t wo() const { return w == 0 ? 0 : (w + 2 * pad() - k) / stride + 1; }
};

}  // namespace kiln
