// A helper for the program tests (tests/programs/*.sh), so they need nothing but bash:
//   testtool compare A.safetensors B.safetensors [TOLERANCE [OPTIMIZER_TOLERANCE]]
//                                                               every tensor equal (max |a-b| <= TOLERANCE, default 0;
//                                                               optimizer.* tensors: OPTIMIZER_TOLERANCE, default
//                                                               TOLERANCE)
//   testtool metadata FILE KEY                                  prints a metadata value
//   testtool finite FILE                                        every F32 value is finite (else names the tensor)
//   testtool make-image W H OUT.png                             a colourful test picture
//   testtool image-size FILE                                    prints "W H"
//   testtool image-diff A B                                     prints the largest difference in 8-bit levels
//   testtool set-metadata IN KEY VALUE OUT                      a copy with one metadata value changed (checksums
//   redone) testtool make-bmp W H OUT.bmp                               an uncompressed 24-bit BMP
#include <kiln/io/image.hpp>
#include <kiln/io/safetensors.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace io = kiln::io;

static int compare(const char* a_path, const char* b_path, double tolerance, double optimizer_tolerance) {
  const io::SafetensorsFile a = io::load_safetensors(a_path), b = io::load_safetensors(b_path);
  int bad = 0;
  if (a.names().size() != b.names().size()) {
    std::printf("different tensor counts: %zu vs %zu\n", a.names().size(), b.names().size());
    ++bad;
  }
  double worst = 0, worst_opt = 0;
  std::string worst_name, worst_opt_name;
  for (const io::TensorRecord& ra : a.tensors) {
    if (!b.contains(ra.name)) {
      std::printf("'%s' only in %s\n", ra.name.c_str(), a_path);
      ++bad;
      continue;
    }
    const io::TensorRecord& rb = b.get(ra.name);
    if (ra.dtype != rb.dtype || ra.shape != rb.shape) {
      std::printf("'%s': dtype or shape differ\n", ra.name.c_str());
      ++bad;
      continue;
    }
    if (ra.dtype == io::DType::F32) {
      const auto va = ra.to_vector<float>(), vb = rb.to_vector<float>();
      const bool opt = ra.name.rfind("optimizer.", 0) == 0;
      double& w = opt ? worst_opt : worst;
      std::string& wn = opt ? worst_opt_name : worst_name;
      for (std::size_t i = 0; i < va.size(); ++i) {
        const double d = std::fabs(double(va[i]) - double(vb[i]));
        if (!(d <= w) && !(std::isnan(va[i]) && std::isnan(vb[i]))) {
          w = std::isnan(d) ? INFINITY : d;
          wn = ra.name;
        }
      }
    } else if (ra.data != rb.data) {
      std::printf("'%s': values differ\n", ra.name.c_str());
      ++bad;
    }
  }
  for (const char* key : {"kiln.train.epoch", "kiln.train.step", "kiln.train.step_in_epoch",
                          "kiln.train.optimizer_steps", "kiln.train.loader_state"}) {
    const auto ia = a.metadata.find(key), ib = b.metadata.find(key);
    const std::string va = ia == a.metadata.end() ? "<none>" : ia->second;
    const std::string vb = ib == b.metadata.end() ? "<none>" : ib->second;
    if (va != vb) {
      std::printf("metadata %s differs: '%s' vs '%s'\n", key, va.c_str(), vb.c_str());
      ++bad;
    }
  }
  if (worst_opt > worst && optimizer_tolerance == tolerance) worst = worst_opt, worst_name = worst_opt_name;
  std::printf("%zu tensors compared; largest difference %.3g%s%s\n", a.tensors.size(), worst,
              worst_name.empty() ? "" : " in ", worst_name.c_str());
  if (optimizer_tolerance != tolerance)
    std::printf("largest difference in the optimizer's state %.3g%s%s\n", worst_opt,
                worst_opt_name.empty() ? "" : " in ", worst_opt_name.c_str());
  if (worst > tolerance || worst_opt > optimizer_tolerance) ++bad;
  std::printf(bad ? "DIFFERENT\n" : "SAME\n");
  return bad ? 1 : 0;
}

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "compare" && argc >= 4 && argc <= 6) {
      const double tolerance = argc >= 5 ? std::atof(argv[4]) : 0.0;
      return compare(argv[2], argv[3], tolerance, argc == 6 ? std::atof(argv[5]) : tolerance);
    }
    if (cmd == "metadata" && argc == 4) {
      const io::SafetensorsFile f = io::load_safetensors(argv[2]);
      const auto it = f.metadata.find(argv[3]);
      if (it == f.metadata.end()) return 1;
      std::printf("%s\n", it->second.c_str());
      return 0;
    }
    if (cmd == "finite" && argc == 3) {
      const io::SafetensorsFile f = io::load_safetensors(argv[2]);
      int bad = 0;
      for (const io::TensorRecord& r : f.tensors) {
        if (r.dtype != io::DType::F32) continue;
        const auto v = r.to_vector<float>();
        const auto n = std::count_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
        if (n > 0) std::printf("'%s': %td of %zu values are not finite\n", r.name.c_str(), n, v.size()), ++bad;
      }
      if (bad)
        std::printf("NOT FINITE\n");
      else
        std::printf("FINITE (%zu tensors)\n", f.tensors.size());
      return bad ? 1 : 0;
    }
    if (cmd == "make-image" && argc == 5) {
      const int w = std::atoi(argv[2]), h = std::atoi(argv[3]);
      io::Image im{w, h, 3, std::vector<float>(std::size_t(w) * std::size_t(h) * 3)};
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          im.at(x, y, 0) = float(x) / float(std::max(w - 1, 1));
          im.at(x, y, 1) = float(y) / float(std::max(h - 1, 1));
          im.at(x, y, 2) = ((x / 8 + y / 8) % 2) ? 0.8f : 0.2f;
        }
      io::save_png(argv[4], im);
      return 0;
    }
    if (cmd == "image-size" && argc == 3) {
      const io::Image im = io::load_image(argv[2]);
      std::printf("%d %d\n", im.width, im.height);
      return 0;
    }
    if (cmd == "image-diff" && argc == 4) {
      const io::Image a = io::load_image(argv[2]), b = io::load_image(argv[3]);
      if (a.width != b.width || a.height != b.height || a.channels != b.channels) {
        std::printf("sizes differ\n");
        return 1;
      }
      double worst = 0;
      for (std::size_t i = 0; i < a.pixels.size(); ++i)
        worst = std::max(worst, std::fabs(double(a.pixels[i]) - double(b.pixels[i])));
      std::printf("%.0f\n", worst * 255.0);
      return 0;
    }
    if (cmd == "set-metadata" && argc == 6) {
      io::SafetensorsFile f = io::load_safetensors(argv[2]);
      f.metadata[argv[3]] = argv[4];
      f.metadata.erase(std::string(io::kChecksumKey));
      f.metadata.erase(std::string(io::kHeaderChecksumKey));
      io::save_safetensors(argv[5], f.tensors, f.metadata);
      return 0;
    }
    if (cmd == "make-bmp" && argc == 5) {
      const int w = std::atoi(argv[2]), h = std::atoi(argv[3]);
      const int row = (w * 3 + 3) / 4 * 4;
      std::vector<unsigned char> b(54 + std::size_t(row) * std::size_t(h), 0);
      auto le = [&](std::size_t at, std::uint32_t v, int n) {
        for (int i = 0; i < n; ++i) b[at + std::size_t(i)] = static_cast<unsigned char>(v >> (8 * i));
      };
      b[0] = 'B', b[1] = 'M';
      le(2, std::uint32_t(b.size()), 4), le(10, 54, 4), le(14, 40, 4), le(18, std::uint32_t(w), 4);
      le(22, std::uint32_t(h), 4), le(26, 1, 2), le(28, 24, 2);
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          for (int c = 0; c < 3; ++c)
            b[54 + std::size_t(y) * std::size_t(row) + std::size_t(x) * 3 + std::size_t(c)] =
                static_cast<unsigned char>((x * 7 + y * 3 + c * 80) & 255);
      FILE* out = std::fopen(argv[4], "wb");
      if (!out || std::fwrite(b.data(), 1, b.size(), out) != b.size() || std::fclose(out) != 0) return 1;
      return 0;
    }
    std::fprintf(stderr,
                 "usage: testtool compare A B [TOL] | metadata FILE KEY | finite FILE | make-image W H OUT | "
                 "image-size FILE | image-diff A B | set-metadata IN KEY VALUE OUT | make-bmp W H OUT\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "testtool: %s\n", e.what());
    return 1;
  }
}
