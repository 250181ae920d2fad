#pragma once
// Every (output pixel, input pixel, weight) triple of a stride-1 "same" convolution, for the tests'
// reference loops in double: visit(y, x, w) gets the flat NCHW indices into y [N, Cout, H, W],
// x [N, Cin, H, W] and w [Cout, Cin, K, K]. The forward adds x * w into y, the input gradient
// dy * w into dx, the weight gradient dy * x into dw: one loop nest, three sums.
#include <cstddef>
#include <cstdint>

#include "kiln/core/conv_shape.hpp"

namespace kiln_emu_test {

template <class Visit>
void for_each_conv_tap(const kiln::ConvShape& s, Visit&& visit) {
  const std::int64_t K = s.k, P = K / 2, H = s.h, W = s.w;
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j)
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < K; ++u)
              for (std::int64_t v = 0; v < K; ++v) {
                const std::int64_t ii = i + u - P, jj = j + v - P;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                visit(static_cast<std::size_t>(((n * s.c_out + o) * H + i) * W + j),
                      static_cast<std::size_t>(((n * s.c_in + c) * H + ii) * W + jj),
                      static_cast<std::size_t>(((o * s.c_in + c) * K + u) * K + v));
              }
}

}  // namespace kiln_emu_test
