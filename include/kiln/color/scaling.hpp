#pragma once
// The scaling a colorization network sees, and the checkpoint metadata that records it.
//   Input:  the L channel mapped from 0..100 to -1..1:   x = L / kLScale - kLOffset = L/50 - 1.
//   Output: a and b divided by kAbScale = 110, so the in-gamut range (kiln/ops/color.hpp) lands
//           inside about -1..1 (a tanh output layer can reach every in-gamut colour).
// A program that loads a checkpoint checks kInputScalingKey/kOutputScalingKey before trusting it.
#include <map>
#include <string>
#include <string_view>

namespace kiln::color {

inline constexpr float kLScale = 50.0f;
inline constexpr float kLOffset = 1.0f;
inline constexpr float kAbScale = 110.0f;

inline float normalise_L(float L) { return L / kLScale - kLOffset; }
inline float denormalise_L(float x) { return (x + kLOffset) * kLScale; }
inline float normalise_ab(float ab) { return ab / kAbScale; }
inline float denormalise_ab(float x) { return x * kAbScale; }

inline constexpr std::string_view kInputScaling = "L/50-1";
inline constexpr std::string_view kOutputScaling = "ab/110";
inline constexpr std::string_view kInputScalingKey = "kiln.input_scaling";
inline constexpr std::string_view kOutputScalingKey = "kiln.output_scaling";

static_assert(kLScale == 50.0f && kLOffset == 1.0f && kAbScale == 110.0f,
              "kInputScaling/kOutputScaling describe the constants above: update them together");

inline void add_scaling_metadata(std::map<std::string, std::string>& metadata) {
  metadata[std::string(kInputScalingKey)] = std::string(kInputScaling);
  metadata[std::string(kOutputScalingKey)] = std::string(kOutputScaling);
}

}  // namespace kiln::color

// The programs (examples/) still spell these kiln::io::; drop once they say kiln::color::.
namespace kiln::io {
using color::add_scaling_metadata;
using color::kInputScaling;
using color::kInputScalingKey;
using color::kOutputScaling;
using color::kOutputScalingKey;
}  // namespace kiln::io
