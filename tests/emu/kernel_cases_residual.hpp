#pragma once
// Kernel cases for Residual<Branch> (y = x + Branch(x), Backend::add both ways), kept apart
// from kernel_cases.hpp so that branches adding layers merge easily. Included only by
// tests/emu/cases/conv.cpp (the residual cases share its convolution and BatchNorm instances),
// after kernel_cases.hpp; add_residual_cases(t) appends to the table.
#include <vector>

namespace kiln_test {

// DnCNN-style residual block: Conv-BN-ReLU-Conv inside, the add around it.
template <int C, class D>
using ResidualBlock = kiln::Residual<
    kiln::Sequential<kiln::Conv2d<C, C, 3, D>, kiln::BatchNorm2d<C, D>, kiln::ReLU<D>, kiln::Conv2d<C, C, 3, D>>>;
template <int C, class D>
using ResidualPlain = kiln::Residual<kiln::Sequential<kiln::Conv2d<C, C, 1, D>>>;

void add_residual_cases(std::vector<KernelCase>& t) {
  using kiln::Cpu;
  using kiln::Cuda;
  using kiln::Mode;
  t.push_back({"Residual<Conv-BN-ReLU-Conv> C=5 N=3 13x11 train", [](Report& r) {
                 layer_case<ResidualBlock<5, Cpu>, ResidualBlock<5, Cuda>>(r, Shape::nchw(3, 5, 13, 11), Mode::train,
                                                                           307, tf32_bound, tf32_bound);
               }});
  t.push_back({"Residual<Conv-BN-ReLU-Conv> C=5 N=2 13x11 eval", [](Report& r) {
                 layer_case<ResidualBlock<5, Cpu>, ResidualBlock<5, Cuda>>(r, Shape::nchw(2, 5, 13, 11), Mode::eval,
                                                                           311, tf32_bound, tf32_bound);
               }});
  t.push_back({"tiny Residual<Conv1x1> C=2 N=1 3x5",
               [](Report& r) {
                 layer_case<ResidualPlain<2, Cpu>, ResidualPlain<2, Cuda>>(r, Shape::nchw(1, 2, 3, 5), Mode::train, 313,
                                                                           tf32_bound, tf32_bound);
               },
               true});
}

}  // namespace kiln_test
