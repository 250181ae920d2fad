// kiln/io/dataset.hpp — the images of one or more folders, found once, in a fixed order.
//
// Public API (namespace kiln::io):
//   class ImageFolderDataset {
//     ImageFolderDataset() = default;                                  // empty
//     explicit ImageFolderDataset(const std::filesystem::path& folder);
//     explicit ImageFolderDataset(const std::vector<std::filesystem::path>& folders);
//     static ImageFolderDataset from_files(std::vector<std::filesystem::path> files);  // no scan
//     std::size_t size() const;  bool empty() const;
//     const std::filesystem::path& file(std::size_t i) const;
//     const std::vector<std::filesystem::path>& files() const;
//     const std::vector<std::string>& skipped() const;  // unreadable files/folders found by the scan
//     Image load_rgb(std::size_t i) const;               // decoded, 3 channels; IoError names the file
//     std::vector<BadImage> find_bad_images(int min_side, bool full_decode = false) const;
//     void validate(int min_side, bool full_decode = false) const;  // throws IoError listing every bad file
//     DatasetSplit split_by_image(double validation_fraction, std::uint64_t seed) const;
//   };
//   struct BadImage { std::filesystem::path file; std::string reason; };
//   struct DatasetSplit { ImageFolderDataset train, validation; };
//
// Scan: recursive, following symbolic links to folders; a folder reached twice (a symlink loop,
// or two links to one folder) is scanned once (canonical paths of visited folders are kept).
// Files are kept if io::is_image_file_name says so (png, jpg, jpeg, bmp, tga, any case); the list
// of each root folder is sorted (by path, byte-wise) so every run sees the same order. Files that
// cannot be opened for reading, and sub-folders that cannot be listed, are left out and named in
// skipped(); validate() reports them as bad too (fail fast). A root that is missing, not a folder
// or holds no image throws IoError naming it.
#pragma once

#include "kiln/core/random.hpp"
#include "kiln/io/image.hpp"
#include "kiln/io/io_error.hpp"

#include <stb/stb_image.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace kiln::io {

struct BadImage {
  std::filesystem::path file;
  std::string reason;
};

class ImageFolderDataset;
struct DatasetSplit;

class ImageFolderDataset {
 public:
  ImageFolderDataset() = default;
  explicit ImageFolderDataset(const std::filesystem::path& folder) : ImageFolderDataset(std::vector{folder}) {}
  explicit ImageFolderDataset(const std::vector<std::filesystem::path>& folders) {
    if (folders.empty()) throw IoError("ImageFolderDataset: no image folder given");
    for (const auto& folder : folders) scan_root(folder);
  }

  // A dataset of exactly these files, in this order (no scan, no checks).
  static ImageFolderDataset from_files(std::vector<std::filesystem::path> files) {
    ImageFolderDataset d;
    d.files_ = std::move(files);
    return d;
  }

  std::size_t size() const { return files_.size(); }
  bool empty() const { return files_.empty(); }
  const std::filesystem::path& file(std::size_t i) const { return files_.at(i); }
  const std::vector<std::filesystem::path>& files() const { return files_; }
  const std::vector<std::string>& skipped() const { return skipped_; }

  // Decodes image i as RGB (grey replicated, alpha dropped).
  Image load_rgb(std::size_t i) const { return to_rgb(load_image(file(i))); }

  // Every file that cannot be used for crops of min_side pixels, with the reason. By default
  // only headers are read (read_image_header: fast, catches non-images and wrong sizes); full_decode
  // also decodes the pixels (catches damaged image data, slower).
  std::vector<BadImage> find_bad_images(int min_side, bool full_decode = false) const {
    std::vector<BadImage> bad;
    for (const auto& s : skipped_) bad.push_back({{}, s});
    for (const auto& f : files_) {
      std::string reason = check_file(f, min_side, full_decode);
      if (!reason.empty()) bad.push_back({f, std::move(reason)});
    }
    return bad;
  }

  // Throws IoError listing every bad file (one per line) so a run fails at start-up, not hours in.
  void validate(int min_side, bool full_decode = false) const {
    const std::vector<BadImage> bad = find_bad_images(min_side, full_decode);
    if (bad.empty()) return;
    std::string message = std::to_string(bad.size()) + " of " + std::to_string(files_.size() + skipped_.size()) +
                          " images cannot be used (remove or fix them):";
    for (const auto& b : bad)
      message += "\n  " + (b.file.empty() ? b.reason : detail::quoted(b.file) + ": " + b.reason);
    throw IoError(message);
  }

  // Splits BY IMAGE (never by crop): round(fraction * size) images, at least 1, chosen by a
  // permutation seeded by `seed`, go to validation; both halves keep the sorted order.
  DatasetSplit split_by_image(double validation_fraction, std::uint64_t seed) const;

