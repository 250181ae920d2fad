#pragma once
// Element-wise tensor arithmetic on any device (CPU loops or CUDA kernels through Backend<D>):
//   kiln::add(a, b, out)          out = a + b         (torch.add)
//   kiln::sub(a, b, out)          out = a - b         (torch.sub)
//   kiln::mul(a, b, out)          out = a * b         (torch.mul, element-wise)
//   kiln::scale(a, s, out)        out = a * s         (torch.mul by a scalar)
//   kiln::affine(a, s, t, out)    out = a * s + t
//   kiln::clamp(a, lo, hi, out)   out = min(max(a, lo), hi), NaN stays NaN (torch.clamp)
// The operands must have the same shape (no broadcasting) and live on the same device; `out`
// must already have that shape and may be one of the inputs (in place). The returning forms
// (kiln::added(a, b), kiln::scaled(a, s), kiln::clamped(a, lo, hi)) allocate a new owning tensor.
#include "kiln/core/backend.hpp"
#include "kiln/core/error.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/ops/activation.hpp"  // ElementwiseOp

namespace kiln {

namespace detail {
template <class D>
void check_same_shape(const char* op, const Tensor<float, D>& a, const Tensor<float, D>& out) {
  KILN_CHECK(a.shape() == out.shape(), "kiln::", op, ": operand ", a.shape().str(), " and output ", out.shape().str(),
             " differ in shape (no broadcasting)");
}
}  // namespace detail

template <class D>
void add(const Tensor<float, D>& a, const Tensor<float, D>& b, Tensor<float, D>& out) {
  detail::check_same_shape("add", a, b);
  detail::check_same_shape("add", a, out);
  Backend<D>::add(a, b, out);
}
template <class D>
void sub(const Tensor<float, D>& a, const Tensor<float, D>& b, Tensor<float, D>& out) {
  detail::check_same_shape("sub", a, b);
  detail::check_same_shape("sub", a, out);
  Backend<D>::elementwise_binary(ElementwiseOp::sub, a, b, out);
}
template <class D>
void mul(const Tensor<float, D>& a, const Tensor<float, D>& b, Tensor<float, D>& out) {
  detail::check_same_shape("mul", a, b);
  detail::check_same_shape("mul", a, out);
  Backend<D>::elementwise_binary(ElementwiseOp::mul, a, b, out);
}
template <class D>
void affine(const Tensor<float, D>& a, float s, float t, Tensor<float, D>& out) {
  detail::check_same_shape("affine", a, out);
  Backend<D>::affine(a, s, t, out);
}
template <class D>
void scale(const Tensor<float, D>& a, float s, Tensor<float, D>& out) {
  detail::check_same_shape("scale", a, out);
  Backend<D>::affine(a, s, 0.0f, out);
}
template <class D>
void clamp(const Tensor<float, D>& a, float lo, float hi, Tensor<float, D>& out) {
  KILN_CHECK(!(hi < lo), "kiln::clamp: lo ", lo, " is above hi ", hi);
  detail::check_same_shape("clamp", a, out);
  Backend<D>::clamp(a, lo, hi, out);
}

template <class D>
Tensor<float, D> added(const Tensor<float, D>& a, const Tensor<float, D>& b) {
  Tensor<float, D> out(a.shape());
  add(a, b, out);
  return out;
}
template <class D>
Tensor<float, D> scaled(const Tensor<float, D>& a, float s) {
  Tensor<float, D> out(a.shape());
  scale(a, s, out);
  return out;
}
template <class D>
Tensor<float, D> clamped(const Tensor<float, D>& a, float lo, float hi) {
  Tensor<float, D> out(a.shape());
  clamp(a, lo, hi, out);
  return out;
}

}  // namespace kiln
