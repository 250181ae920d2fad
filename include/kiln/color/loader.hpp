// kiln/color/loader.hpp — the colorizer's batches ({L, ab}): training batches (random crops,
// prepared in the background) and a fixed validation set.
//
// Public API (namespace kiln::color):
//   struct LoaderOptions {
//     int batch = 16; int crop = 64; std::vector<float> scales = {1.0f, 0.75f, 0.5f};
//     bool flip = true; bool shuffle = true; std::uint64_t seed = 0;
//     int workers = 1;      // 0: batches made synchronously inside next(); 1: one background
//                           // thread; k > 1: that thread splits each batch over k threads
//     int max_side = 512;   // decoded images are cached downscaled to this long side (but never
//                           // so far that the short side drops below crop)
//     bool cache = true;    // keep decoded images in memory (8-bit RGB) for later epochs
//     int prefetch = 2;     // bounded queue: batches prepared ahead of next()
//     int shard_index = 0, shard_count = 1;  // data parallelism: see below
//   };
//   struct Batch { Tensor<float, Cpu> L /*[N,1,crop,crop]*/, ab /*[N,2,crop,crop]*/; };
//   io::LoaderState (kiln/io/crops.hpp): where the loader is, for resuming
//   class TrainLoader {
//     TrainLoader(const ImageFolderDataset&, LoaderOptions);   // the dataset is copied
//     Batch next();                        // rethrows a worker's error (naming the file) every call
//     LoaderState state() const;           // state before the batch the next next() returns
//     void restore(const LoaderState&);    // the continuation is identical to the original run
//     std::size_t dataset_size() const; std::size_t batches_per_epoch() const;
//     const LoaderOptions& options() const;
//   };
//   struct ValidationView {               // how validation crops see an image
//     int max_side = 0;                    // 0: the fixed view (short side 2 * crop, crop-sized windows)
//     std::vector<float> scales;           // else: the training view, as LoaderOptions' max_side/scales
//     static ValidationView like(const LoaderOptions&);
//   };
//   class ValidationSet {
//     ValidationSet(const ImageFolderDataset&, int crop, int batch = 16, int crops_per_image = 1,
//                   ValidationView view = {});
//     std::size_t size() const;            // number of crops
//     std::size_t batch_count() const; const Batch& batch(std::size_t i) const;
//     const std::vector<Batch>& batches() const;
//     const std::filesystem::path& source(std::size_t crop_index) const;
//   };
//
// Determinism: a batch is a pure function of the LoaderState before it. The epoch's order is a
// permutation seeded by (seed, epoch); each sample takes one 64-bit draw from the state's
// generator, which seeds that sample's own generator (scale, window position, flip). So the
// background thread, and any number of workers, produce exactly the batches a synchronous loop
// would, and restore(state) continues the sequence exactly.
//
// A crop at scale s: a square window of side round(crop / s) (at most the image's short side, i.e.
// the image is in effect downscaled until the window fits) at a random position, resized to
// crop x crop with stb_image_resize, flipped left-right with probability 1/2.
//
// Validation should see images as training does: a model trained on whole-scene views of 256-px
// images and scored on 4x closer views of the same kind of photo is scored on a task it never
// saw. ValidationView::like(options) gives validation crops the training crops' pixel scale
// (same cache size, same windows per scale, at fixed positions and without flips).
#pragma once

#include "kiln/color/lab_tensor.hpp"
#include "kiln/core/random.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/io/crops.hpp"
#include "kiln/io/dataset.hpp"
#include "kiln/io/image.hpp"
#include "kiln/io/io_error.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace kiln::color {

struct LoaderOptions {
  int batch = 16;
  int crop = 64;
  std::vector<float> scales = {1.0f, 0.75f, 0.5f};
  bool flip = true;
  bool shuffle = true;
  std::uint64_t seed = 0;
  int workers = 1;
  int max_side = 512;
  bool cache = true;
  int prefetch = 2;
  // Data parallelism: the global batch is shard_count * batch crops, drawn exactly as one
  // loader with that batch would draw them (images in the epoch's shuffled order, one seed
  // each); this loader makes only crops [shard_index * batch, (shard_index + 1) * batch).
  // Its state is the global one, the same on every shard: a run resumes with any count.
  int shard_index = 0, shard_count = 1;
};

struct Batch {
  Tensor<float, Cpu> L;   // [N, 1, crop, crop], L/50 - 1
  Tensor<float, Cpu> ab;  // [N, 2, crop, crop], ab/110
};

