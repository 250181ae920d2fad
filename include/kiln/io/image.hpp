// kiln/io/image.hpp — decode, encode and resize images with stb.
//
// Linking: the stb implementations come from Debian's prebuilt libstb (-lstb), which the
// kiln::kiln CMake target links; kiln never defines STB_IMAGE_IMPLEMENTATION itself, so any
// number of translation units may include this header.
//
// Pixels are float 0..1, interleaved (row-major, channels of one pixel adjacent), sRGB-encoded
// as stored in the file. Float keeps the full precision of 16-bit PNGs.
//
// Thread safety: decoding works on a buffer kiln read itself, so several threads may load
// images at once. stb keeps its failure reason (stbi_failure_reason) in a global, which Debian's
// libstb builds as thread_local; kiln reads it immediately after the failing call.
// EXIF orientation is not applied (stb ignores it): a rotated JPEG loads as stored.
#pragma once

#include "kiln/io/separate.hpp"
#include "kiln/io/color.hpp"
#include "kiln/io/atomic_file.hpp"
#include "kiln/io/io_error.hpp"
#include "kiln/io/read_file.hpp"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::io {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;           // 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
  std::vector<float> pixels;  // width * height * channels values in 0..1, interleaved

  std::size_t pixel_count() const { return std::size_t(width) * std::size_t(height); }
  float& at(int x, int y, int c) {
    return pixels[(std::size_t(y) * std::size_t(width) + std::size_t(x)) * std::size_t(channels) + std::size_t(c)];
  }
  float at(int x, int y, int c) const {
    return pixels[(std::size_t(y) * std::size_t(width) + std::size_t(x)) * std::size_t(channels) + std::size_t(c)];
  }
};

struct LoadOptions {
  // Images claiming more pixels are refused before anything is allocated: a crafted or
  // corrupt header could otherwise ask for gigabytes. 64 Mi pixels (8192 x 8192) decode to
  // 1 GiB of floats for RGBA.
  std::uint64_t max_pixels = std::uint64_t(64) << 20;  // 67,108,864
};

// True for the extensions load_image is meant for: png, jpg, jpeg, bmp, tga (any case).
KILN_IO_ENTRY bool is_image_file_name(const std::filesystem::path& path);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY bool is_image_file_name(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tga";
}
#endif

namespace detail {

inline std::string stb_reason() {
  const char* reason = stbi_failure_reason();
  return reason ? reason : "unknown reason";
}

// " (stb_image: <reason>)", or "" when stb's reason says nothing: for an unknown PNG chunk stb
// writes the chunk's type into its message buffer, so a file cut inside a chunk header gave
// "(stb_image: )" or "(stb_image: IE)".
inline std::string stb_reason_suffix() {
  const std::string reason = stb_reason();
  if (reason.size() < 5) return {};
  return " (stb_image: " + reason + ")";
}

// Width and height from a PNG's IHDR (always the first chunk, at a fixed offset), or false when
// the bytes are not a PNG. stb refuses PNGs over 2^30 decoded bytes inside stbi_info with only
// "too large"; reading the header ourselves lets the message say how large and name the limit.
inline bool png_dimensions(std::span<const std::byte> file, std::uint64_t& width, std::uint64_t& height) {
  static constexpr unsigned char signature[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',
                                                0,    0,   0,   13,  'I',  'H',  'D',  'R'};
  if (file.size() < 24) return false;
  for (std::size_t i = 0; i < sizeof signature; ++i) {
    if (std::to_integer<unsigned char>(file[i]) != signature[i]) return false;
  }
  auto big_endian = [&](std::size_t at) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | std::to_integer<unsigned char>(file[at + i]);
    return v;
  };
  width = big_endian(16);
  height = big_endian(20);
  return true;
}

// stb_image also decodes GIF, PSD, PIC, PNM and Radiance HDR. kiln reads only the four formats
// it documents: stb's decoders are not hardened against hostile files, and the fewer of them a
// crafted file can reach, the smaller the risk. Returns the format's name, or nullptr for bytes
// that may be PNG, JPEG, BMP or TGA. (stb tries JPEG, PNG and BMP first; their signatures differ
// from all of these, so this refuses nothing stb would have read as one of kiln's formats.)
inline const char* unsupported_stb_format(std::span<const std::byte> file) {
  auto starts_with = [&](std::string_view magic) {
    if (file.size() < magic.size()) return false;
    for (std::size_t i = 0; i < magic.size(); ++i) {
      if (std::to_integer<unsigned char>(file[i]) != static_cast<unsigned char>(magic[i])) return false;
    }
    return true;
  };
  if (starts_with("GIF8")) return "GIF";
  if (starts_with("8BPS")) return "PSD";
  if (starts_with("\x53\x80\xF6\x34")) return "Softimage PIC";
  if (starts_with("P5") || starts_with("P6")) return "PNM (PGM/PPM)";
  if (starts_with("#?RADIANCE\n") || starts_with("#?RGBE\n")) return "Radiance HDR";
  return nullptr;
}

