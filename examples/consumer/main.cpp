// The smallest useful kiln program: a compile-time network, one training step.
#include <kiln/kiln.hpp>

#include <cstdio>

int main() {
  using Net = kiln::Sequential<kiln::Conv2d<1, 8, 3>, kiln::ReLU<>, kiln::Conv2d<8, 2, 1>>;
  static_assert(Net::parameter_count == 8 * 9 + 8 + 2 * 8 + 2);
  // The U-Net comes with <kiln/kiln.hpp> too.
  static_assert(kiln::UNet<1, 2, 32, 4>::parameter_count == 7'243'202);
  kiln::Network<Net> net;
  kiln::Tensor<float> x(kiln::Shape::nchw(2, 1, 8, 8));
  for (std::size_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 7) / 7.0f;
  const auto& y = net.forward(x, kiln::Mode::train);
  net.backward(y);  // d(0.5*|y|^2)/dy = y
  // Built with no -m flags, kiln still runs the widest kernels this CPU has (run-time dispatch).
  std::printf("kiln consumer: output %s, %zu parameters, CPU code path %s\n", y.shape().str().c_str(),
              Net::parameter_count, kiln::cpu::isa_name(kiln::cpu::active_isa()));
  return y.shape() == kiln::Shape::nchw(2, 2, 8, 8) ? 0 : 1;
}