class TrainLoader {
 public:
  TrainLoader(const io::ImageFolderDataset& dataset, LoaderOptions options)
      : files_(dataset.files()), options_(std::move(options)) {
    const auto& o = options_;
    if (files_.empty()) throw io::IoError("TrainLoader: the dataset holds no images");
    if (o.batch < 1) throw io::IoError("TrainLoader: batch must be at least 1, got " + std::to_string(o.batch));
    if (o.crop < 1) throw io::IoError("TrainLoader: crop must be at least 1 pixel, got " + std::to_string(o.crop));
    if (o.scales.empty()) throw io::IoError("TrainLoader: at least one crop scale is needed");
    for (float s : o.scales)
      if (!(s > 0.0f)) throw io::IoError("TrainLoader: crop scales must be positive, got " + std::to_string(s));
    if (o.workers < 0) throw io::IoError("TrainLoader: workers must be 0 or more, got " + std::to_string(o.workers));
    if (o.max_side < o.crop) {
      throw io::IoError("TrainLoader: max_side (" + std::to_string(o.max_side) + ") must be at least the crop (" +
                        std::to_string(o.crop) + ")");
    }
    if (o.prefetch < 1) throw io::IoError("TrainLoader: prefetch must be at least 1");
    if (o.shard_count < 1 || o.shard_index < 0 || o.shard_index >= o.shard_count) {
      throw io::IoError("TrainLoader: shard " + std::to_string(o.shard_index) + " of " + std::to_string(o.shard_count) +
                        " does not exist (0 <= shard_index < shard_count)");
    }
    cache_.resize(files_.size());
    // A file listed more than once (kiln-train --data-repeat) is decoded and cached once.
    cache_slot_.resize(files_.size());
    std::map<std::filesystem::path, std::size_t> first;
    for (std::size_t i = 0; i < files_.size(); ++i) cache_slot_[i] = first.try_emplace(files_[i], i).first->second;
    producer_.rng = Rng(o.seed ^ 0x6c6f61646572ull).state();  // "loader"
    consumer_ = producer_;
  }

  TrainLoader(const TrainLoader&) = delete;
  TrainLoader& operator=(const TrainLoader&) = delete;
  ~TrainLoader() { stop_worker(); }

