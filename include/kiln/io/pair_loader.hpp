// kiln/io/pair_loader.hpp — training pairs (input, target) for any image-to-image task: random
// crops at random scales, flips, and a user transform that turns each crop into the network's
// input and target, prepared on a background thread. (kiln::color::TrainLoader is the
// colorizer's: {L, ab}.)
//
// Public API (namespace kiln::io):
//   struct PairOptions {
//     int batch = 16; int crop = 64; std::vector<float> scales = {1.0f};
//     bool flip = true; bool shuffle = true; std::uint64_t seed = 0;
//     int input_channels = 3, target_channels = 3;   // what the transform writes
//     int max_side = 512;   // images are cached as 8-bit RGB downscaled to this long side (never
//                           // below the crop on the short side)
//     bool cache = true; bool background = true; int prefetch = 2;
//   };
//   // crop: crop x crop RGB, 0..1, interleaved. input/target: this sample's [C, crop, crop]
//   // planes (zero-filled). rng: the sample's own generator (noise, augmentation).
//   using PairTransform = std::function<void(const Image& crop, Rng& rng, std::span<float> input,
//                                            std::span<float> target)>;
//   struct PairBatch { Tensor<float, Cpu> input, target; };   // [N, Cin|Cout, crop, crop]
//   class PairLoader {
//     PairLoader(std::vector<std::filesystem::path> files, PairOptions, PairTransform);
//     PairBatch next();                  // rethrows an error (naming the file) on every later call
//     LoaderState state() const; void restore(const LoaderState&);   // as TrainLoader
//     std::size_t dataset_size() const; std::size_t batches_per_epoch() const;
//   };
//   void rgb_to_planes(const Image& rgb, std::span<float> planes, int channels);   // 3: R,G,B planes; 1: grey
//   Image load_image_downscaled(path, max_side, min_side = 1)   // whole photos (validation):
//       decodes 8-bit RGB and downscales at once (stb's 8-bit buffer is freed before the float
//       image exists: peak ~ 3 bytes per source pixel, not 12 + 12 as load_image + to_rgb).
//
// Determinism as TrainLoader: a batch is a pure function of the LoaderState before it (epoch
// permutation seeded by (seed, epoch); each sample seeds its own generator from one draw), so the
// background thread produces exactly what a synchronous loop would, and restore() continues
// the sequence exactly — provided the transform uses only the rng it is given.
#pragma once

#include "kiln/io/separate.hpp"
#include "kiln/core/random.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/io/image.hpp"
#include "kiln/io/io_error.hpp"
#include "kiln/io/crops.hpp"
#include "kiln/io/read_file.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace kiln::io {

struct PairOptions {
  int batch = 16;
  int crop = 64;
  std::vector<float> scales = {1.0f};
  bool flip = true;
  bool shuffle = true;
  std::uint64_t seed = 0;
  int input_channels = 3;
  int target_channels = 3;
  int max_side = 512;
  bool cache = true;
  bool background = true;
  int prefetch = 2;
};

using PairTransform = std::function<void(const Image& crop, Rng& rng, std::span<float> input, std::span<float> target)>;

struct PairBatch {
  Tensor<float, Cpu> input;
  Tensor<float, Cpu> target;
};

// Interleaved RGB (0..1) -> `channels` planes of width*height: 3 = R, G, B; 1 = grey
// (Rec. 601 luma, 0.299 R + 0.587 G + 0.114 B).
KILN_IO_ENTRY void rgb_to_planes(const Image& rgb, std::span<float> planes, int channels);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY void rgb_to_planes(const Image& rgb, std::span<float> planes, int channels) {
  const std::size_t n = rgb.pixel_count();
  if (rgb.channels != 3 || (channels != 1 && channels != 3) || planes.size() != n * std::size_t(channels))
    throw IoError("rgb_to_planes: need an RGB image and room for 1 or 3 planes of " + std::to_string(n) +
                  " pixels, got " + std::to_string(rgb.channels) + " channels and " + std::to_string(planes.size()) +
                  " values for " + std::to_string(channels) + " planes");
  for (std::size_t i = 0; i < n; ++i) {
    const float* p = &rgb.pixels[3 * i];
    if (channels == 3) {
      planes[i] = p[0];
      planes[n + i] = p[1];
      planes[2 * n + i] = p[2];
    } else {
      planes[i] = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
    }
  }
}
#endif