 private:
  void scan_root(const std::filesystem::path& root) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(root, ec);
    if (ec || !fs::exists(status)) {
      throw IoError("image folder " + detail::quoted(root) + " does not exist" +
                    (ec && ec != std::errc::no_such_file_or_directory ? " (" + ec.message() + ")" : ""));
    }
    if (!fs::is_directory(status)) throw IoError("image folder " + detail::quoted(root) + " is not a directory");
    std::vector<fs::path> found;
    std::set<fs::path> visited;
    scan_folder(root, found, visited);
    if (found.empty()) {
      throw IoError("no images (png, jpg, jpeg, bmp, tga) found under " + detail::quoted(root) +
                    (skipped_.empty() ? "" : " (" + std::to_string(skipped_.size()) + " entries could not be read)"));
    }
    std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) { return a.native() < b.native(); });
    files_.insert(files_.end(), found.begin(), found.end());
  }

  void scan_folder(const std::filesystem::path& folder, std::vector<std::filesystem::path>& found,
                   std::set<std::filesystem::path>& visited) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path canonical = fs::canonical(folder, ec);
    if (ec) {
      skipped_.push_back(detail::quoted(folder) + ": cannot resolve the folder (" + ec.message() + ")");
      return;
    }
    if (!visited.insert(canonical).second) return;  // a symlink loop, or a folder linked twice
    fs::directory_iterator it(folder, ec), end;
    if (ec) {
      skipped_.push_back(detail::quoted(folder) + ": cannot list the folder (" + ec.message() + ")");
      return;
    }
    std::vector<fs::path> entries;
    for (; it != end; it.increment(ec)) {
      if (ec) break;
      entries.push_back(it->path());
    }
    if (ec) skipped_.push_back(detail::quoted(folder) + ": listing stopped early (" + ec.message() + ")");
    std::sort(entries.begin(), entries.end(),
              [](const fs::path& a, const fs::path& b) { return a.native() < b.native(); });
    for (const auto& entry : entries) {
      std::error_code sec;
      const fs::file_status st = fs::status(entry, sec);  // follows symlinks
      if (sec) {
        if (is_image_file_name(entry)) {
          skipped_.push_back(detail::quoted(entry) + ": " + sec.message() + " (a broken symbolic link?)");
        }
        continue;
      }
      if (fs::is_directory(st)) {
        scan_folder(entry, found, visited);
      } else if (is_image_file_name(entry)) {
        if (::access(entry.c_str(), R_OK) != 0) {
          const int error = errno;
          skipped_.push_back(detail::quoted(entry) + ": cannot be read (" + detail::errno_text(error) + ")");
        } else if (!fs::is_regular_file(st)) {
          skipped_.push_back(detail::quoted(entry) + ": not a regular file");
        } else {
          found.push_back(entry);
        }
      }
    }
  }

  static std::string check_file(const std::filesystem::path& file, int min_side, bool full_decode) {
    int width = 0, height = 0;
    try {
      if (full_decode) {
        const Image image = load_image(file);
        width = image.width;
        height = image.height;
      } else {
        const std::vector<std::byte> bytes = read_file(file, "image", std::uint64_t(INT_MAX));
        const ImageHeader header = read_image_header(bytes, file);
        width = header.width;
        height = header.height;
      }
    } catch (const std::exception& e) {
      // The list names the file already: drop "cannot read image '<file>': " from the reason.
      std::string reason = e.what();
      const std::string prefix = "cannot read image " + detail::quoted(file) + ": ";
      if (reason.rfind(prefix, 0) == 0) reason.erase(0, prefix.size());
      return reason;
    }
    if (width < min_side || height < min_side) {
      return std::to_string(width) + "x" + std::to_string(height) + " pixels, smaller than the " +
             std::to_string(min_side) + "-pixel crop";
    }
    return {};
  }

  std::vector<std::filesystem::path> files_;
  std::vector<std::string> skipped_;
};

struct DatasetSplit {
  ImageFolderDataset train;
  ImageFolderDataset validation;
};

inline DatasetSplit ImageFolderDataset::split_by_image(double validation_fraction, std::uint64_t seed) const {
  if (!(validation_fraction > 0.0 && validation_fraction < 1.0)) {
    throw IoError("split_by_image: the validation fraction must lie strictly between 0 and 1, got " +
                  std::to_string(validation_fraction));
  }
  if (files_.size() < 2) {
    throw IoError("split_by_image: " + std::to_string(files_.size()) +
                  " image(s) cannot be split into a training and a validation set (give a validation folder)");
  }
  const std::size_t n = files_.size();
  std::size_t n_val = std::size_t(std::llround(validation_fraction * double(n)));
  n_val = std::clamp<std::size_t>(n_val, 1, n - 1);
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  Rng rng(seed);
  for (std::size_t i = n - 1; i > 0; --i) std::swap(order[i], order[std::size_t(rng.below(i + 1))]);
  std::vector<bool> is_val(n, false);
  for (std::size_t i = 0; i < n_val; ++i) is_val[order[i]] = true;
  std::vector<std::filesystem::path> train, val;
  for (std::size_t i = 0; i < n; ++i) (is_val[i] ? val : train).push_back(files_[i]);
  DatasetSplit split{from_files(std::move(train)), from_files(std::move(val))};
  split.train.skipped_ = skipped_;
  return split;
}

}  // namespace kiln::io
