#include <doctest/doctest.h>

#include "gradcheck.hpp"

using namespace kiln;
using kiln::test::random_vector;
using kiln::test::relative_error;

TEST_CASE("Conv2d: im2col+GEMM matches the plain-loop reference") {
  Rng rng(3);
  for (int k : {1, 3}) {
    ConvShape s{3, 5, 7, 13, 11, k};
    auto x = random_vector(size_t(s.n * s.c_in * s.hw()), rng);
    auto w = random_vector(size_t(s.c_out * s.patch()), rng);
    auto b = random_vector(size_t(s.c_out), rng);
    auto dy = random_vector(size_t(s.n * s.c_out * s.hw()), rng);
    std::vector<float> y_ref(dy.size()), y(dy.size()), ws(cpu::conv2d_workspace_floats(s) + 1);
    cpu::reference::conv2d_forward(s, x.data(), w.data(), b.data(), y_ref.data());
    cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data(), ws.data());
    CHECK(relative_error(y, y_ref) < 1e-5);

    std::vector<float> dx_ref(x.size()), dw_ref(w.size(), 0.5f), db_ref(b.size(), 0.25f);
    std::vector<float> dx(x.size()), dw(w.size(), 0.5f), db(b.size(), 0.25f);
    cpu::reference::conv2d_backward(s, x.data(), w.data(), dy.data(), dx_ref.data(), dw_ref.data(), db_ref.data());
    cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), ws.data());
    CHECK(relative_error(dx, dx_ref) < 1e-5);
    CHECK(relative_error(dw, dw_ref) < 1e-5);  // accumulated onto 0.5
    CHECK(relative_error(db, db_ref) < 1e-5);
  }
}

TEST_CASE("Conv2d: hand-computed 3x3 forward with zero padding") {
  Conv2d<1, 1, 3> conv;
  // weight all ones, bias 0.5: each output = 0.5 + sum of its 3x3 neighbourhood.
  std::vector<float> w(9, 1.0f), b{0.5f};
  conv.weight().value.copy_from_host(w);
  conv.bias().value.copy_from_host(b);
  Arena<Cpu> arena;
  arena.begin();
  conv.plan(Shape::nchw(1, 1, 2, 3), arena, "conv");
  arena.finalize();
  auto x = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 2, 3), std::vector<float>{1, 2, 3, 4, 5, 6});
  const auto& y = conv.forward(x, Mode::eval);
  // corners: 1+2+4+5 = 12; middle top: 1+2+3+4+5+6 = 21; right: 2+3+5+6 = 16
  std::vector<float> expected{12.5f, 21.5f, 16.5f, 12.5f, 21.5f, 16.5f};
  CHECK(y.to_vector() == expected);
}

TEST_CASE("Conv2d: gradients match finite differences") {
  SUBCASE("3x3") {
    Conv2d<3, 4, 3> conv;
    kiln::test::check_gradients(conv, Shape::nchw(2, 3, 5, 4));
  }
  SUBCASE("1x1") {
    Conv2d<5, 2, 1> conv;
    kiln::test::check_gradients(conv, Shape::nchw(3, 5, 3, 3));
  }
}

TEST_CASE("Conv2d: initialisation bound is 1/sqrt(fan_in), like PyTorch") {
  Conv2d<8, 16, 3> conv;
  const float bound = 1.0f / std::sqrt(72.0f);
  float lo = 1, hi = -1;
  for (float v : conv.weight().value.span()) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  CHECK(lo >= -bound);
  CHECK(hi <= bound);
  CHECK(hi > 0.9f * bound);  // 1152 draws come close to the bound
  CHECK(lo < -0.9f * bound);
}

TEST_CASE("Conv2d: a wrong input shape names the layer and both shapes") {
  Conv2d<3, 8, 3> conv;
  Arena<Cpu> arena;
  arena.begin();
  try {
    conv.plan(Shape::nchw(2, 4, 8, 8), arena, "down.0.conv1");
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    std::string msg = e.what();
    CHECK(msg.find("down.0.conv1") != std::string::npos);
    CHECK(msg.find("[2, 4, 8, 8]") != std::string::npos);
    CHECK(msg.find("[N, 3, H, W]") != std::string::npos);
  }
}
