#pragma once
// The colour maths for images (sRGB <-> CIE L*a*b*, the network's scaling) under kiln::io, where
// image code has always found it; it is device-neutral and lives in kiln/ops/color.hpp.
#include "kiln/ops/color.hpp"

namespace kiln::io {
using namespace kiln::color;
}  // namespace kiln::io
