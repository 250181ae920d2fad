#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "test_files.hpp"
#include "kiln/io/dataset.hpp"
#include "kiln/color/loader.hpp"

using namespace kiln;
namespace fs = std::filesystem;

namespace {

const fs::path loader_photos = fs::path(KILN_SOURCE_DIR) / "tests" / "data" / "photos";

using kiln::test::bytes_of;
using kiln::test::write_bytes;
struct LoaderDir : kiln::test::TempDir {
  LoaderDir() : kiln::test::TempDir("test_loader") {}
};

// A copy of the photos plus the damaged files named.
void copy_photos(const fs::path& to) {
  for (const auto& e : fs::directory_iterator(loader_photos))
    if (e.path().extension() == ".jpg") fs::copy_file(e.path(), to / e.path().filename());
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<float> flat(const color::Batch& b) {
  std::vector<float> v = b.L.to_vector();
  const std::vector<float> ab = b.ab.to_vector();
  v.insert(v.end(), ab.begin(), ab.end());
  return v;
}

std::vector<std::vector<float>> take(color::TrainLoader& loader, int n) {
  std::vector<std::vector<float>> out;
  for (int i = 0; i < n; ++i) out.push_back(flat(loader.next()));
  return out;
}

color::LoaderOptions small_options(std::uint64_t seed = 1, int workers = 1) {
  color::LoaderOptions o;
  o.batch = 3;
  o.crop = 32;
  o.seed = seed;
  o.workers = workers;
  o.max_side = 128;
  return o;
}

}  // namespace

TEST_CASE("dataset: the fixture folder, sorted, non-images ignored") {
  const io::ImageFolderDataset ds(loader_photos);
  REQUIRE(ds.size() == 5);
  CHECK(ds.file(0).filename() == "castle-maintenon.jpg");
  CHECK(ds.file(4).filename() == "panther-chameleon-female.jpg");
  CHECK(ds.skipped().empty());
  CHECK_NOTHROW(ds.validate(64));
  CHECK_NOTHROW(ds.validate(64, true));
  const io::Image img = ds.load_rgb(0);
  CHECK(img.channels == 3);
  CHECK(std::max(img.width, img.height) == 160);
  // Two folders: files of both, in the order of the folders.
  LoaderDir dir;
  fs::copy_file(loader_photos / "citrus-fruits.jpg", dir.path / "a.JPG");
  const io::ImageFolderDataset two(std::vector<fs::path>{loader_photos, dir.path});
  CHECK(two.size() == 6);
  CHECK(two.file(5).filename() == "a.JPG");
}

TEST_CASE("dataset: folder errors name the folder") {
  LoaderDir dir;
  const fs::path missing = dir.path / "missing";
  CHECK(error_of([&] { io::ImageFolderDataset ds(missing); }) ==
        "image folder '" + missing.string() + "' does not exist");
  write_bytes(dir.path / "file.jpg", {'x'});
  CHECK(error_of([&] { io::ImageFolderDataset ds(dir.path / "file.jpg"); }).find("is not a directory") !=
        std::string::npos);
  fs::create_directory(dir.path / "empty");
  write_bytes(dir.path / "empty" / "notes.txt", {'x'});
  CHECK(error_of([&] { io::ImageFolderDataset ds(dir.path / "empty"); }) ==
        "no images (png, jpg, jpeg, bmp, tga) found under '" + (dir.path / "empty").string() + "'");
}

TEST_CASE("dataset: a symlink loop is scanned once and does not hang") {
  LoaderDir dir;
  fs::create_directories(dir.path / "sub" / "deeper");
  fs::copy_file(loader_photos / "citrus-fruits.jpg", dir.path / "sub" / "deeper" / "c.jpg");
  fs::create_directory_symlink("..", dir.path / "sub" / "deeper" / "loop");  // -> sub
  fs::create_directory_symlink(dir.path, dir.path / "sub" / "root");         // -> the root itself
  fs::create_directory_symlink(dir.path / "sub", dir.path / "alias");        // sub, a second time
  const io::ImageFolderDataset ds(dir.path);
  CHECK(ds.size() == 1);
  // A broken symlink with an image name is reported, not fatal.
  fs::create_symlink(dir.path / "gone.jpg", dir.path / "broken.jpg");
  const io::ImageFolderDataset ds2(dir.path);
  CHECK(ds2.size() == 1);
  REQUIRE(ds2.skipped().size() == 1);
  CHECK(ds2.skipped()[0].find("broken.jpg") != std::string::npos);
  CHECK(error_of([&] { ds2.validate(32); }).find("broken.jpg") != std::string::npos);
}

TEST_CASE("dataset: validate() lists every bad file with its reason") {
  LoaderDir dir;
  copy_photos(dir.path);
  const std::vector<char> good = bytes_of(loader_photos / "citrus-fruits.jpg");
  write_bytes(dir.path / "header_cut.jpg", std::vector<char>(good.begin(), good.begin() + 100));
  write_bytes(dir.path / "data_cut.jpg",
              std::vector<char>(good.begin(), good.begin() + std::ptrdiff_t(good.size() * 4 / 5)));
  write_bytes(dir.path / "text.png", {'h', 'e', 'l', 'l', 'o'});
  write_bytes(dir.path / "zero.bmp", {});
  const io::ImageFolderDataset ds(dir.path);
  CHECK(ds.size() == 9);

  const std::string quick = error_of([&] { ds.validate(32); });
  CHECK(quick.find("3 of 9 images cannot be used") != std::string::npos);
  CHECK(quick.find("header_cut.jpg") != std::string::npos);
  CHECK(quick.find("text.png") != std::string::npos);
  CHECK(quick.find("zero.bmp': the file is empty") != std::string::npos);
  CHECK(quick.find("data_cut.jpg") == std::string::npos);  // its header is intact

  const std::string full = error_of([&] { ds.validate(32, true); });
  CHECK(full.find("4 of 9 images cannot be used") != std::string::npos);
  CHECK(full.find("data_cut.jpg") != std::string::npos);

  const std::string small = error_of([&] { io::ImageFolderDataset(loader_photos).validate(120); });
  CHECK(small.find("castle-maintenon.jpg': 160x106 pixels, smaller than the 120-pixel crop") != std::string::npos);
  CHECK(small.find("panther") == std::string::npos);  // 136x160
}

TEST_CASE("dataset: split_by_image") {
  const io::ImageFolderDataset ds(loader_photos);
  const auto a = ds.split_by_image(0.4, 7);
  const auto b = ds.split_by_image(0.4, 7);
  CHECK(a.validation.size() == 2);
  CHECK(a.train.size() == 3);
  CHECK(a.train.files() == b.train.files());
  CHECK(a.validation.files() == b.validation.files());
  std::vector<fs::path> all = a.train.files();
  all.insert(all.end(), a.validation.files().begin(), a.validation.files().end());
  std::sort(all.begin(), all.end());
  CHECK(all == ds.files());
  CHECK(std::is_sorted(a.train.files().begin(), a.train.files().end()));
  bool differs = false;
  for (std::uint64_t seed = 0; seed < 10; ++seed)
    differs |= ds.split_by_image(0.4, seed).validation.files() != a.validation.files();
  CHECK(differs);
  CHECK(ds.split_by_image(0.01, 1).validation.size() == 1);  // at least one
  CHECK_THROWS_AS(ds.split_by_image(1.0, 1), io::IoError);
}

TEST_CASE("loader: batch shapes and value ranges") {
  const io::ImageFolderDataset ds(loader_photos);
  color::TrainLoader loader(ds, small_options());
  for (int i = 0; i < 4; ++i) {
    const color::Batch b = loader.next();
    CHECK(b.L.shape() == Shape::nchw(3, 1, 32, 32));
    CHECK(b.ab.shape() == Shape::nchw(3, 2, 32, 32));
    float lmin = 9, lmax = -9, abmax = 0, abmean = 0;
    for (float v : b.L.span()) lmin = std::min(lmin, v), lmax = std::max(lmax, v);
    for (float v : b.ab.span()) abmax = std::max(abmax, std::abs(v)), abmean += std::abs(v);
    CHECK(lmin >= -1.0f);
    CHECK(lmax <= 1.0f);
    CHECK(lmax - lmin > 0.2f);  // real photos, not blank
    CHECK(abmax <= 1.0f);
    CHECK(abmean / float(b.ab.numel()) > 0.01f);  // colour photos
  }
  CHECK(loader.batches_per_epoch() == 2);
}

TEST_CASE("loader: deterministic for a seed, whatever the threading") {
  const io::ImageFolderDataset ds(loader_photos);
  color::TrainLoader a(ds, small_options(1, 1)), b(ds, small_options(1, 1)), sync(ds, small_options(1, 0)),
      parallel(ds, small_options(1, 3)), other(ds, small_options(2, 1));
  const auto ra = take(a, 5);  // 15 samples: three epochs of 5 images
  CHECK(ra == take(b, 5));
  CHECK(ra == take(sync, 5));
  CHECK(ra == take(parallel, 5));
  const auto ro = take(other, 5);
  for (int i = 0; i < 5; ++i) CHECK(ra[std::size_t(i)] != ro[std::size_t(i)]);
  CHECK(a.state().epoch == 3);
  CHECK(a.state().position == 0);
}

TEST_CASE("loader: shards of a global batch are the slices of one loader's batch") {
  const io::ImageFolderDataset ds(loader_photos);
  color::LoaderOptions whole = small_options(7, 1);
  whole.batch = 4;
  color::TrainLoader one(ds, whole);
  color::LoaderOptions half = whole;
  half.batch = 2;
  half.shard_count = 2;
  half.shard_index = 0;
  color::TrainLoader s0(ds, half);
  half.shard_index = 1;
  color::TrainLoader s1(ds, half);
  for (int step = 0; step < 4; ++step) {  // past an epoch of 5 images
    const color::Batch b = one.next(), b0 = s0.next(), b1 = s1.next();
    std::vector<float> joined = b0.L.to_vector(), second = b1.L.to_vector();
    joined.insert(joined.end(), second.begin(), second.end());
    CHECK(joined == b.L.to_vector());
    CHECK(s0.state() == one.state());
    CHECK(s1.state() == one.state());
  }
  CHECK(s0.batches_per_epoch() == one.batches_per_epoch());
  half.shard_index = 2;
  CHECK_THROWS_WITH_AS(color::TrainLoader(ds, half), doctest::Contains("shard 2 of 2"), io::IoError);
}

TEST_CASE("loader: restore(state) reproduces the continuation") {
  const io::ImageFolderDataset ds(loader_photos);
  color::TrainLoader a(ds, small_options(3));
  take(a, 2);
  const io::LoaderState s = a.state();
  CHECK(s.epoch == 1);
  CHECK(s.position == 1);
  const auto rest = take(a, 4);

  color::TrainLoader b(ds, small_options(3));
  take(b, 1);  // a queue half full of batches that must be discarded
  b.restore(io::LoaderState::from_string(s.to_string()));
  CHECK(b.state() == s);
  CHECK(take(b, 4) == rest);
  a.restore(s);
  CHECK(take(a, 4) == rest);
  CHECK_THROWS_AS(io::LoaderState::from_string("1 2 3"), io::IoError);
}

TEST_CASE("loader: flips happen (and only mirror the crop)") {
  const io::ImageFolderDataset ds(loader_photos);
  color::LoaderOptions on = small_options(4), off = small_options(4);
  off.flip = false;
  color::TrainLoader with(ds, on), without(ds, off);
  int flipped = 0, kept = 0;
  for (int batch = 0; batch < 4; ++batch) {
    const color::Batch f = with.next(), u = without.next();
    for (int n = 0; n < 3; ++n) {
      double same = 0, mirrored = 0;
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
          same = std::max(same, double(std::abs(f.L.at(n, 0, y, x) - u.L.at(n, 0, y, x))));
          mirrored = std::max(mirrored, double(std::abs(f.L.at(n, 0, y, x) - u.L.at(n, 0, y, 31 - x))));
        }
      if (same < 1e-6) ++kept;
      if (mirrored < 1e-6) ++flipped;
      CHECK((same < 1e-6 || mirrored < 1e-6));
    }
  }
  CHECK(flipped > 0);
  CHECK(kept > 0);
}

