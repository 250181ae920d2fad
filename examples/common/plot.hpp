#pragma once
// A tiny rasteriser for the training curves (no plotting library in C++ land): an RGB canvas,
// lines (Bresenham, square pen), filled rectangles, and text in a 5x7 bitmap font (upper case,
// digits and a little punctuation; lower case is drawn as upper case). plot_panel() draws one
// chart with axes, "nice" ticks, labels and a legend; the trainer puts two side by side.
#include <kiln/io/image.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace kiln::programs {

struct Colour {
  float r, g, b;
};
inline constexpr Colour kBlack{0.f, 0.f, 0.f};
inline constexpr Colour kWhite{1.f, 1.f, 1.f};
inline constexpr Colour kGrid{0.88f, 0.88f, 0.88f};
inline constexpr Colour kBlue{0.12f, 0.47f, 0.71f};
inline constexpr Colour kOrange{1.0f, 0.50f, 0.05f};
inline constexpr Colour kGreen{0.17f, 0.63f, 0.17f};
inline constexpr Colour kGrey{0.55f, 0.55f, 0.55f};
inline constexpr Colour kRed{0.84f, 0.15f, 0.16f};

namespace font {
// 5x7 glyphs, one byte per row, bit 4 = leftmost column.
struct Glyph {
  char c;
  std::array<std::uint8_t, 7> rows;
};
inline constexpr Glyph kGlyphs[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},  {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},  {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},  {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},  {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},  {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},  {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},  {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},  {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},  {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},  {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},  {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},  {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},  {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},  {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},  {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},  {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},  {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},  {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},  {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},  {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},  {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},  {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},  {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},  {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},  {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'\'', {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}}, {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
};
inline const Glyph* find(char c) {
  c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Glyph& g : kGlyphs)
    if (g.c == c) return &g;
  return nullptr;
}
inline constexpr int kWidth = 5, kHeight = 7, kAdvance = 6;
}  // namespace font

class Canvas {
 public:
  Canvas(int width, int height, Colour background = kWhite)
      : image_{width, height, 3, std::vector<float>(std::size_t(width) * std::size_t(height) * 3)} {
    fill_rect(0, 0, width, height, background);
  }
  int width() const { return image_.width; }
  int height() const { return image_.height; }
  const io::Image& image() const { return image_; }

