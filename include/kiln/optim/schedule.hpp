#pragma once
// Learning-rate schedules as functions of the (fractional) epoch, so the rate
// can change every step: lr_at(epoch + step / steps_per_epoch).
//   ConstantLr{lr}
//   ExponentialDecay{start_lr, final_fraction, epochs}: start * final_fraction^(e / epochs),
//     exactly start * final_fraction from `epochs` on (the reference run: 1e-3 -> 1/20 over 30)
//   StepDecay{start_lr, gamma, step_epochs}: start * gamma^floor(e / step_epochs) (torch StepLR)
//   CosineDecay{start_lr, final_lr, epochs}: final + (start - final) (1 + cos(pi e / epochs)) / 2,
//     final_lr from `epochs` on (torch CosineAnnealingLR's first half-period)
// Schedule is a variant of the four; parse_schedule() and make_schedule()
// choose one by name at run time. Negative epochs read as 0.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string_view>
#include <variant>

#include "kiln/core/error.hpp"

namespace kiln {

struct ConstantLr {
  float lr = 1e-3f;
  float lr_at(double) const { return lr; }
};

struct ExponentialDecay {
  float start_lr = 1e-3f;
  double final_fraction = 0.05;
  double epochs = 30;
  float lr_at(double epoch) const {
    epoch = std::max(epoch, 0.0);
    if (epochs <= 0 || epoch >= epochs) return static_cast<float>(static_cast<double>(start_lr) * final_fraction);
    return static_cast<float>(static_cast<double>(start_lr) * std::pow(final_fraction, epoch / epochs));
  }
};

struct StepDecay {
  float start_lr = 1e-3f;
  double gamma = 0.1;
  double step_epochs = 10;
  float lr_at(double epoch) const {
    epoch = std::max(epoch, 0.0);
    const double k = step_epochs > 0 ? std::floor(epoch / step_epochs) : 0.0;
    return static_cast<float>(static_cast<double>(start_lr) * std::pow(gamma, k));
  }
};

struct CosineDecay {
  float start_lr = 1e-3f;
  float final_lr = 0.0f;
  double epochs = 30;
  float lr_at(double epoch) const {
    epoch = std::max(epoch, 0.0);
    if (epochs <= 0 || epoch >= epochs) return final_lr;
    const double s = start_lr, f = final_lr;
    return static_cast<float>(f + (s - f) * 0.5 * (1.0 + std::cos(std::numbers::pi * epoch / epochs)));
  }
};

using Schedule = std::variant<ConstantLr, ExponentialDecay, StepDecay, CosineDecay>;

inline float lr_at(const Schedule& s, double epoch) {
  return std::visit([&](const auto& x) { return x.lr_at(epoch); }, s);
}

enum class ScheduleKind { constant, exponential, step, cosine };

inline constexpr std::string_view schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::constant:
      return "constant";
    case ScheduleKind::exponential:
      return "exp";
    case ScheduleKind::step:
      return "step";
    case ScheduleKind::cosine:
      return "cosine";
  }
  return "?";
}

// "exp" | "step" | "cosine" | "constant"; anything else throws listing the valid names.
inline ScheduleKind parse_schedule(std::string_view name) {
  for (ScheduleKind k : {ScheduleKind::exponential, ScheduleKind::step, ScheduleKind::cosine, ScheduleKind::constant})
    if (name == schedule_kind_name(k)) return k;
  fail("unknown learning-rate schedule '", name, "': valid names are exp, step, cosine, constant");
}

// Everything any schedule needs; each kind reads its own fields.
struct ScheduleOptions {
  float start_lr = 1e-3f;
  double epochs = 30;            // exp, cosine
  double final_fraction = 0.05;  // exp
  double gamma = 0.1;            // step
  double step_epochs = 10;       // step
  float final_lr = 0.0f;         // cosine
};

inline Schedule make_schedule(ScheduleKind kind, const ScheduleOptions& o = {}) {
  switch (kind) {
    case ScheduleKind::constant:
      return ConstantLr{o.start_lr};
    case ScheduleKind::exponential:
      return ExponentialDecay{o.start_lr, o.final_fraction, o.epochs};
    case ScheduleKind::step:
      return StepDecay{o.start_lr, o.gamma, o.step_epochs};
    case ScheduleKind::cosine:
      return CosineDecay{o.start_lr, o.final_lr, o.epochs};
  }
  return ConstantLr{o.start_lr};
}
inline Schedule make_schedule(std::string_view name, const ScheduleOptions& o = {}) {
  return make_schedule(parse_schedule(name), o);
}

}  // namespace kiln
