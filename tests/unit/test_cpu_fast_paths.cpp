// The CPU fast paths outside the convolution against their plain-loop oracles
// (cpu::reference::): nearest upsampling at scale 2.
#include <doctest/doctest.h>
#include <omp.h>

#include <vector>

#include "gradcheck.hpp"
#include "kiln/cpu/upsample.hpp"

using namespace kiln;

TEST_CASE("CPU nearest upsample: the scale-2 path equals the plain loops bit for bit, any thread count") {
  Rng rng(5);
  for (const UpsampleArgs a : {UpsampleArgs{1, 1, 1, 1, 2}, UpsampleArgs{2, 3, 5, 7, 2}, UpsampleArgs{3, 2, 4, 16, 2},
                               UpsampleArgs{1, 2, 3, 5, 3}}) {
    CAPTURE(a.h);
    CAPTURE(a.w);
    CAPTURE(a.scale);
    const std::size_t in = std::size_t(a.n * a.c * a.h * a.w), out = std::size_t(a.n * a.c * a.out_h() * a.out_w());
    const auto x = kiln::test::random_vector(in, rng), dy = kiln::test::random_vector(out, rng);
    std::vector<float> y_ref(out), dx_ref(in);
    cpu::reference::upsample_nearest_forward(a, x.data(), y_ref.data());
    cpu::reference::upsample_nearest_backward(a, dy.data(), dx_ref.data());
    const int saved = omp_get_max_threads();
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      std::vector<float> y(out, -7.0f), dx(in, -7.0f);
      cpu::upsample_nearest_forward(a, x.data(), y.data());
      cpu::upsample_nearest_backward(a, dy.data(), dx.data());
      CHECK(y == y_ref);
      CHECK(dx == dx_ref);
    }
    omp_set_num_threads(saved);
  }
}