// Empty when stb_image may read the JPEG's Huffman tables safely, else what is wrong. stb_image
// 2.27 (Debian 12's libstb; both found by fuzz/fuzz_image.cpp):
// * a DHT segment declaring more than 256 codes in one table makes it write past the end of its
//   code-length table, a heap buffer overflow (upstream 2.28 refuses them, as here);
// * a scan using a table no DHT defined makes it decode with uninitialised heap memory, which
//   ends in a failed assert (Debian builds libstb with asserts: the process aborts).
// Walks the markers as stb reads them: SOI after any fill bytes, bytes between segments skipped,
// segments skipped by their length, scan data walked up to the next marker (FF followed by
// anything but 00, a fill FF or a restart marker), stopping at EOI. Reads past the end count as
// 0, as in stb. Not a JPEG: empty.
KILN_IO_ENTRY std::string jpeg_huffman_problem(std::span<const std::byte> file);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY std::string jpeg_huffman_problem(std::span<const std::byte> file) {
  const std::size_t size = file.size();
  auto at = [&](std::size_t i) -> std::size_t { return i < size ? std::to_integer<std::size_t>(file[i]) : 0; };
  std::size_t p = 0;
  if (at(p) != 0xFF) return {};
  while (p < size && at(p) == 0xFF) ++p;
  if (at(p) != 0xD8) return {};  // no SOI: not a JPEG
  ++p;
  bool defined[2][4] = {};  // [DC, AC][table]
  bool progressive = false;
  while (p < size) {
    if (at(p) != 0xFF) {
      ++p;
      continue;
    }
    std::size_t q = p + 1;
    while (q < size && at(q) == 0xFF) ++q;  // fill bytes
    if (q >= size) break;
    const std::size_t marker = at(q);
    p = q + 1;
    if (marker == 0x00 || marker == 0x01 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7)) continue;
    if (marker == 0xD9) break;  // EOI: stb reads no further
    const std::size_t length = (at(p) << 8) | at(p + 1);
    if (marker == 0xC0 || marker == 0xC1 || marker == 0xC2) progressive = marker == 0xC2;
    if (marker == 0xC4) {  // DHT
      std::size_t r = p + 2;
      long long left = static_cast<long long>(length) - 2;
      while (left > 0) {
        const std::size_t table = at(r++);
        if ((table >> 4) > 1 || (table & 15) > 3) break;  // stb refuses this table itself
        std::size_t codes = 0;
        for (int i = 0; i < 16; ++i) codes += at(r++);
        if (codes > 256) return "a Huffman table declares " + std::to_string(codes) + " codes, more than 256";
        defined[table >> 4][table & 15] = true;
        r += codes;
        left -= 17 + static_cast<long long>(codes);
      }
    }
    if (marker == 0xDA) {  // SOS: the tables each component of the scan uses must exist
      const std::size_t components = at(p + 2);
      const std::size_t spectral_start = at(p + 3 + 2 * components);
      const std::size_t approximation_high = at(p + 5 + 2 * components) >> 4;
      const bool uses_dc = !progressive || (spectral_start == 0 && approximation_high == 0);
      const bool uses_ac = !progressive || spectral_start != 0;
      for (std::size_t c = 0; c < components && c < 4; ++c) {
        const std::size_t tables = at(p + 4 + 2 * c);
        if ((tables >> 4) > 3 || (tables & 15) > 3) break;  // stb refuses the scan itself
        if ((uses_dc && !defined[0][tables >> 4]) || (uses_ac && !defined[1][tables & 15])) {
          return "a scan uses a Huffman table that was never defined";
        }
      }
    }
    p += length;  // SOS: its header; the scan data after it is walked byte by byte
  }
  return {};
}
#endif

