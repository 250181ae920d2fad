#pragma once
// Kernel cases for the everyday layers (included by tests/emu/cases/layers_colour.cpp only; add_layer_cases()
// appends them to the table): LeakyReLU, SiLU, Sigmoid, Tanh (kernels/activation.cuh), Dropout (the same
// counter-based mask on both devices: compared exactly), strided Conv2d (kernels/conv2d_strided.cuh)
// and the element-wise helpers kiln::sub / mul / scale / affine / clamp and Tensor::clone.
// Each family also has a `tiny` case (the ThreadSanitizer subset launches every kernel).
#include <functional>
#include <string>
#include <vector>

namespace kiln_test {

// Bit-for-bit: Dropout's mask and scale are the same float operations on both devices.
inline constexpr double exact = 1e-30;

// A Dropout with a fixed seed, default-constructible for layer_case (the two devices must share it).
template <class D>
struct SeededDropout : kiln::Dropout<D> {
  SeededDropout() : kiln::Dropout<D>(0.3f, 0x5eedull) {}
};
template <class D>
struct LeakyReLU02 : kiln::LeakyReLU<D> {
  LeakyReLU02() : kiln::LeakyReLU<D>(0.2f) {}
};

// kiln::sub, mul, scale, affine, clamp (in place too) and clone on both devices.
inline void tensor_ops_case(Report& report, const Shape& s, std::uint64_t seed) {
  kiln::Rng rng(seed);
  const auto av = random_vector(s.numel(), rng, -2.0f, 2.0f), bv = random_vector(s.numel(), rng, -2.0f, 2.0f);
  using C = kiln::Tensor<float, Cpu>;
  using G = kiln::Tensor<float, Cuda>;
  const C ac = C::from_host(s, av), bc = C::from_host(s, bv);
  const G ag = G::from_host(s, av), bg = G::from_host(s, bv);
  C oc(s);
  G og(s);
  kiln::sub(ac, bc, oc);
  kiln::sub(ag, bg, og);
  report.compare("a - b", og, oc, 1e-7);
  kiln::mul(ac, bc, oc);
  kiln::mul(ag, bg, og);
  report.compare("a * b", og, oc, 1e-7);
  kiln::scale(ac, -1.5f, oc);
  kiln::scale(ag, -1.5f, og);
  report.compare("a * -1.5", og, oc, 1e-7);
  kiln::affine(ac, 0.5f, 0.25f, oc);
  kiln::affine(ag, 0.5f, 0.25f, og);
  report.compare("a * 0.5 + 0.25", og, oc, 1e-7);
  kiln::clamp(ac, -0.5f, 1.0f, oc);
  kiln::clamp(ag, -0.5f, 1.0f, og);
  report.compare("clamp(a, -0.5, 1)", og, oc, 1e-7);
  G cl = ag.clone();
  kiln::clamp(cl, -0.5f, 1.0f, cl);  // in place, on the clone: ag is untouched
  report.compare("clamp in place", cl, oc, 1e-7);
  report.compare("clone left the source alone", ag.to_vector(), av, exact);
}

void add_layer_cases(std::vector<KernelCase>& t) {
  using kiln::Mode;
  auto act = [&]<template <class> class L>(std::string name, const Shape& s, std::uint64_t seed, bool small = false) {
    t.push_back({std::move(name),
                 [=](Report& r) { layer_case<L<Cpu>, L<Cuda>>(r, s, Mode::train, seed, tight, tight); }, small});
  };
  act.template operator()<kiln::LeakyReLU>("LeakyReLU N=3 5x13x11", Shape::nchw(3, 5, 13, 11), 401);
  act.template operator()<LeakyReLU02>("LeakyReLU(0.2) N=2 3x7x9", Shape::nchw(2, 3, 7, 9), 403);
  act.template operator()<kiln::SiLU>("SiLU N=3 5x13x11", Shape::nchw(3, 5, 13, 11), 405);
  act.template operator()<kiln::Sigmoid>("Sigmoid N=3 5x13x11", Shape::nchw(3, 5, 13, 11), 407);
  act.template operator()<kiln::Tanh>("Tanh N=3 5x13x11", Shape::nchw(3, 5, 13, 11), 409);
  act.template operator()<kiln::SiLU>("tiny SiLU", Shape::nchw(1, 2, 3, 5), 411, true);  // both activation kernels

  t.push_back({"Dropout(0.3) N=3 5x13x11 (exact mask)", [](Report& r) {
                 layer_case<SeededDropout<Cpu>, SeededDropout<Cuda>>(r, Shape::nchw(3, 5, 13, 11), Mode::train, 413,
                                                                     exact, exact);
               }});
  t.push_back({"tiny Dropout(0.3) (exact mask)",
               [](Report& r) {
                 layer_case<SeededDropout<Cpu>, SeededDropout<Cuda>>(r, Shape::nchw(1, 2, 3, 5), Mode::train, 415,
                                                                     exact, exact);
               },
               true});

  auto conv = [&]<int In, int Out, int K, int S>(std::int64_t n, std::int64_t h, std::int64_t w, bool small = false) {
    std::string name = std::string(small ? "tiny " : "") + "Conv2d<" + std::to_string(In) + "," + std::to_string(Out) +
                       "," + std::to_string(K) + "> stride " + std::to_string(S) + " N=" + std::to_string(n) + " " +
                       std::to_string(h) + "x" + std::to_string(w);
    t.push_back({name,
                 [=](Report& r) {
                   layer_case<kiln::Conv2d<In, Out, K, Cpu, S>, kiln::Conv2d<In, Out, K, Cuda, S>>(
                       r, Shape::nchw(n, In, h, w), Mode::train, 417 + n + h, tight, loose);
                 },
                 small});
  };
  conv.template operator()<3, 5, 3, 2>(2, 13, 11);  // odd sizes: the last window hangs over the edge
  conv.template operator()<4, 3, 1, 2>(3, 8, 7);
  conv.template operator()<2, 3, 5, 3>(1, 10, 9);
  conv.template operator()<3, 4, 3, 2>(2, 1, 2);  // a one-row image
  // N*Ho*Wo > 256 (one block's threads): the weight gradient's cursor wraps rows and images; an even
  // height: the input gradient's last row starts past the last output row.
  conv.template operator()<2, 3, 3, 2>(3, 24, 21);
  conv.template operator()<3, 2, 5, 3>(2, 29, 31);
  conv.template operator()<2, 3, 3, 2>(1, 4, 5, true);

  t.push_back({"tensor ops (sub, mul, scale, affine, clamp, clone) 3x5x13x11",
               [](Report& r) { tensor_ops_case(r, Shape::nchw(3, 5, 13, 11), 419); }});
  t.push_back({"tiny tensor ops", [](Report& r) { tensor_ops_case(r, Shape::nchw(1, 2, 3, 5), 421); }, true});
}

}  // namespace kiln_test