  void set(int x, int y, Colour c) {
    if (x < 0 || y < 0 || x >= image_.width || y >= image_.height) return;
    float* p = &image_.pixels[(std::size_t(y) * std::size_t(image_.width) + std::size_t(x)) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
  void fill_rect(int x, int y, int w, int h, Colour c) {
    for (int j = y; j < y + h; ++j)
      for (int i = x; i < x + w; ++i) set(i, j, c);
  }
  // Bresenham with a square pen of side `thickness`.
  void line(int x0, int y0, int x1, int y1, Colour c, int thickness = 1) {
    const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    const int lo = -(thickness - 1) / 2, hi = thickness / 2;
    for (;;) {
      for (int j = lo; j <= hi; ++j)
        for (int i = lo; i <= hi; ++i) set(x0 + i, y0 + j, c);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }
  // Text with its top-left corner at (x, y), each font pixel drawn as scale x scale.
  void text(int x, int y, const std::string& s, Colour c = kBlack, int scale = 1) {
    for (char ch : s) {
      if (const font::Glyph* g = font::find(ch)) {
        for (int r = 0; r < font::kHeight; ++r)
          for (int col = 0; col < font::kWidth; ++col)
            if (g->rows[std::size_t(r)] & (0x10 >> col)) fill_rect(x + col * scale, y + r * scale, scale, scale, c);
      }
      x += font::kAdvance * scale;
    }
  }
  static int text_width(const std::string& s, int scale = 1) {
    return s.empty() ? 0 : (int(s.size()) * font::kAdvance - 1) * scale;
  }
  // Copies an image (1 or 3 channels) with its top-left corner at (x, y).
  void blit(const io::Image& src, int x, int y) {
    for (int j = 0; j < src.height; ++j)
      for (int i = 0; i < src.width; ++i) {
        if (src.channels >= 3)
          set(x + i, y + j, {src.at(i, j, 0), src.at(i, j, 1), src.at(i, j, 2)});
        else
          set(x + i, y + j, {src.at(i, j, 0), src.at(i, j, 0), src.at(i, j, 0)});
      }
  }

 private:
  io::Image image_;
};

struct Series {
  std::string label;
  Colour colour;
  std::vector<double> x, y;  // non-finite y values are gaps
  bool dashed = false;
};

// Tick values at 1, 2 or 5 x 10^k covering [lo, hi] with about `target` ticks.
inline std::vector<double> nice_ticks(double lo, double hi, int target = 5) {
  std::vector<double> ticks;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag * 1.0000001) {
      step = m * mag;
      break;
    }
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

inline std::string tick_label(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (v == 0)
    std::snprintf(buf, sizeof buf, "0");
  else if (a >= 1e5 || a < 1e-3)
    std::snprintf(buf, sizeof buf, "%.0e", v);
  else
    std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// One chart in the rectangle (x, y, w, h) of the canvas.
inline void plot_panel(Canvas& cv, int x, int y, int w, int h, const std::string& title, const std::string& x_label,
                       const std::vector<Series>& series, bool y_from_zero = true) {
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const Series& s : series)
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (y_from_zero && ymin > 0) ymin = 0;
  if (xmax - xmin < 1e-12) xmax = xmin + 1;
  if (ymax - ymin < 1e-12) ymax = ymin + 1;
  ymax += (ymax - ymin) * 0.05;
  const std::vector<double> yt = nice_ticks(ymin, ymax, 5), xt = nice_ticks(xmin, xmax, 6);

  int label_w = 0;
  for (double t : yt) label_w = std::max(label_w, Canvas::text_width(tick_label(t)));
  const int left = x + label_w + 10, right = x + w - 10, top = y + 26, bottom = y + h - 30;
  cv.text(x + (w - Canvas::text_width(title, 2)) / 2, y + 4, title, kBlack, 2);
  auto px = [&](double v) { return left + int(std::lround((v - xmin) / (xmax - xmin) * (right - left))); };
  auto py = [&](double v) { return bottom - int(std::lround((v - ymin) / (ymax - ymin) * (bottom - top))); };
  for (double t : yt) {
    if (t < ymin - 1e-12 || t > ymax + 1e-12) continue;
    cv.line(left, py(t), right, py(t), kGrid);
    const std::string s = tick_label(t);
    cv.text(left - 5 - Canvas::text_width(s), py(t) - 3, s, kBlack);
  }
  for (double t : xt) {
    if (t < xmin - 1e-12 || t > xmax + 1e-12) continue;
    cv.line(px(t), top, px(t), bottom, kGrid);
    cv.line(px(t), bottom, px(t), bottom + 3, kBlack);
    const std::string s = tick_label(t);
    cv.text(px(t) - Canvas::text_width(s) / 2, bottom + 6, s, kBlack);
  }
  cv.line(left, top, left, bottom, kBlack);
  cv.line(left, bottom, right, bottom, kBlack);
  cv.text(left + (right - left - Canvas::text_width(x_label)) / 2, bottom + 18, x_label, kBlack);

  for (const Series& s : series) {
    bool have = false;
    int lx = 0, ly = 0, n = 0;
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        have = false;
        continue;
      }
      const int cx = px(s.x[i]), cy = py(s.y[i]);
      if (have && (!s.dashed || (n++ % 2 == 0))) cv.line(lx, ly, cx, cy, s.colour, 2);
      cv.fill_rect(cx - 2, cy - 2, 5, 5, s.colour);
      lx = cx, ly = cy, have = true;
    }
  }
  // Legend, top right inside the plot.
  int ly = top + 6;
  for (const Series& s : series) {
    const int tw = Canvas::text_width(s.label);
    const int lx = right - tw - 26;
    cv.fill_rect(lx - 3, ly - 3, tw + 28, 13, kWhite);
    cv.line(lx, ly + 3, lx + 16, ly + 3, s.colour, 2);
    cv.text(lx + 22, ly, s.label, kBlack);
    ly += 13;
  }
}

}  // namespace kiln::programs
