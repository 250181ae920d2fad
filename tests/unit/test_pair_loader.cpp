// kiln/io/pair_loader.hpp: the generic (input, target) pipeline — shapes, the user transform,
// determinism with and without the background thread, restore(), errors naming the file, and
// the downscaling decode.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_files.hpp"
#include "kiln/io/dataset.hpp"
#include "kiln/io/pair_loader.hpp"

using namespace kiln;
namespace fs = std::filesystem;

namespace {
const fs::path photos = fs::path(KILN_SOURCE_DIR) / "tests" / "data" / "photos";

std::vector<fs::path> photo_files() { return io::ImageFolderDataset(photos).files(); }

// Input: the grey crop plus noise from the sample's generator; target: the RGB crop.
void grey_noise(const io::Image& crop, Rng& rng, std::span<float> input, std::span<float> target) {
  io::rgb_to_planes(crop, target, 3);
  io::rgb_to_planes(crop, input, 1);
  for (float& v : input) v += rng.normal() * 0.1f;
}

io::PairOptions options(bool background) {
  io::PairOptions o;
  o.batch = 3;
  o.crop = 24;
  o.scales = {1.0f, 0.5f};
  o.input_channels = 1;
  o.target_channels = 3;
  o.max_side = 96;
  o.background = background;
  o.seed = 7;
  return o;
}
}  // namespace

TEST_CASE("PairLoader: batches of the transform's input and target, in the shapes asked for") {
  io::PairLoader loader(photo_files(), options(true),
                        [](const io::Image& crop, Rng&, std::span<float> in, std::span<float> target) {
                          REQUIRE(crop.width == 24);
                          REQUIRE(crop.height == 24);
                          REQUIRE(crop.channels == 3);
                          io::rgb_to_planes(crop, target, 3);
                          io::rgb_to_planes(crop, in, 1);
                        });
  const io::PairBatch b = loader.next();
  CHECK(b.input.shape() == Shape::nchw(3, 1, 24, 24));
  CHECK(b.target.shape() == Shape::nchw(3, 3, 24, 24));
  for (std::int64_t n = 0; n < 3; ++n)
    for (std::int64_t y = 0; y < 24; ++y)
      for (std::int64_t x = 0; x < 24; ++x) {
        const float grey =
            0.299f * b.target.at(n, 0, y, x) + 0.587f * b.target.at(n, 1, y, x) + 0.114f * b.target.at(n, 2, y, x);
        CHECK(b.input.at(n, 0, y, x) == doctest::Approx(grey));
        CHECK(b.target.at(n, 1, y, x) >= 0.0f);
        CHECK(b.target.at(n, 1, y, x) <= 1.0f);
      }
  CHECK(loader.batches_per_epoch() == (loader.dataset_size() + 2) / 3);
}

TEST_CASE("PairLoader: the background thread gives the synchronous batches; restore() continues exactly") {
  io::PairLoader sync(photo_files(), options(false), grey_noise);
  io::PairLoader bg(photo_files(), options(true), grey_noise);
  std::vector<std::vector<float>> seen;
  io::LoaderState third;
  for (int i = 0; i < 5; ++i) {
    if (i == 2) third = sync.state();
    const auto a = sync.next(), b = bg.next();
    CHECK(a.input.to_vector() == b.input.to_vector());
    CHECK(a.target.to_vector() == b.target.to_vector());
    seen.push_back(a.input.to_vector());
  }
  CHECK(seen[0] != seen[1]);
  bg.restore(third);
  CHECK(bg.next().input.to_vector() == seen[2]);
  CHECK(bg.next().input.to_vector() == seen[3]);
  CHECK(io::LoaderState::from_string(third.to_string()) == third);
}

TEST_CASE("PairLoader: a damaged image is an error naming the file, on every later next()") {
  kiln::test::TempDir dir("test_pair_loader");
  std::ofstream(dir.path / "broken.jpg") << "not a jpeg at all";
  io::PairOptions o = options(true);
  o.shuffle = false;
  o.batch = 1;
  io::PairLoader loader({dir.path / "broken.jpg"}, o, grey_noise);
  CHECK_THROWS_WITH_AS(loader.next(), doctest::Contains("broken.jpg"), io::IoError);
  CHECK_THROWS_WITH_AS(loader.next(), doctest::Contains("broken.jpg"), io::IoError);
  CHECK_THROWS_AS(io::PairLoader({}, o, grey_noise), io::IoError);
  CHECK_THROWS_AS(io::PairLoader(photo_files(), o, nullptr), io::IoError);
}

TEST_CASE("load_image_downscaled: decoded to at most max_side, aspect kept, as the float path") {
  const fs::path file = photo_files().front();
  const io::Image full = io::to_rgb(io::load_image(file));
  const io::Image small = io::load_image_downscaled(file, 64);
  CHECK(std::max(small.width, small.height) == 64);
  CHECK(small.channels == 3);
  CHECK(std::abs(double(small.width) / small.height - double(full.width) / full.height) < 0.05);
  const io::Image same = io::load_image_downscaled(file, 0);
  CHECK(same.width == full.width);
  CHECK(same.height == full.height);
  CHECK(same.pixels == full.pixels);  // 8-bit sources: the same values as load_image
}
