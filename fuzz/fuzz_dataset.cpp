// fuzz/fuzz_dataset.cpp — the data-folder scan (io/dataset.hpp) on hostile folder trees.
//
// The input is a little program that builds a tree in a fresh temporary folder (on tmpfs when
// /dev/shm exists): folders, files with image and non-image names (a valid PNG, empty, truncated,
// a huge size claim, or bytes from the input), symbolic links to folders (loops through an
// ancestor or the root, a link to itself), to files, dangling links, links to /dev/null and
// /dev/zero, FIFOs named like images, and chmod 000 (has no effect when running as root). Then
// ImageFolderDataset scans it, find_bad_images decodes every file, validate and split_by_image run.
//
// Properties: the scan terminates (libFuzzer's -timeout catches a hang), throws nothing but
// IoError, and lists each file once, sorted, under the root, as a regular file with an image
// name; find_bad_images never throws; validate throws IoError exactly when something is bad.
#include "fuzz_common.hpp"

#include <kiln/core/error.hpp>
#include <kiln/io/dataset.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <vector>

namespace fs = std::filesystem;

namespace {

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const { return at_ >= size_; }
  std::uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }
  std::vector<std::byte> bytes(std::size_t n) {
    std::vector<std::byte> out;
    while (n-- > 0 && !empty()) out.push_back(std::byte(byte()));
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

const fs::path& base_folder() {
  static const fs::path base = [] {
    const fs::path parent = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    fs::path dir = parent / ("kiln-fuzz-dataset-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(base_folder(), ec);
    });
    return dir;
  }();
  return base;
}

const std::vector<std::byte>& valid_png() {
  static const std::vector<std::byte> png = [] {
    kiln::io::Image image{3, 2, 3, std::vector<float>(18, 0.5f)};
    const fs::path file = base_folder() / "valid.png";
    kiln::io::save_png(file, image);
    return kiln::io::read_file(file);
  }();
  return png;
}