// Empty when the PNG's IDAT chunks fit in the file, else what is wrong. stb_image grows its
// buffer for the compressed data to a chunk's declared length before reading the chunk, so a
// 100-byte file whose IDAT claims 2 GB made it allocate 2 GB (found by fuzz/fuzz_dataset.cpp).
// Walks the chunks as stb does (length, type, data, CRC), up to IEND; not a PNG: empty.
inline std::string png_chunk_problem(std::span<const std::byte> file) {
  std::uint64_t w = 0, h = 0;
  if (!png_dimensions(file, w, h)) return {};
  auto big_endian = [&](std::size_t at) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | std::to_integer<unsigned char>(file[at + i]);
    return v;
  };
  std::size_t at = 8;
  while (file.size() - at >= 8) {
    const std::uint64_t length = big_endian(at);
    const std::uint64_t type = big_endian(at + 4);
    const std::uint64_t left = file.size() - at - 8;
    if (type == 0x49444154u && length > left) {  // "IDAT"
      return "an IDAT chunk declares " + with_thousands(length) + " bytes but only " + with_thousands(left) +
             " follow: the file is truncated or damaged";
    }
    if (type == 0x49454E44u) return {};  // "IEND"
    if (length + 4 > left) break;        // the last chunk, cut
    at += 8 + std::size_t(length) + 4;
  }
  // stb fails on such a file too, but with the type bytes it read past the end as its reason.
  return "the file ends before its IEND chunk (the end of every PNG): it is truncated";
}

struct StbFree {
  void operator()(void* p) const { stbi_image_free(p); }
};

KILN_IO_ENTRY void check_image(const Image& image, const char* action);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY void check_image(const Image& image, const char* action) {
  if (image.width <= 0 || image.height <= 0) {
    throw IoError(std::string("cannot ") + action + " an image of " + std::to_string(image.width) + "x" +
                  std::to_string(image.height) + " pixels");
  }
  if (image.channels < 1 || image.channels > 4) {
    throw IoError(std::string("cannot ") + action + " an image with " + std::to_string(image.channels) +
                  " channels (1 to 4 are supported)");
  }
  if (image.pixels.size() != image.pixel_count() * std::size_t(image.channels)) {
    throw IoError(std::string("cannot ") + action + " an image whose pixel buffer holds " +
                  std::to_string(image.pixels.size()) + " values instead of " + std::to_string(image.width) + "x" +
                  std::to_string(image.height) + "x" + std::to_string(image.channels));
  }
}
#endif

}  // namespace detail

struct ImageHeader {
  int width = 0, height = 0, channels = 0;
};

// The size of the PNG, JPEG, BMP or TGA image in `file` from its header alone (fast: nothing is
// decoded), after the checks decode_image makes before decoding. Throws IoError naming
// `name_for_messages`: empty, not an image kiln reads, damaged header, or too large.
KILN_IO_ENTRY ImageHeader read_image_header(std::span<const std::byte> file,
                                            const std::filesystem::path& name_for_messages,
                                            const LoadOptions& options = {});
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY ImageHeader read_image_header(std::span<const std::byte> file,
                                            const std::filesystem::path& name_for_messages,
                                            const LoadOptions& options) {
  const std::string name = detail::quoted(name_for_messages);
  if (file.empty()) throw IoError("cannot read image " + name + ": the file is empty (0 bytes)");
  // stb takes the buffer length as an int.
  if (file.size() > std::size_t(INT_MAX)) {
    throw IoError("cannot read image " + name + ": it is " + detail::with_thousands(file.size()) +
                  " bytes, over the limit of " + detail::with_thousands(std::uint64_t(INT_MAX)) + " bytes");
  }
  const auto* data = reinterpret_cast<const stbi_uc*>(file.data());
  const int length = static_cast<int>(file.size());

  // Dimensions first (stb reads only the header), so a huge claim is refused before allocating.
  const std::string limit =
      "kiln's limit of " + detail::with_thousands(options.max_pixels) + " pixels (LoadOptions::max_pixels)";
  auto refuse_if_too_large = [&](std::uint64_t w, std::uint64_t h) {
    if (w * h > options.max_pixels) {  // each factor < 2^32: no overflow
      throw IoError("cannot read image " + name + ": it claims " + std::to_string(w) + "x" + std::to_string(h) +
                    " pixels, over " + limit);
    }
  };
  if (const char* format = detail::unsupported_stb_format(file)) {
    throw IoError("cannot read image " + name + ": it is a " + format + " file; kiln reads PNG, JPEG, BMP and TGA");
  }
  if (const std::string problem = detail::jpeg_huffman_problem(file); !problem.empty()) {
    throw IoError("cannot read image " + name + ": the JPEG is damaged (" + problem + ")");
  }
  std::uint64_t png_width = 0, png_height = 0;
  if (detail::png_dimensions(file, png_width, png_height)) refuse_if_too_large(png_width, png_height);
  if (const std::string problem = detail::png_chunk_problem(file); !problem.empty()) {
    throw IoError("cannot decode image " + name + ": " + problem);
  }

  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(data, length, &width, &height, &channels)) {
    const std::string reason = detail::stb_reason();
    if (reason == "too large") {
      throw IoError("cannot read image " + name +
                    ": its header claims more pixels than stb_image can decode "
                    "(and " +
                    limit + " is the most kiln accepts)");
    }
    throw IoError("cannot read image " + name + ": not a PNG, JPEG, BMP or TGA image kiln can decode" +
                  detail::stb_reason_suffix());
  }
  if (width <= 0 || height <= 0) {
    throw IoError("cannot read image " + name + ": its header claims " + std::to_string(width) + "x" +
                  std::to_string(height) + " pixels");
  }
  refuse_if_too_large(std::uint64_t(width), std::uint64_t(height));
  return {width, height, channels};
}
#endif