  Batch next() {
    if (error_) std::rethrow_exception(error_);
    if (options_.workers == 0) {
      io::LoaderState st = consumer_;
      try {
        Batch b = make_batch(st);
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

  io::LoaderState state() const { return consumer_; }

  void restore(const io::LoaderState& state) {
    stop_worker();
    queue_.clear();
    error_ = nullptr;
    producer_ = consumer_ = state;
  }

  std::size_t dataset_size() const { return files_.size(); }
  std::size_t batches_per_epoch() const {
    const std::size_t global = std::size_t(options_.batch) * std::size_t(options_.shard_count);
    return (files_.size() + global - 1) / global;
  }
  const LoaderOptions& options() const { return options_; }

 private:
  struct Item {
    Batch batch;
    io::LoaderState after;
    std::exception_ptr error;
  };
  struct Job {
    std::size_t image = 0;
    std::uint64_t seed = 0;
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

  // The permutation of epoch `epoch` (identity when not shuffling).
  const std::vector<std::size_t>& permutation(std::uint64_t epoch) {
    if (perm_valid_ && perm_epoch_ == epoch) return perm_;
    const std::size_t n = files_.size();
    perm_.resize(n);
    for (std::size_t i = 0; i < n; ++i) perm_[i] = i;
    if (options_.shuffle) {
      Rng rng(options_.seed * 0x9E3779B97F4A7C15ull + epoch * 0xD1B54A32D192ED03ull + 1);
      for (std::size_t i = n - 1; i > 0; --i) std::swap(perm_[i], perm_[std::size_t(rng.below(i + 1))]);
    }
    perm_epoch_ = epoch;
    perm_valid_ = true;
    return perm_;
  }

  // Advances st by one batch and returns the batch.
  Batch make_batch(io::LoaderState& st) {
    const int n = options_.batch, c = options_.crop;
    std::vector<Job> jobs(static_cast<std::size_t>(n) * static_cast<std::size_t>(options_.shard_count));
    Rng rng;
    rng.set_state(st.rng);
    for (auto& job : jobs) {
      if (st.position >= files_.size()) {
        ++st.epoch;
        st.position = 0;
      }
      job.image = permutation(st.epoch)[std::size_t(st.position++)];
      job.seed = rng.next();
    }
    st.rng = rng.state();
    if (st.position >= files_.size()) {  // an epoch ends exactly here: state() says "next epoch, start"
      ++st.epoch;
      st.position = 0;
    }

    // This shard's part of the global batch.
    jobs.erase(jobs.begin(), jobs.begin() + std::ptrdiff_t(n) * options_.shard_index);
    jobs.resize(std::size_t(n));
    Batch batch{Tensor<float, Cpu>(Shape::nchw(n, 1, c, c)), Tensor<float, Cpu>(Shape::nchw(n, 2, c, c))};
    std::vector<std::exception_ptr> errors(jobs.size());
    auto run = [&](std::size_t first, std::size_t stride) {
      for (std::size_t k = first; k < jobs.size(); k += stride) {
        try {
          make_sample(jobs[k], batch, std::int64_t(k));
        } catch (...) {
          errors[k] = std::current_exception();
        }
      }
    };
    const std::size_t threads = std::min<std::size_t>(std::size_t(std::max(options_.workers, 1)), jobs.size());
    if (threads <= 1) {
      run(0, 1);
    } else {
      std::vector<std::jthread> helpers;
      for (std::size_t t = 1; t < threads; ++t) helpers.emplace_back(run, t, threads);
      run(0, threads);
    }  // helpers joined here
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);  // the lowest sample index: deterministic
    return batch;
  }

  std::shared_ptr<const io::detail::CachedImage> image(std::size_t i) {
    i = cache_slot_[i];
    if (options_.cache) {
      std::lock_guard lock(cache_mutex_);
      if (cache_[i]) return cache_[i];
    }
    auto decoded = std::make_shared<const io::detail::CachedImage>(
        io::detail::decode_for_crops(files_[i], options_.max_side, options_.crop));
    if (options_.cache) {
      std::lock_guard lock(cache_mutex_);
      if (!cache_[i]) cache_[i] = decoded;
    }
    return decoded;
  }

  void make_sample(const Job& job, Batch& batch, std::int64_t slot) {
    const std::filesystem::path& file = files_[job.image];
    try {
      const auto img = image(job.image);
      Rng rng(job.seed);
      const float scale = options_.scales[std::size_t(rng.below(options_.scales.size()))];
      const int short_side = std::min(img->width, img->height);
      const int side = std::clamp(int(std::lround(double(options_.crop) / double(scale))), 1, short_side);
      const int x0 = int(rng.below(std::uint64_t(img->width - side + 1)));
      const int y0 = int(rng.below(std::uint64_t(img->height - side + 1)));
      const bool flip = options_.flip && (rng.next() >> 63) != 0;
      const io::Image crop = io::resize(io::detail::window(*img, x0, y0, side, flip), options_.crop, options_.crop);
      image_to_lab(crop, batch.L, &batch.ab, slot);
    } catch (const std::exception& e) {
      throw io::IoError("TrainLoader: " + io::detail::with_file(file, e.what()));
    }
  }

  std::vector<std::filesystem::path> files_;
  LoaderOptions options_;

  // Producer side: touched only by the thread making batches (or by next() when workers == 0,
  // or by restore() after the worker stopped).
  io::LoaderState producer_;
  std::vector<std::size_t> perm_;
  std::uint64_t perm_epoch_ = 0;
  bool perm_valid_ = false;

  // Consumer side.
  io::LoaderState consumer_;
  std::exception_ptr error_;

  std::mutex cache_mutex_;
  std::vector<std::shared_ptr<const io::detail::CachedImage>> cache_;
  std::vector<std::size_t> cache_slot_;  // index -> the first index of the same file

  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::deque<Item> queue_;
  bool stop_ = false;
  std::thread thread_;
};

struct ValidationView {
  int max_side = 0;           // 0: the fixed view; else images cached as TrainLoader does
  std::vector<float> scales;  // window side round(crop / scale), as TrainLoader's

  static ValidationView like(const LoaderOptions& o) { return {std::max(o.max_side, o.crop), o.scales}; }
};

class ValidationSet {
 public:
  // The fixed view (view.max_side == 0): each image is downscaled (never enlarged) so its short
  // side is 2 * crop, then cut into crops_per_image crops of crop x crop: the centre first,
  // then positions drawn from a generator seeded by the image's index (fixed for a given folder).
  // The training view (view.max_side > 0): each image is cached as TrainLoader caches it; crop
  // k is a window at scale view.scales[k % scales] — centred for the first round over the
  // scales, at positions drawn as above after that — resized to crop x crop as in training.
  ValidationSet(const io::ImageFolderDataset& dataset, int crop, int batch = 16, int crops_per_image = 1,
                const ValidationView& view = {}) {
    if (dataset.empty()) throw io::IoError("ValidationSet: the dataset holds no images");
    if (crop < 1 || batch < 1 || crops_per_image < 1) {
      throw io::IoError("ValidationSet: crop, batch and crops_per_image must be positive");
    }
    if (view.max_side > 0) {
      if (view.max_side < crop) {
        throw io::IoError("ValidationSet: the view's max_side (" + std::to_string(view.max_side) +
                          ") must be at least the crop (" + std::to_string(crop) + ")");
      }
      if (view.scales.empty()) throw io::IoError("ValidationSet: the training view needs at least one scale");
      for (float s : view.scales)
        if (!(s > 0.0f)) throw io::IoError("ValidationSet: crop scales must be positive, got " + std::to_string(s));
    }
    struct Crop {
      std::size_t image;
      io::Image pixels;
    };
    std::vector<Crop> crops;
    for (std::size_t i = 0; i < dataset.size(); ++i) {
      const std::filesystem::path& file = dataset.file(i);
      try {
        if (view.max_side > 0) {
          const io::detail::CachedImage img = io::detail::decode_for_crops(file, view.max_side, crop);
          const int short_side = std::min(img.width, img.height);
          Rng rng(i + 1);
          for (int k = 0; k < crops_per_image; ++k) {
            const float scale = view.scales[std::size_t(k) % view.scales.size()];
            const int side = std::clamp(int(std::lround(double(crop) / double(scale))), 1, short_side);
            int x0 = (img.width - side) / 2, y0 = (img.height - side) / 2;
            if (std::size_t(k) >= view.scales.size()) {
              x0 = int(rng.below(std::uint64_t(img.width - side + 1)));
              y0 = int(rng.below(std::uint64_t(img.height - side + 1)));
            }
            crops.push_back({i, io::resize(io::detail::window(img, x0, y0, side, false), crop, crop)});
          }
          continue;
        }
        const io::detail::CachedImage img = io::detail::decode_for_crops(file, 1 << 30, crop);
        const int short_side = std::min(img.width, img.height);
        const double f = std::min(1.0, 2.0 * crop / short_side);
        io::detail::CachedImage small = img;
        if (f < 1.0) {
          io::Image full{img.width, img.height, 3, std::vector<float>(img.rgb.size())};
          for (std::size_t k = 0; k < img.rgb.size(); ++k) full.pixels[k] = from_8bit(img.rgb[k]);
          const int w = std::max(crop, int(std::lround(img.width * f)));
          const int h = std::max(crop, int(std::lround(img.height * f)));
          const io::Image scaled = io::resize(full, w, h);
          small = io::detail::CachedImage{w, h, std::vector<std::uint8_t>(scaled.pixels.size())};
          for (std::size_t k = 0; k < scaled.pixels.size(); ++k) small.rgb[k] = to_8bit(scaled.pixels[k]);
        }
        Rng rng(i + 1);
        for (int k = 0; k < crops_per_image; ++k) {
          int x0 = (small.width - crop) / 2, y0 = (small.height - crop) / 2;
          if (k > 0) {
            x0 = int(rng.below(std::uint64_t(small.width - crop + 1)));
            y0 = int(rng.below(std::uint64_t(small.height - crop + 1)));
          }
          crops.push_back({i, io::detail::window(small, x0, y0, crop, false)});
        }
      } catch (const std::exception& e) {
        throw io::IoError("ValidationSet: " + io::detail::with_file(file, e.what()));
      }
    }
    for (std::size_t first = 0; first < crops.size(); first += std::size_t(batch)) {
      const std::size_t n = std::min(crops.size() - first, std::size_t(batch));
      Batch b{Tensor<float, Cpu>(Shape::nchw(std::int64_t(n), 1, crop, crop)),
              Tensor<float, Cpu>(Shape::nchw(std::int64_t(n), 2, crop, crop))};
      for (std::size_t k = 0; k < n; ++k) {
        image_to_lab(crops[first + k].pixels, b.L, &b.ab, std::int64_t(k));
        sources_.push_back(dataset.file(crops[first + k].image));
      }
      batches_.push_back(std::move(b));
    }
  }

  std::size_t size() const { return sources_.size(); }
  std::size_t batch_count() const { return batches_.size(); }
  const Batch& batch(std::size_t i) const { return batches_.at(i); }
  const std::vector<Batch>& batches() const { return batches_; }
  const std::filesystem::path& source(std::size_t crop_index) const { return sources_.at(crop_index); }

 private:
  std::vector<Batch> batches_;
  std::vector<std::filesystem::path> sources_;
};

}  // namespace kiln::color

// The programs (examples/) still spell these kiln::io::; drop once they say kiln::color::.
namespace kiln::io {
using color::Batch;
using color::LoaderOptions;
using color::TrainLoader;
using color::ValidationSet;
using color::ValidationView;
}  // namespace kiln::io
