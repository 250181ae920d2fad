#pragma once
// Whether an image file holds all the pixels its header declares. stb_image fills what is
// missing instead of failing: a JPEG cut inside its scan data decodes with grey blocks, a
// truncated uncompressed BMP or TGA with black rows (its reader returns 0 past the end). A
// training run must not learn from those, so kiln-train refuses them at start-up and
// kiln-colorize warns. PNG needs no check here: stb fails on a cut PNG (its chunks end early).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace kiln::programs {

namespace image_complete_detail {
inline std::uint64_t byte_at(std::span<const std::byte> f, std::size_t i) {
  return i < f.size() ? std::to_integer<std::uint64_t>(f[i]) : 0;
}
inline std::uint64_t le16(std::span<const std::byte> f, std::size_t i) {
  return byte_at(f, i) | byte_at(f, i + 1) << 8;
}
inline std::uint64_t le32(std::span<const std::byte> f, std::size_t i) { return le16(f, i) | le16(f, i + 2) << 16; }
inline std::string short_by(std::uint64_t need, std::uint64_t have) {
  return "its pixel data needs " + std::to_string(need) + " bytes but the file holds " + std::to_string(have) +
         ": it is truncated";
}
}  // namespace image_complete_detail

// "" when the file is complete (or not a JPEG, BMP or TGA), else what is missing, as a sentence
// fragment ("the JPEG ends inside its image data ...").
inline std::string incomplete_image_problem(std::span<const std::byte> f) {
  using namespace image_complete_detail;
  const std::size_t size = f.size();
  // JPEG: after the last scan header (SOS, FF DA) an end-of-image marker (FF D9) must follow.
  // The last, not the first: an EXIF thumbnail has its own scan and EOI before the main image's,
  // and FF DA cannot occur inside scan data (an FF there is followed by 00 or a restart marker).
  if (size >= 3 && byte_at(f, 0) == 0xFF && byte_at(f, 1) == 0xD8) {
    std::size_t sos = std::string::npos;
    for (std::size_t i = size - 1; i-- > 2;)
      if (byte_at(f, i) == 0xFF && byte_at(f, i + 1) == 0xDA) {
        sos = i;
        break;
      }
    if (sos == std::string::npos) return {};  // no scan at all: stb refuses it itself
    for (std::size_t i = sos + 2; i + 1 < size; ++i)
      if (byte_at(f, i) == 0xFF && byte_at(f, i + 1) == 0xD9) return {};
    return "the JPEG ends inside its image data (no end-of-image marker): the file is truncated, and its missing part "
           "would decode as grey blocks";
  }
  // BMP, uncompressed (BI_RGB 0, BI_BITFIELDS 3): the rows after the pixel-data offset.
  if (size >= 34 && byte_at(f, 0) == 'B' && byte_at(f, 1) == 'M') {
    const std::uint64_t offset = le32(f, 10), header = le32(f, 14), compression = le32(f, 30);
    if (header < 40 || (compression != 0 && compression != 3)) return {};
    const std::int64_t w = std::int32_t(std::uint32_t(le32(f, 18))), h = std::int32_t(std::uint32_t(le32(f, 22)));
    const std::uint64_t bpp = le16(f, 28);
    if (w <= 0 || h == 0 || bpp == 0) return {};
    const std::uint64_t row = (std::uint64_t(w) * bpp + 31) / 32 * 4;
    const std::uint64_t need = offset + row * std::uint64_t(h < 0 ? -h : h);
    if (need > size) return short_by(need, size);
    return {};
  }
  // TGA (no signature: only when the header's type is one stb reads and the sizes are sane).
  if (size >= 18) {
    const std::uint64_t id = byte_at(f, 0), cmap = byte_at(f, 1), type = byte_at(f, 2);
    const std::uint64_t cmap_len = le16(f, 5), cmap_bits = byte_at(f, 7);
    const std::uint64_t w = le16(f, 12), h = le16(f, 14), bpp = byte_at(f, 16);
    const bool known = type == 1 || type == 2 || type == 3 || type == 9 || type == 10 || type == 11;
    if (!known || cmap > 1 || w == 0 || h == 0 || !(bpp == 8 || bpp == 15 || bpp == 16 || bpp == 24 || bpp == 32))
      return {};
    const std::uint64_t pixel_bytes = (bpp + 7) / 8;
    std::uint64_t p = 18 + id + (cmap ? cmap_len * ((cmap_bits + 7) / 8) : 0);
    const std::uint64_t pixels = w * h;
    if (type < 9) {
      const std::uint64_t need = p + pixels * pixel_bytes;
      return need > size ? short_by(need, size) : std::string();
    }
    // RLE: walk the packets until every pixel is covered.
    for (std::uint64_t done = 0; done < pixels;) {
      if (p >= size)
        return "its run-length data ends after " + std::to_string(done) + " of " + std::to_string(pixels) +
               " pixels: it is truncated";
      const std::uint64_t packet = byte_at(f, p++), count = (packet & 0x7F) + 1;
      p += packet & 0x80 ? pixel_bytes : count * pixel_bytes;
      done += count;
      if (p > size)
        return "its run-length data ends after " + std::to_string(done - count) + " of " + std::to_string(pixels) +
               " pixels: it is truncated";
    }
  }
  return {};
}

}  // namespace kiln::programs