TEST_CASE("loader: a corrupt image is an error naming it, from next()") {
  LoaderDir dir;
  copy_photos(dir.path);
  const std::vector<char> good = bytes_of(loader_photos / "citrus-fruits.jpg");
  write_bytes(dir.path / "damaged.jpg",
              std::vector<char>(good.begin(), good.begin() + std::ptrdiff_t(good.size() * 4 / 5)));
  const io::ImageFolderDataset ds(dir.path);
  for (int workers : {0, 1, 2}) {
    color::LoaderOptions o = small_options(5, workers);
    o.batch = 6;  // every image in the first batch
    color::TrainLoader loader(ds, o);
    const std::string msg = error_of([&] { loader.next(); });
    CHECK(msg.find("damaged.jpg") != std::string::npos);
    CHECK(msg.find("TrainLoader") != std::string::npos);
    CHECK(error_of([&] { loader.next(); }) == msg);  // stays failed
  }
  // An image smaller than the crop.
  color::LoaderOptions big = small_options(5);
  big.crop = 120;
  big.max_side = 512;
  color::TrainLoader loader(io::ImageFolderDataset(loader_photos), big);
  CHECK(error_of([&] { loader.next(); }).find("smaller than the 120-pixel crop") != std::string::npos);
}

TEST_CASE("loader: option errors") {
  const io::ImageFolderDataset ds(loader_photos);
  color::LoaderOptions o = small_options();
  o.scales = {};
  CHECK_THROWS_AS(color::TrainLoader(ds, o), io::IoError);
  o = small_options();
  o.max_side = 16;
  CHECK_THROWS_AS(color::TrainLoader(ds, o), io::IoError);
  CHECK_THROWS_AS(color::TrainLoader(io::ImageFolderDataset(), small_options()), io::IoError);
}