namespace detail {

// 8-bit RGB decode, downscaled so the long side is at most max_side (keeping the short side at
// least min_side) right after decoding; stb's full-size buffer is freed before returning.
KILN_IO_ENTRY CachedImage decode_rgb8_downscaled(const std::filesystem::path& file, int max_side, int min_side);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY CachedImage decode_rgb8_downscaled(const std::filesystem::path& file, int max_side, int min_side) {
  std::vector<std::byte> bytes = read_file(file, "image", std::uint64_t(INT_MAX));
  const ImageHeader header = read_image_header(bytes, file);  // size limits, before any pixel is allocated
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  int width = 0, height = 0, channels = 0;
  std::unique_ptr<stbi_uc, StbFree> full(stbi_load_from_memory(data, int(bytes.size()), &width, &height, &channels, 3));
  if (!full)
    throw IoError("cannot decode image " + quoted(file) +
                  ": the image data is damaged, truncated or uses an unsupported variant (stb_image: " + stb_reason() +
                  ")");
  bytes = {};  // the compressed file is no longer needed
  if (width != header.width || height != header.height)
    throw IoError("cannot decode image " + quoted(file) + ": its header and its data disagree on the size");
  const int short_side = std::min(width, height), long_side = std::max(width, height);
  if (short_side < min_side)
    throw IoError("image " + quoted(file) + " is " + std::to_string(width) + "x" + std::to_string(height) +
                  " pixels, smaller than the " + std::to_string(min_side) + "-pixel crop");
  const double f = std::min(1.0, std::max(double(max_side) / long_side, double(min_side) / short_side));
  CachedImage c;
  if (f < 1.0) {
    c.width = std::max(min_side, int(std::lround(width * f)));
    c.height = std::max(min_side, int(std::lround(height * f)));
    c.rgb.resize(std::size_t(c.width) * std::size_t(c.height) * 3);
    if (!stbir_resize_uint8(full.get(), width, height, 0, c.rgb.data(), c.width, c.height, 0, 3))
      throw IoError("cannot downscale image " + quoted(file) + ": stb_image_resize failed");
  } else {
    c.width = width;
    c.height = height;
    c.rgb.assign(full.get(), full.get() + std::size_t(width) * std::size_t(height) * 3);
  }
  return c;
}
#endif

}  // namespace detail

// A whole photo as float RGB, downscaled to at most max_side on its long side (0: full size)
// straight from the 8-bit decode (see detail::decode_rgb8_downscaled).
inline Image load_image_downscaled(const std::filesystem::path& file, int max_side, int min_side = 1) {
  const detail::CachedImage c = detail::decode_rgb8_downscaled(file, max_side > 0 ? max_side : INT_MAX, min_side);
  Image out{c.width, c.height, 3, std::vector<float>(c.rgb.size())};
  for (std::size_t i = 0; i < c.rgb.size(); ++i) out.pixels[i] = from_8bit(c.rgb[i]);
  return out;
}

class PairLoader {
 public:
  PairLoader(std::vector<std::filesystem::path> files, PairOptions options, PairTransform transform)
      : files_(std::move(files)), options_(std::move(options)), transform_(std::move(transform)) {
    const auto& o = options_;
    if (files_.empty()) throw IoError("PairLoader: no images");
    if (!transform_) throw IoError("PairLoader: no transform");
    if (o.batch < 1) throw IoError("PairLoader: batch must be at least 1, got " + std::to_string(o.batch));
    if (o.crop < 1) throw IoError("PairLoader: crop must be at least 1 pixel, got " + std::to_string(o.crop));
    if (o.input_channels < 1 || o.target_channels < 1) throw IoError("PairLoader: channel counts must be positive");
    if (o.scales.empty()) throw IoError("PairLoader: at least one crop scale is needed");
    for (float s : o.scales)
      if (!(s > 0.0f)) throw IoError("PairLoader: crop scales must be positive, got " + std::to_string(s));
    if (o.max_side < o.crop)
      throw IoError("PairLoader: max_side (" + std::to_string(o.max_side) + ") must be at least the crop (" +
                    std::to_string(o.crop) + ")");
    if (o.prefetch < 1) throw IoError("PairLoader: prefetch must be at least 1");
    cache_.resize(files_.size());
    producer_.rng = Rng(o.seed ^ 0x7061697273ull).state();  // "pairs"
    consumer_ = producer_;
  }
  PairLoader(const PairLoader&) = delete;
  PairLoader& operator=(const PairLoader&) = delete;
  ~PairLoader() { stop_worker(); }

