#pragma once
// The activations' and Dropout's arguments, Dropout's counter-based mask, and the element-wise
// ops of kiln::sub / kiln::mul: shared by Backend<Cpu> (cpu/activation.hpp) and the CUDA kernels
// (kernels/activation.cuh).
#include <cstdint>

#include "kiln/ops/host_device.hpp"

namespace kiln {

enum class ActivationKind { leaky_relu, silu, sigmoid, tanh };

struct ActivationArgs {
  ActivationKind kind = ActivationKind::sigmoid;
  std::int64_t numel = 0;
  float negative_slope = 0.01f;  // LeakyReLU only
};

// Dropout: element i of the `step`-th training forward of a layer with `seed` is kept when
// dropout_uniform(seed, step, i) >= p, and then scaled by 1 / (1 - p) (PyTorch's "inverted"
// dropout). The mask is a pure function of (seed, step, i): the CPU and every GPU draw the
// same mask, and backward recomputes it instead of storing it.
struct DropoutArgs {
  std::int64_t numel = 0;
  float p = 0.5f;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
};

// splitmix64's finaliser: a bijective 64-bit mix.
KILN_HD inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 bits (exactly representable floats, so `u >= p` is decided
// identically on every device), from the counter (seed, step, index).
KILN_HD inline float dropout_uniform(std::uint64_t seed, std::uint64_t step, std::uint64_t index) {
  const std::uint64_t stream = mix64(seed ^ mix64(step + 0x9E3779B97F4A7C15ull));
  const std::uint64_t z = mix64(stream + (index + 1) * 0x9E3779B97F4A7C15ull);
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

// The scale of the kept elements: 1 / (1 - p); 0 when p == 1 (everything dropped).
KILN_HD inline float dropout_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

// The binary element-wise operations of kiln::sub / kiln::mul (add has its own op).
enum class ElementwiseOp { sub, mul };

}  // namespace kiln