TEST_CASE("validation set: fixed centre crops in batches") {
  const io::ImageFolderDataset ds(loader_photos);
  const color::ValidationSet v(ds, 32, 2);
  CHECK(v.size() == 5);
  REQUIRE(v.batch_count() == 3);
  CHECK(v.batch(0).L.shape() == Shape::nchw(2, 1, 32, 32));
  CHECK(v.batch(2).ab.shape() == Shape::nchw(1, 2, 32, 32));
  CHECK(v.source(4).filename() == "panther-chameleon-female.jpg");
  const color::ValidationSet again(ds, 32, 2);
  for (std::size_t i = 0; i < v.batch_count(); ++i) CHECK(flat(v.batch(i)) == flat(again.batch(i)));
  const color::ValidationSet multi(ds, 32, 4, 3);
  CHECK(multi.size() == 15);
  CHECK(flat(multi.batch(0)) != flat(v.batch(0)));
}

TEST_CASE("validation set: the training view sees images at the training crops' pixel scale") {
  const io::ImageFolderDataset ds(loader_photos);
  color::LoaderOptions lo;
  lo.crop = 32;
  lo.max_side = 96;
  lo.scales = {0.5f, 0.25f};
  const color::ValidationView view = color::ValidationView::like(lo);
  CHECK(view.max_side == 96);
  const color::ValidationSet v(ds, 32, 4, 3, view);
  CHECK(v.size() == 15);
  // Crop 1 of image 0: the centred window of side 32 / 0.25 = 128, clamped to the short side of
  // the image as the loader caches it, resized to 32 x 32 -- exactly what the loader would cut.
  const auto cached = io::detail::decode_for_crops(ds.file(0), 96, 32);
  const int side = std::min({128, cached.width, cached.height});
  const io::Image want = io::resize(
      io::detail::window(cached, (cached.width - side) / 2, (cached.height - side) / 2, side, false), 32, 32);
  Tensor<float, Cpu> L(Shape::nchw(1, 1, 32, 32)), ab(Shape::nchw(1, 2, 32, 32));
  color::image_to_lab(want, L, &ab, 0);
  const std::vector<float> got = v.batch(0).ab.to_vector(), expected = ab.to_vector();
  const std::size_t plane = 2 * 32 * 32;
  CHECK(std::vector<float>(got.begin() + plane, got.begin() + 2 * plane) == expected);
  // Not the fixed view: that one shows a closer window.
  const color::ValidationSet fixed(ds, 32, 4, 3);
  CHECK(flat(fixed.batch(0)) != flat(v.batch(0)));
  const color::ValidationSet again(ds, 32, 4, 3, view);
  for (std::size_t i = 0; i < v.batch_count(); ++i) CHECK(flat(v.batch(i)) == flat(again.batch(i)));
  CHECK_THROWS_AS(color::ValidationSet(ds, 32, 4, 1, color::ValidationView{16, {0.5f}}), io::IoError);
  CHECK_THROWS_AS(color::ValidationSet(ds, 32, 4, 1, color::ValidationView{96, {}}), io::IoError);
  CHECK_THROWS_AS(color::ValidationSet(ds, 32, 4, 1, color::ValidationView{96, {0.0f}}), io::IoError);
}