// Decodes the bytes of a PNG, JPEG, BMP or TGA file held in memory (8 or 16 bits per channel,
// 1 to 4 channels; the other formats stb reads are refused, see unsupported_stb_format).
// `name_for_messages` only names the source in messages. Throws IoError naming it: empty, not an
// image, too large, or damaged.
KILN_IO_ENTRY Image decode_image(std::span<const std::byte> file, const std::filesystem::path& name_for_messages,
                                 const LoadOptions& options = {});
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY Image decode_image(std::span<const std::byte> file, const std::filesystem::path& name_for_messages,
                                 const LoadOptions& options) {
  const ImageHeader header = read_image_header(file, name_for_messages, options);
  const std::string name = detail::quoted(name_for_messages);
  const auto* data = reinterpret_cast<const stbi_uc*>(file.data());
  const int length = static_cast<int>(file.size());
  int width = 0, height = 0, channels = 0;
  // Before anything is allocated for the decoded pixels: the size limit relies on it.
  auto check_decoded_size = [&] {
    if (width != header.width || height != header.height) {
      throw IoError("cannot decode image " + name + ": its header claims " + std::to_string(header.width) + "x" +
                    std::to_string(header.height) + " pixels but it decodes to " + std::to_string(width) + "x" +
                    std::to_string(height));
    }
    if (channels < 1 || channels > 4) {
      throw IoError("cannot read image " + name + ": it has " + std::to_string(channels) +
                    " channels (1 to 4 are supported)");
    }
  };

  Image image;
  if (stbi_is_16_bit_from_memory(data, length)) {
    std::unique_ptr<stbi_us, detail::StbFree> decoded(
        stbi_load_16_from_memory(data, length, &width, &height, &channels, 0));
    if (!decoded)
      throw IoError("cannot decode image " + name +
                    ": the image data is damaged, truncated or uses an unsupported variant" +
                    detail::stb_reason_suffix());
    check_decoded_size();
    image = Image{width, height, channels, {}};
    image.pixels.resize(image.pixel_count() * std::size_t(channels));
    for (std::size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = float(decoded.get()[i]) / 65535.0f;
  } else {
    std::unique_ptr<stbi_uc, detail::StbFree> decoded(
        stbi_load_from_memory(data, length, &width, &height, &channels, 0));
    if (!decoded)
      throw IoError("cannot decode image " + name +
                    ": the image data is damaged, truncated or uses an unsupported variant" +
                    detail::stb_reason_suffix());
    check_decoded_size();
    image = Image{width, height, channels, {}};
    image.pixels.resize(image.pixel_count() * std::size_t(channels));
    for (std::size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = from_8bit(decoded.get()[i]);
  }
  return image;
}
#endif

// Reads and decodes a PNG, JPEG, BMP or TGA file (see decode_image). Throws IoError naming the
// file: missing, not a regular file, unreadable, empty, not an image, too large, or damaged.
inline Image load_image(const std::filesystem::path& path, const LoadOptions& options = {}) {
  const std::vector<std::byte> file = read_file(path, "image", std::uint64_t(INT_MAX));
  return decode_image(file, path, options);
}

// 3 channels. Grey is replicated; alpha is dropped, not composited: a transparent pixel keeps
// whatever colour the file stores under it.
KILN_IO_ENTRY Image to_rgb(const Image& image);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY Image to_rgb(const Image& image) {
  detail::check_image(image, "convert to RGB");
  if (image.channels == 3) return image;
  Image out{image.width, image.height, 3, std::vector<float>(image.pixel_count() * 3)};
  const std::size_t c = std::size_t(image.channels);
  for (std::size_t i = 0; i < image.pixel_count(); ++i) {
    const float* in = &image.pixels[i * c];
    float* o = &out.pixels[i * 3];
    if (c <= 2) {
      o[0] = o[1] = o[2] = in[0];
    } else {
      o[0] = in[0];
      o[1] = in[1];
      o[2] = in[2];
    }
  }
  return out;
}
#endif

// 1 channel. Alpha is dropped. Colour becomes the grey of the same luminance, computed in
// linear light and re-encoded as sRGB, so the grey image has exactly the CIE L* of the colour
// image: the greyscale the colorizer is trained to invert.
inline Image to_grey(const Image& image) {
  detail::check_image(image, "convert to grey");
  if (image.channels == 1) return image;
  Image out{image.width, image.height, 1, std::vector<float>(image.pixel_count())};
  const std::size_t c = std::size_t(image.channels);
  for (std::size_t i = 0; i < image.pixel_count(); ++i) {
    const float* in = &image.pixels[i * c];
    if (c <= 2) {
      out.pixels[i] = in[0];
    } else {
      const float y = linear_rgb_luminance(srgb_to_linear(in[0]), srgb_to_linear(in[1]), srgb_to_linear(in[2]));
      out.pixels[i] = clamp01(linear_to_srgb(y));
    }
  }
  return out;
}

// Resamples to width x height with stb_image_resize (Mitchell filter when shrinking,
// Catmull-Rom when enlarging, edges clamped). The filter runs on the stored (sRGB-encoded)
// values, as most ML pipelines do; results are clamped to 0..1 because both filters overshoot.
KILN_IO_ENTRY Image resize(const Image& image, int width, int height);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY Image resize(const Image& image, int width, int height) {
  detail::check_image(image, "resize");
  if (width <= 0 || height <= 0) {
    throw IoError("cannot resize an image to " + std::to_string(width) + "x" + std::to_string(height) + " pixels");
  }
  if (width == image.width && height == image.height) return image;
  Image out{width, height, image.channels,
            std::vector<float>(std::size_t(width) * std::size_t(height) * std::size_t(image.channels))};
  if (!stbir_resize_float(image.pixels.data(), image.width, image.height, 0, out.pixels.data(), width, height, 0,
                          image.channels)) {
    throw IoError("cannot resize a " + std::to_string(image.width) + "x" + std::to_string(image.height) + " image to " +
                  std::to_string(width) + "x" + std::to_string(height) + ": stb_image_resize failed");
  }
  for (float& v : out.pixels) v = clamp01(v);
  return out;
}
#endif

// Writes an 8-bit PNG (values rounded, clamped to 0..1) with as many channels as the image.
// The file is replaced atomically (see atomic_file.hpp): a failed write leaves an existing file
// untouched. Throws IoError naming the file.
KILN_IO_ENTRY void save_png(const std::filesystem::path& path, const Image& image);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY void save_png(const std::filesystem::path& path, const Image& image) {
  try {
    detail::check_image(image, "save");
  } catch (const IoError& e) {
    throw IoError("cannot write " + detail::quoted(path) + ": " + e.what());
  }
  std::vector<std::uint8_t> quantised(image.pixels.size());
  std::transform(image.pixels.begin(), image.pixels.end(), quantised.begin(), [](float v) { return to_8bit(v); });

  std::vector<std::byte> encoded;
  auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<std::byte>*>(context);
    const auto* bytes = static_cast<const std::byte*>(data);
    out->insert(out->end(), bytes, bytes + size);
  };
  if (!stbi_write_png_to_func(append, &encoded, image.width, image.height, image.channels, quantised.data(),
                              image.width * image.channels)) {
    throw IoError("cannot write " + detail::quoted(path) + ": PNG encoding failed");
  }
  write_file_atomically(path, encoded);
}
#endif

}  // namespace kiln::io
