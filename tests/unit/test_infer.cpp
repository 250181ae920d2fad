// Tiled whole-image inference (nn/infer.hpp) and the receptive field it relies on.
//
// Equality is bitwise: the CPU layers compute each output pixel with the same operands in
// the same order wherever the pixel sits and whatever the image width (the convolution's
// bands and tiles do not change a pixel's sum; BatchNorm, ReLU, pooling and upsampling are
// per pixel), so a pixel whose whole receptive field lies in the tile comes out identical.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gradcheck.hpp"
#include "kiln/models/unet.hpp"
#include "kiln/nn/infer.hpp"

using namespace kiln;

namespace {

using ConvChain = Sequential<Conv2d<1, 4, 3>, ReLU<>, Conv2d<4, 4, 5>, Conv2d<4, 2, 1>>;
// alignment 2: the 3x3 convolution runs as Winograd F(2x2, 3x3) tiles on the CPU (nn/receptive_field.hpp)
static_assert(ReceptiveField<ConvChain>::radius == 3 && ReceptiveField<ConvChain>::alignment == 2);
// Depth 4: 60 from the ConvBlocks' 3x3s on levels 0-3, 32 from the bottleneck's, 15 each from
// the four pools and four upsamplings. Alignment: twice the bottleneck's stride (its 3x3s' Winograd tiles).
static_assert(ReceptiveField<UNet<1, 2, 16, 4>>::radius == 122 && ReceptiveField<UNet<1, 2, 16, 4>>::alignment == 32);
static_assert(ReceptiveField<UNet<1, 2, 4, 2>>::radius == 26 && ReceptiveField<UNet<1, 2, 4, 2>>::alignment == 8);

template <class Net>
Network<Net>& with_running_stats(Network<Net>& net, Rng& rng) {
  net.visit([&](StateRef<Cpu> r) {
    if (r.kind != StateRef<Cpu>::Kind::buffer) return;
    const bool var = r.name.find("running_var") != std::string::npos;
    std::vector<float> v(r.value->numel());
    for (auto& e : v) e = var ? rng.uniform(0.5f, 2.0f) : rng.uniform(-0.5f, 0.5f);
    r.value->copy_from_host(v);
  });
  return net;
}

std::size_t count_different(const Tensor<float, Cpu>& a, const Tensor<float, Cpu>& b) {
  REQUIRE(a.shape() == b.shape());
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.numel(); ++i) n += a.span()[i] != b.span()[i];
  return n;
}

}  // namespace

TEST_CASE("reflect padding to a multiple mirrors without repeating the edge") {
  CHECK(reflect_index(-1, 5) == 1);
  CHECK(reflect_index(5, 5) == 3);
  CHECK(reflect_index(9, 5) == 1);
  CHECK(reflect_index(3, 1) == 0);
  const auto x = Tensor<float, Cpu>::from_host(Shape::nchw(1, 1, 2, 3), std::vector<float>{1, 2, 3, 4, 5, 6});
  const auto p = pad_reflect(x, 4);
  REQUIRE(p.shape() == Shape::nchw(1, 1, 4, 4));
  CHECK(p.to_vector() == std::vector<float>{1, 2, 3, 2, 4, 5, 6, 5, 1, 2, 3, 2, 4, 5, 6, 5});
}

TEST_CASE("infer_image: tiles stitched equal the untiled eval output bitwise (UNet<1,2,4,2>, odd sizes)") {
  Rng rng(11);
  Network<UNet<1, 2, 4, 2>> net;
  with_running_stats(net, rng);
  const auto x = kiln::test::random_tensor(Shape::nchw(1, 1, 77, 301), rng);  // pads to 80 x 304
  TileOptions whole;
  whole.tile = 0;
  const Tensor<float, Cpu> untiled = infer_image(net, x, whole);
  REQUIRE(untiled.shape() == Shape::nchw(1, 2, 77, 301));
  TileOptions tiles;
  tiles.tile = 80;  // margin 32 (26 rounded up to 8): cores of 16, so 5 x 19 tiles
  const Tensor<float, Cpu> tiled = infer_image(net, x, tiles);
  CHECK(count_different(tiled, untiled) == 0);
  // Memory bounded by the tile: the plan is the one for a 64 x 64 input.
  CHECK(net.input_shape() == Shape::nchw(1, 1, 80, 80));
  const std::size_t tile_bytes = net.arena().bytes_planned();
  net.plan(Shape::nchw(1, 1, 80, 304), Mode::eval);
  CHECK(tile_bytes * 2 < net.arena().bytes_planned());

  // The margin matters: with less context than the receptive field the seams show.
  tiles.margin = 8;
  CHECK(count_different(infer_image(net, x, tiles), untiled) > 0);
}

// (A margin of 128 makes a small U-Net tile at least 272 wide; several tiles each way are
// tested on UNet<1,2,4,2> above, this one cuts along the width only to stay quick.)
TEST_CASE("infer_tiled: the small U-Net over a row of tiles equals the untiled pass bitwise") {
  Rng rng(12);
  Network<UNet<1, 2, 16, 4>> net;
  with_running_stats(net, rng);
  // 320 wide: the narrowest multiple of 32 over one tile, so the tiled plan is the smaller (asserted below)
  const auto x = kiln::test::random_tensor(Shape::nchw(1, 1, 288, 320), rng);
  const Tensor<float, Cpu> untiled = to<Cpu>(net.infer(x));
  const std::size_t untiled_bytes = net.arena().bytes_planned();
  TileOptions tiles;
  tiles.tile = 288;  // margin 128: cores of 32 -> 10 tiles of 288 x 288
  const Tensor<float, Cpu> tiled = infer_tiled(net, x, tiles);
  CHECK(count_different(tiled, untiled) == 0);
  CHECK(net.input_shape() == Shape::nchw(1, 1, 288, 288));
  CHECK(net.arena().bytes_planned() < untiled_bytes);
}

TEST_CASE("infer_tiled: a chain without pooling, and the argument checks") {
  Rng rng(13);
  Network<ConvChain> net;
  const auto x = kiln::test::random_tensor(Shape::nchw(2, 1, 32, 46), rng);
  TileOptions tiles;
  tiles.tile = 12;  // margin 4 (3 rounded up to 2): cores of 4
  CHECK(count_different(infer_tiled(net, x, tiles), to<Cpu>(net.infer(x))) == 0);

  Network<UNet<1, 2, 4, 2>> unet;
  CHECK_THROWS_WITH_AS(infer_tiled(unet, Tensor<float, Cpu>(Shape::nchw(1, 1, 30, 32))),
                       doctest::Contains("multiples of 8"), kiln::Error);
  tiles.tile = 48;  // not more than twice the margin of 32
  CHECK_THROWS_WITH_AS(infer_tiled(unet, Tensor<float, Cpu>(Shape::nchw(1, 1, 128, 128)), tiles),
                       doctest::Contains("larger than 64"), kiln::Error);
}
