#pragma once
// Shape: up to four dimensions. Activations are NCHW (rank 4); parameters keep
// PyTorch's shapes (conv weight [out, in, k, k], bias and BatchNorm vectors [C]).
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>

#include "kiln/core/error.hpp"

namespace kiln {

class Shape {
 public:
  static constexpr int max_rank = 4;

  constexpr Shape() = default;
  constexpr Shape(std::initializer_list<std::int64_t> dims) {
    if (dims.size() > max_rank) throw Error("kiln::Shape: at most 4 dimensions are supported");
    for (auto d : dims) dims_[static_cast<std::size_t>(rank_++)] = d;
  }
  // The NCHW activation shape.
  static constexpr Shape nchw(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
    return Shape{n, c, h, w};
  }

  constexpr int rank() const { return rank_; }
  constexpr std::int64_t operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
  constexpr std::int64_t& operator[](int i) { return dims_[static_cast<std::size_t>(i)]; }

  // NCHW accessors; a Shape of lower rank reads as if padded with leading 1s
  // is NOT done: these are only meaningful for rank-4 activations.
  constexpr std::int64_t n() const { return dims_[0]; }
  constexpr std::int64_t c() const { return dims_[1]; }
  constexpr std::int64_t h() const { return dims_[2]; }
  constexpr std::int64_t w() const { return dims_[3]; }

  constexpr std::size_t numel() const {
    if (rank_ == 0) return 0;
    std::size_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= static_cast<std::size_t>(dims_[static_cast<std::size_t>(i)]);
    return n;
  }

  constexpr bool operator==(const Shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
      if (dims_[static_cast<std::size_t>(i)] != o.dims_[static_cast<std::size_t>(i)]) return false;
    return true;
  }

  // "[16, 32, 64, 64]"
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[static_cast<std::size_t>(i)]);
    }
    return s + "]";
  }

 private:
  std::array<std::int64_t, max_rank> dims_{};
  int rank_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

}  // namespace kiln
