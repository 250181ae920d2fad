#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "kiln/optim/schedule.hpp"

using namespace kiln;

TEST_CASE("ExponentialDecay: start at 0, exactly start * fraction at `epochs`, clamped after") {
  const ExponentialDecay s{1e-3f, 1.0 / 20.0, 30};  // the reference run: 1e-3 -> 5e-5 over 30 epochs
  CHECK(s.lr_at(0) == 1e-3f);
  const float end = static_cast<float>(double(1e-3f) / 20.0);
  CHECK(s.lr_at(30) == end);
  CHECK(s.lr_at(45) == end);
  CHECK(s.lr_at(1e6) == end);
  CHECK(s.lr_at(-1) == 1e-3f);
  // Halfway: start * sqrt(fraction).
  CHECK(s.lr_at(15) == doctest::Approx(1e-3 * std::sqrt(0.05)).epsilon(1e-6));
  // Fractional epochs decay smoothly and monotonically.
  float prev = s.lr_at(0);
  for (int i = 1; i <= 300; ++i) {
    const float lr = s.lr_at(i * 0.1);
    CHECK(lr < prev);
    prev = lr;
  }
  CHECK(s.lr_at(29.999) == doctest::Approx(end).epsilon(1e-4));
}

TEST_CASE("StepDecay: multiplies by gamma every step_epochs") {
  const StepDecay s{0.1f, 0.5, 10};
  CHECK(s.lr_at(0) == 0.1f);
  CHECK(s.lr_at(9.99) == 0.1f);
  CHECK(s.lr_at(10) == doctest::Approx(0.05));
  CHECK(s.lr_at(25) == doctest::Approx(0.025));
}

TEST_CASE("CosineDecay: endpoints, midpoint, clamped after") {
  const CosineDecay s{1e-3f, 1e-5f, 20};
  CHECK(s.lr_at(0) == doctest::Approx(1e-3).epsilon(1e-7));
  CHECK(s.lr_at(20) == 1e-5f);
  CHECK(s.lr_at(100) == 1e-5f);
  CHECK(s.lr_at(10) == doctest::Approx((1e-3 + 1e-5) / 2).epsilon(1e-6));
  CHECK(s.lr_at(19.9) > 1e-5f);
}

TEST_CASE("ConstantLr and the run-time choice by name") {
  CHECK(ConstantLr{3e-4f}.lr_at(17.5) == 3e-4f);
  CHECK(parse_schedule("exp") == ScheduleKind::exponential);
  CHECK(parse_schedule("step") == ScheduleKind::step);
  CHECK(parse_schedule("cosine") == ScheduleKind::cosine);
  CHECK(parse_schedule("constant") == ScheduleKind::constant);
  try {
    parse_schedule("linear");
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("'linear'") != std::string::npos);
    CHECK(msg.find("exp, step, cosine, constant") != std::string::npos);
  }
  ScheduleOptions o;
  o.start_lr = 1e-3f;
  o.epochs = 30;
  o.final_fraction = 0.05;
  const Schedule s = make_schedule("exp", o);
  CHECK(lr_at(s, 0) == 1e-3f);
  CHECK(lr_at(s, 30) == static_cast<float>(double(1e-3f) * 0.05));
  CHECK(lr_at(make_schedule("constant", o), 12) == 1e-3f);
  CHECK(lr_at(make_schedule(ScheduleKind::cosine, o), 30) == 0.0f);
}
