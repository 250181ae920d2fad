// kiln-train's data: folders, presets and splits; every image decoded once; the memory check.
#include "data.hpp"

#include <kiln/io/image.hpp>
#include <kiln/io/read_file.hpp>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "../common/cli.hpp"
#include "../common/image_complete.hpp"
#include "../common/paths.hpp"

namespace kiln::programs {

namespace fs = std::filesystem;

// The folder that holds the presets' photos: $KILN_DATA_DIR, ./data/photos, or the source tree's.
static fs::path preset_root() {
  if (const char* env = std::getenv("KILN_DATA_DIR"); env && *env) return env;
  if (fs::is_directory("data/photos")) return "data/photos";
#ifdef KILN_SOURCE_DIR
  if (fs::is_directory(fs::path(KILN_SOURCE_DIR) / "data/photos")) return fs::path(KILN_SOURCE_DIR) / "data/photos";
#endif
  return "data/photos";
}

// *folder_of: the index in `folders` of each file found (for --data-repeat, applied after a split).
static io::ImageFolderDataset scan_folders(const std::vector<std::string>& folders,
                                           std::map<fs::path, std::size_t>* folder_of = nullptr) {
  std::vector<fs::path> files;
  for (std::size_t i = 0; i < folders.size(); ++i) {
    const std::string& folder = folders[i];
    try {
      const io::ImageFolderDataset d{fs::path(folder)};
      for (const std::string& skipped : d.skipped()) print_warning(kTrainProgram, "skipping " + skipped);
      files.insert(files.end(), d.files().begin(), d.files().end());
      if (folder_of)
        for (const fs::path& f : d.files()) (*folder_of)[f] = i;
    } catch (const std::exception& e) {
      // The io message ends "... found under '<folder>'": said with the folder first instead.
      if (std::string(e.what()).rfind("no images", 0) == 0)
        throw ProgramError(folder, "the folder holds no images (png, jpg, jpeg, bmp or tga; searched recursively)");
      throw file_error(folder, e);
    }
  }
  return io::ImageFolderDataset::from_files(std::move(files));
}

// The size of every image, found by decoding it fully (fail fast: an image whose header is fine
// but whose data is cut would otherwise stop training when the loader first reaches it, epochs
// later). Each decode is checked against the memory budget first. Prints one line per unusable
// image and stops the run.
static void check_images(const io::ImageFolderDataset& d, int min_side, const MemoryBudget& budget,
                         std::map<fs::path, ImageSize>& sizes) {
  bool bad = false;
  auto report = [&](const fs::path& file, const std::string& reason) {
    print_error(kTrainProgram, file.empty() ? reason : file.string() + ": " + without_quoted(reason, file.string()));
    bad = true;
  };
  for (const std::string& s : d.skipped()) report({}, s);
  for (const fs::path& file : d.files()) {
    try {
      const std::vector<std::byte> bytes = io::read_file(file, "image", std::uint64_t(INT_MAX));
      const io::ImageHeader h = io::read_image_header(bytes, file);
      // stb's 8/16-bit pixels and kiln's floats (6 bytes a channel), then the RGB copy (12).
      const std::uint64_t decode =
          std::uint64_t(h.width) * std::uint64_t(h.height) * std::uint64_t(6 * h.channels + 12);
      check_memory(budget, file.string(), "decoding it",
                   {{std::to_string(h.width) + "x" + std::to_string(h.height) + " pixels, decoded", decode}},
                   "remove it or make it smaller, or allow more with --max-memory");
      if (const std::string problem = incomplete_image_problem(bytes); !problem.empty()) {
        report(file, problem);
        continue;
      }
      const io::Image image = io::decode_image(bytes, file);
      if (image.width < min_side || image.height < min_side) {
        report(file, std::to_string(image.width) + "x" + std::to_string(image.height) + " pixels, smaller than the " +
                         std::to_string(min_side) + "-pixel crop");
        continue;
      }
      sizes[file] = {image.width, image.height, image.channels};
    } catch (const ProgramError& e) {
      report({}, e.what());
    } catch (const std::exception& e) {
      std::string reason = message_of(e);
      for (const std::string& prefix :
           {"cannot read image '" + file.string() + "': ", "cannot decode image '" + file.string() + "': "})
        if (reason.rfind(prefix, 0) == 0) reason.erase(0, prefix.size());
      report(file, reason);
    }
  }
  if (bad) throw AlreadyReported{exit_error};
}

// Folders that would make a run wrong without an error: the same folder twice, a validation
// folder overlapping a training folder (its images would be trained on and scored), and an
// output folder inside a data folder (the next run would train on loss.png and samples.png).
static void check_folders(const std::vector<std::string>& train, const std::vector<std::string>& val,
                          const fs::path& out) {
  std::vector<std::pair<std::string, const char*>> all;
  for (const std::string& f : train) all.push_back({f, "--data"});
  for (const std::string& f : val) all.push_back({f, "--val"});
  for (std::size_t i = 0; i < all.size(); ++i) {
    for (std::size_t j = i + 1; j < all.size(); ++j) {
      const auto& [a, oa] = all[i];
      const auto& [b, ob] = all[j];
      const bool same = is_same_or_inside(a, b) && is_same_or_inside(b, a);
      const bool crossing = std::string(oa) != ob;
      if (same)
        throw usage_error(std::string(ob), "'" + b + "' is the same folder as '" + a + "' (" + oa + ")" +
                                               (crossing ? ": validation images must not be training images; give "
                                                           "another --val folder, or --val-split F"
                                                         : ": give each folder once"));
      if (is_same_or_inside(b, a) || is_same_or_inside(a, b)) {
        const bool b_inside = is_same_or_inside(b, a);
        const auto& [inner, oi] = b_inside ? all[j] : all[i];
        const auto& [outer, oo] = b_inside ? all[i] : all[j];
        throw usage_error(std::string(oi), "'" + inner + "' lies inside '" + outer + "' (" + oo +
                                               "), whose images are " +
                                               "searched recursively: its images would be used twice" +
                                               (crossing ? ", for training and for validation" : "") +
                                               "; give folders that do not overlap");
      }
    }
  }
  for (const auto& [f, option] : all)
    if (is_same_or_inside(out, f))
      throw usage_error("--out", "'" + out.string() + "' lies inside the " +
                                     (std::string(option) == "--val" ? "validation" : "training") + " folder '" + f +
                                     "': the run's loss.png and samples.png would become images of "
                                     "the next run; choose an --out folder outside the data");
}

DataSets find_data(const TrainConfig& c, const MemoryBudget& budget) {
  DataSets d;
  std::vector<std::string> train_folders = c.data, val_folders = c.val;
  if (!c.preset.empty()) {
    const fs::path root = preset_root() / c.preset;
    for (const char* part : {"train", "val"}) {
      if (!fs::is_directory(root / part))
        throw ProgramError((root / part).string(),
                           "the '" + c.preset +
                               "' photos are not installed: run 'bash scripts/install-data.sh --preset " + c.preset +
                               "' (or give --data DIR)");
    }
    train_folders.push_back((root / "train").string());
    if (val_folders.empty() && !(c.val_split > 0)) val_folders.push_back((root / "val").string());
  }
  if (train_folders.empty())
    throw usage_error("--data", "no training images: give --data DIR... or --preset default|street");
  check_folders(train_folders, val_folders, c.out);
  std::map<fs::path, std::size_t> folder_of;
  d.train = scan_folders(train_folders, &folder_of);
  if (!val_folders.empty()) {
    check_images(d.train, c.crop, budget, d.sizes);
    d.val = scan_folders(val_folders);
    check_images(d.val, c.crop, budget, d.sizes);
    d.val_origin = "from " + std::to_string(val_folders.size()) + " folder(s)";
  } else {
    const double fraction = c.val_split > 0 ? c.val_split : 0.1;
    // Checked before the split, so that a folder whose one "image" is not one hears that first.
    check_images(d.train, c.crop, budget, d.sizes);
    if (d.train.size() < 2)
      throw ProgramError(train_folders.front(), "holds only one image (" + d.train.file(0).string() +
                                                    "): cannot split off validation images (give --val DIR)");
    io::DatasetSplit split = d.train.split_by_image(fraction, c.seed);
    d.train = std::move(split.train);
    d.val = std::move(split.validation);
    char buf[64];
    std::snprintf(buf, sizeof buf, "split off %.0f%% of the training images", fraction * 100);
    d.val_origin = buf;
  }
  if (!c.data_repeat.empty()) {  // after the split, so that no image is on both sides of it
    std::vector<fs::path> files;
    for (std::size_t folder = 0; folder < c.data_repeat.size(); ++folder)
      for (int r = 0; r < c.data_repeat[folder]; ++r)
        for (const fs::path& f : d.train.files())
          if (folder_of[f] == folder) files.push_back(f);
    for (const fs::path& f : d.train.files())  // the preset's folder, after the --data folders
      if (folder_of[f] >= c.data_repeat.size()) files.push_back(f);
    d.train = io::ImageFolderDataset::from_files(std::move(files));
  }
  return d;
}

void check_training_memory(const TrainConfig& c, const DataSets& data, const MemoryBudget& budget, std::uint64_t arena,
                           long long parameter_count) {
  if (budget.bytes == 0) return;
  const std::uint64_t params = std::uint64_t(parameter_count) * 4 * 4;
  std::uint64_t cache = 0, largest = 0;
  const double max_side = std::max(c.loader_max_side, c.crop);
  for (const auto& [file, sz] : data.sizes) {
    const double f = std::min(1.0, max_side / std::max(sz.width, sz.height));
    cache += std::uint64_t(std::ceil(sz.width * f)) * std::uint64_t(std::ceil(sz.height * f)) * 3;
    largest =
        std::max(largest, std::uint64_t(sz.width) * std::uint64_t(sz.height) * std::uint64_t(6 * sz.channels + 12));
  }
  const std::uint64_t val_crops = std::uint64_t(data.val.size()) * std::uint64_t(std::max(1, c.val_crops)) *
                                  std::uint64_t(c.crop) * std::uint64_t(c.crop) * 3 * 4;
  const int threads = omp_get_max_threads();
  check_memory(budget, c.out, "this run",
               {{"the network for a batch of " + std::to_string(c.batch) + " crops of " + std::to_string(c.crop) +
                     " pixels on " + std::to_string(threads) + (threads == 1 ? " thread" : " threads"),
                 arena},
                {"parameters, gradients and optimizer state", params},
                {"the loader's cache of " + std::to_string(data.sizes.size()) + " images", cache},
                {"the validation crops", val_crops},
                {"the largest image, decoded", largest},
                program_allowance()},
               "use a smaller --batch or --crop, fewer --threads, a smaller --loader-max-side, or allow more with "
               "--max-memory");
}

}  // namespace kiln::programs
