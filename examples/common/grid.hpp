#pragma once
// Sample grids: rows of images (grey | prediction | truth ...) under a header of column titles.
#include <kiln/io/image.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "plot.hpp"

namespace kiln::programs {

// The largest centred window of aspect w:h, resized to exactly w x h.
inline io::Image fit_crop(const io::Image& image, int w, int h) {
  const double target = double(w) / h, aspect = double(image.width) / image.height;
  int cw = image.width, ch = image.height;
  if (aspect > target)
    cw = std::max(1, int(std::lround(image.height * target)));
  else
    ch = std::max(1, int(std::lround(image.width / target)));
  const int x0 = (image.width - cw) / 2, y0 = (image.height - ch) / 2;
  io::Image window{cw, ch, image.channels,
                   std::vector<float>(std::size_t(cw) * std::size_t(ch) * std::size_t(image.channels))};
  for (int y = 0; y < ch; ++y)
    for (int x = 0; x < cw; ++x)
      for (int c = 0; c < image.channels; ++c) window.at(x, y, c) = image.at(x0 + x, y0 + y, c);
  return io::resize(window, w, h);
}

// rows[r][c]: all cells the same size. Titles above the columns (may be empty).
inline io::Image make_grid(const std::vector<std::vector<io::Image>>& rows, const std::vector<std::string>& titles,
                           int gap = 4) {
  if (rows.empty() || rows[0].empty()) return io::Image{1, 1, 3, {1.f, 1.f, 1.f}};
  const int cw = rows[0][0].width, ch = rows[0][0].height;
  const int cols = int(rows[0].size());
  const int header = titles.empty() ? 0 : 18;
  Canvas cv(gap + cols * (cw + gap), header + gap + int(rows.size()) * (ch + gap), kWhite);
  for (int c = 0; c < int(titles.size()) && c < cols; ++c) {
    const int x = gap + c * (cw + gap);
    cv.text(x + (cw - Canvas::text_width(titles[std::size_t(c)])) / 2, 6, titles[std::size_t(c)], kBlack);
  }
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t c = 0; c < rows[r].size(); ++c)
      cv.blit(rows[r][c], gap + int(c) * (cw + gap), header + gap + int(r) * (ch + gap));
  return cv.image();
}

}  // namespace kiln::programs