void write(const fs::path& path, const std::vector<std::byte>& bytes) {
  if (FILE* f = std::fopen(path.c_str(), "wbx")) {  // x: never through an existing link
    if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
}

std::vector<std::byte> content(Input& in) {
  const std::vector<std::byte>& png = valid_png();
  switch (in.byte() % 6) {
    case 0:
      return png;
    case 1:
      return {};
    case 2:
      return {png.begin(), png.begin() + std::ptrdiff_t(png.size() / 2)};  // truncated
    case 3: {  // a PNG whose header claims 100000 x 100000 pixels
      std::vector<std::byte> huge(png.begin(), png.begin() + 33);
      for (int i : {16, 20}) {
        huge[std::size_t(i)] = std::byte(0);
        huge[std::size_t(i) + 1] = std::byte(0x01);
        huge[std::size_t(i) + 2] = std::byte(0x86);
        huge[std::size_t(i) + 3] = std::byte(0xA0);
      }
      return huge;
    }
    case 4: {  // the valid PNG with one byte changed, after the size in IHDR (bytes 16 to 23): a
               // larger size within LoadOptions::max_pixels decodes, legitimately, for seconds
      std::vector<std::byte> damaged = png;
      damaged[24 + in.byte() % (damaged.size() - 24)] ^= std::byte(in.byte() | 1);
      return damaged;
    }
    default: {  // bytes from the input behind "kiln", which no decoder takes (the first bytes of a TGA
                // header could otherwise claim, legitimately, up to max_pixels: seconds under ASan)
      std::vector<std::byte> junk{std::byte('k'), std::byte('i'), std::byte('l'), std::byte('n')};
      const std::vector<std::byte> more = in.bytes(in.byte() % 64);
      junk.insert(junk.end(), more.begin(), more.end());
      return junk;
    }
  }
}

const char* const kNames[] = {"a.png", "b.PNG",     "c.jpg", "d.jpeg", "e.bmp", "f.tga",   "g.txt", "h",
                              ".png",  "i.png.txt", "sub",   "loop",   "x.JPG", "y y.png", "z.gif", "deep"};

void build_and_scan(Input& in, const fs::path& root) {
  std::vector<fs::path> dirs{root};
  std::vector<fs::path> entries;
  std::vector<fs::path> locked;
  for (int op = 0; op < 40 && !in.empty(); ++op) {
    const std::uint8_t kind = in.byte() % 9;
    const fs::path& parent = dirs[in.byte() % dirs.size()];
    const fs::path path = parent / kNames[in.byte() % std::size(kNames)];
    std::error_code ec;
    switch (kind) {
      case 0:
        if (dirs.size() < 12 && fs::create_directory(path, ec) && !ec) dirs.push_back(path);
        break;
      case 1:
      case 2:
        write(path, content(in));
        entries.push_back(path);
        break;
      case 3:  // a link to a folder: an ancestor or the root makes a loop
        fs::create_directory_symlink(dirs[in.byte() % dirs.size()], path, ec);
        break;
      case 4:  // a link to a file, relative or absolute
        if (!entries.empty()) {
          const fs::path& target = entries[in.byte() % entries.size()];
          fs::create_symlink(in.byte() % 2 ? target : fs::path(target.filename()), path, ec);
        }
        break;
      case 5: {  // dangling, self-referencing, or a device
        static const char* const targets[] = {"missing.png", ".", "..", "/dev/null", "/dev/zero", ""};
        const std::uint8_t t = in.byte() % 6;
        fs::create_symlink(t == 5 ? path.filename() : fs::path(targets[t]), path, ec);
        break;
      }
      case 6:
        ::mkfifo(path.c_str(), 0644);
        break;
      case 7:  // unreadable (root reads it anyway)
        if (!entries.empty() || dirs.size() > 1) {
          const fs::path& target = (in.byte() % 2 && dirs.size() > 1)
                                       ? dirs[1 + in.byte() % (dirs.size() - 1)]
                                       : (entries.empty() ? dirs[0] : entries[in.byte() % entries.size()]);
          if (target != root && ::chmod(target.c_str(), 0) == 0) locked.push_back(target);
        }
        break;
      default:  // a folder named like an image
        if (dirs.size() < 12 && fs::create_directory(parent / "folder.png", ec) && !ec)
          dirs.push_back(parent / "folder.png");
        break;
    }
  }

  const int min_side = 1 + in.byte() % 4;
  try {
    const kiln::io::ImageFolderDataset dataset(root);
    const auto& files = dataset.files();
    std::set<std::string> seen;
    for (std::size_t i = 0; i < files.size(); ++i) {
      const fs::path& f = files[i];
      KILN_FUZZ_CHECK(seen.insert(f.native()).second, "'%s' listed twice", f.c_str());
      KILN_FUZZ_CHECK(i == 0 || files[i - 1].native() < f.native(), "the list is not sorted at '%s'", f.c_str());
      KILN_FUZZ_CHECK(f.native().rfind(root.native(), 0) == 0, "'%s' is not under the root", f.c_str());
      KILN_FUZZ_CHECK(kiln::io::is_image_file_name(f), "'%s' has no image name", f.c_str());
      KILN_FUZZ_CHECK(fs::is_regular_file(f), "'%s' is not a regular file", f.c_str());
    }
    KILN_FUZZ_CHECK(!files.empty(), "a scan that found nothing did not throw");
    const auto bad = dataset.find_bad_images(min_side, true);
    const auto bad_headers = dataset.find_bad_images(min_side, false);
    KILN_FUZZ_CHECK(bad_headers.size() <= bad.size(), "header check finds more than full decode");
    bool threw = false;
    try {
      dataset.validate(min_side, true);
    } catch (const kiln::io::IoError&) {
      threw = true;
    }
    KILN_FUZZ_CHECK(threw == !bad.empty(), "validate disagrees with find_bad_images");
    for (std::size_t i = 0; i < dataset.size(); ++i) {
      try {
        const kiln::io::Image image = dataset.load_rgb(i);
        KILN_FUZZ_CHECK(image.channels == 3, "load_rgb gave %d channels", image.channels);
      } catch (const kiln::io::IoError&) {
      }
    }
    if (dataset.size() >= 2) {
      const auto split = dataset.split_by_image(0.3, in.byte());
      KILN_FUZZ_CHECK(split.train.size() + split.validation.size() == dataset.size(), "split lost images");
    }
  } catch (const kiln::io::IoError&) {
    // the expected outcome for a tree without usable images
  }
  for (const auto& p : locked) ::chmod(p.c_str(), 0755);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static unsigned long long run_number = 0;
  const fs::path root = base_folder() / ("t" + std::to_string(run_number++));
  fs::create_directory(root);
  Input in(data, size);
  build_and_scan(in, root);
  std::error_code ec;
  fs::remove_all(root, ec);  // does not follow links
  KILN_FUZZ_CHECK(!ec, "cleaning up %s: %s", root.c_str(), ec.message().c_str());
  return 0;
}
