#pragma once
// Backend<Cpu>: the CPU implementations behind every layer (OpenMP threads).
#include <cstddef>

#include "kiln/core/backend.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/cpu/conv2d.hpp"
#include "kiln/cpu/elementwise.hpp"

namespace kiln {

template <>
struct Backend<Cpu> {
  using T = Tensor<float, Cpu>;

  // ---- Conv2d -------------------------------------------------------------
  static std::size_t conv2d_workspace_floats(const ConvShape& s) { return cpu::conv2d_workspace_floats(s); }
  static void conv2d_forward(const ConvShape& s, const T& x, const T& w, const T& b, T& y, T& workspace) {
    cpu::conv2d_forward(s, x.data(), w.data(), b.empty() ? nullptr : b.data(), y.data(), workspace.data());
  }
  // dx may be empty (not wanted); dw and db accumulate.
  static void conv2d_backward(const ConvShape& s, const T& x, const T& w, const T& dy, T& dx, T& dw, T& db,
                              T& workspace) {
    cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), dx.empty() ? nullptr : dx.data(), dw.data(),
                         db.empty() ? nullptr : db.data(), workspace.data());
  }

  // ---- ReLU, add, channel concat ---------------------------------------------
  static void relu_forward(const T& x, T& y) { cpu::relu_forward(x.data(), y.data(), static_cast<std::int64_t>(x.numel())); }
  static void relu_backward(const T& y, const T& dy, T& dx) {
    cpu::relu_backward(y.data(), dy.data(), dx.data(), static_cast<std::int64_t>(y.numel()));
  }
  static void add(const T& a, const T& b, T& out) {
    cpu::add(a.data(), b.data(), out.data(), static_cast<std::int64_t>(a.numel()));
  }
  static void concat_channels(const T& a, const T& b, T& y) {
    cpu::concat_channels(a.data(), a.shape().c(), b.data(), b.shape().c(), y.data(), a.shape().n(),
                         a.shape().h() * a.shape().w());
  }
  static void split_channels(const T& dy, T& da, T& db) {
    cpu::split_channels(dy.data(), da.data(), da.shape().c(), db.data(), db.shape().c(), dy.shape().n(),
                        dy.shape().h() * dy.shape().w());
  }
};

}  // namespace kiln
