#pragma once
// Training progress on stderr. On a terminal: one line rewritten in place ("\r" + clear);
// otherwise (a log file, CI) a plain line every `interval` seconds.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace kiln::programs {

// Exponential moving average with bias correction (reads sensibly from the first value).
class Ema {
 public:
  explicit Ema(double decay = 0.98) : decay_(decay) {}
  void add(double x) {
    value_ = decay_ * value_ + (1 - decay_) * x;
    weight_ = decay_ * weight_ + (1 - decay_);
  }
  double value() const { return weight_ > 0 ? value_ / weight_ : 0.0; }
  bool empty() const { return weight_ == 0; }
  // For checkpoints: the raw state.
  double raw_value() const { return value_; }
  double raw_weight() const { return weight_; }
  void restore(double value, double weight) {
    value_ = value;
    weight_ = weight;
  }

 private:
  double decay_;
  double value_ = 0, weight_ = 0;
};

class ProgressLine {
 public:
  explicit ProgressLine(double interval_seconds = 10.0, FILE* stream = stderr)
      : stream_(stream), tty_(::isatty(::fileno(stream)) != 0), interval_(interval_seconds) {}

  bool is_tty() const { return tty_; }

  // Shows `text`; on a terminal at most ~8 times a second, otherwise every interval.
  void update(const std::string& text, bool force = false) {
    const auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    if (tty_) {
      if (!force && shown_ && since < 0.125) return;
      std::fprintf(stream_, "\r\033[K%s", text.c_str());
      std::fflush(stream_);
      open_ = true;
    } else {
      if (!force && shown_ && since < interval_) return;
      std::fprintf(stream_, "%s\n", text.c_str());
      std::fflush(stream_);
    }
    shown_ = true;
    last_ = now;
  }

  // Ends the in-place line so that ordinary output can follow.
  void finish_line() {
    if (tty_ && open_) {
      std::fprintf(stream_, "\n");
      std::fflush(stream_);
    }
    open_ = false;
  }

  // Prints a permanent line (ending any in-place line first) on stdout.
  void print(const std::string& text) {
    if (tty_ && open_) {
      std::fprintf(stream_, "\r\033[K");
      std::fflush(stream_);
      open_ = false;
    }
    std::fprintf(stdout, "%s\n", text.c_str());
    std::fflush(stdout);
  }

 private:
  FILE* stream_;
  bool tty_;
  double interval_;
  bool shown_ = false, open_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace kiln::programs