  PairBatch next() {
    if (error_) std::rethrow_exception(error_);
    if (!options_.background) {
      LoaderState st = consumer_;
      try {
        PairBatch b = make_batch(st);
        consumer_ = producer_ = st;
        return b;
      } catch (...) {
        error_ = std::current_exception();
        throw;
      }
    }
    if (!thread_.joinable()) thread_ = std::thread([this] { work(); });
    Item item;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [&] { return !queue_.empty(); });
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    space_.notify_all();
    if (item.error) {
      error_ = item.error;
      std::rethrow_exception(error_);
    }
    consumer_ = item.after;
    return std::move(item.batch);
  }

  LoaderState state() const { return consumer_; }
  void restore(const LoaderState& state) {
    stop_worker();
    queue_.clear();
    error_ = nullptr;
    producer_ = consumer_ = state;
  }
  std::size_t dataset_size() const { return files_.size(); }
  std::size_t batches_per_epoch() const {
    return (files_.size() + std::size_t(options_.batch) - 1) / std::size_t(options_.batch);
  }
  const PairOptions& options() const { return options_; }

 private:
  struct Item {
    PairBatch batch;
    LoaderState after;
    std::exception_ptr error;
  };

  void work() {
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        space_.wait(lock, [&] { return stop_ || queue_.size() < std::size_t(options_.prefetch); });
        if (stop_) return;
      }
      Item item;
      try {
        item.batch = make_batch(producer_);
        item.after = producer_;
      } catch (...) {
        item.error = std::current_exception();
      }
      const bool failed = item.error != nullptr;
      {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(item));
      }
      ready_.notify_all();
      if (failed) return;
    }
  }

  void stop_worker() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    space_.notify_all();
    thread_.join();
    stop_ = false;
  }

  std::size_t pick(std::uint64_t epoch, std::uint64_t position) {
    if (!perm_valid_ || perm_epoch_ != epoch) {
      perm_.resize(files_.size());
      for (std::size_t i = 0; i < perm_.size(); ++i) perm_[i] = i;
      if (options_.shuffle) {
        Rng rng(options_.seed * 0x9E3779B97F4A7C15ull + epoch * 0xD1B54A32D192ED03ull + 1);
        for (std::size_t i = perm_.size() - 1; i > 0; --i) std::swap(perm_[i], perm_[std::size_t(rng.below(i + 1))]);
      }
      perm_epoch_ = epoch;
      perm_valid_ = true;
    }
    return perm_[std::size_t(position)];
  }

  PairBatch make_batch(LoaderState& st) {
    const auto& o = options_;
    const std::int64_t n = o.batch, c = o.crop;
    PairBatch batch{Tensor<float, Cpu>(Shape::nchw(n, o.input_channels, c, c)),
                    Tensor<float, Cpu>(Shape::nchw(n, o.target_channels, c, c))};
    Rng rng;
    rng.set_state(st.rng);
    for (std::int64_t k = 0; k < n; ++k) {
      if (st.position >= files_.size()) {
        ++st.epoch;
        st.position = 0;
      }
      const std::size_t index = pick(st.epoch, st.position++);
      Rng sample(rng.next());
      make_sample(index, sample, batch, k);
    }
    st.rng = rng.state();
    if (st.position >= files_.size()) {
      ++st.epoch;
      st.position = 0;
    }
    return batch;
  }

  std::shared_ptr<const detail::CachedImage> image(std::size_t i) {
    if (options_.cache && cache_[i]) return cache_[i];
    auto decoded = std::make_shared<const detail::CachedImage>(
        detail::decode_rgb8_downscaled(files_[i], options_.max_side, options_.crop));
    if (options_.cache) cache_[i] = decoded;
    return decoded;
  }

  void make_sample(std::size_t index, Rng& rng, PairBatch& batch, std::int64_t slot) {
    const auto& o = options_;
    try {
      const auto img = image(index);
      const float scale = o.scales[std::size_t(rng.below(o.scales.size()))];
      const int short_side = std::min(img->width, img->height);
      const int side = std::clamp(int(std::lround(double(o.crop) / double(scale))), 1, short_side);
      const int x0 = int(rng.below(std::uint64_t(img->width - side + 1)));
      const int y0 = int(rng.below(std::uint64_t(img->height - side + 1)));
      const bool flip = o.flip && (rng.next() >> 63) != 0;
      const Image crop = resize(detail::window(*img, x0, y0, side, flip), o.crop, o.crop);
      const std::size_t plane = std::size_t(o.crop) * std::size_t(o.crop);
      std::span<float> in(batch.input.data() + std::size_t(slot) * plane * std::size_t(o.input_channels),
                          plane * std::size_t(o.input_channels));
      std::span<float> target(batch.target.data() + std::size_t(slot) * plane * std::size_t(o.target_channels),
                              plane * std::size_t(o.target_channels));
      transform_(crop, rng, in, target);
    } catch (const std::exception& e) {
      throw IoError("PairLoader: " + detail::with_file(files_[index], e.what()));
    }
  }

  std::vector<std::filesystem::path> files_;
  PairOptions options_;
  PairTransform transform_;

  // Producer side (the background thread, or next() itself without one, or restore()).
  LoaderState producer_;
  std::vector<std::size_t> perm_;
  std::uint64_t perm_epoch_ = 0;
  bool perm_valid_ = false;
  std::vector<std::shared_ptr<const detail::CachedImage>> cache_;

  // Consumer side.
  LoaderState consumer_;
  std::exception_ptr error_;

  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::deque<Item> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kiln::io
