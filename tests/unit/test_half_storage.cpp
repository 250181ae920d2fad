// F16 / BF16 storage of model tensors (kiln/io/safetensors.hpp): exact widening, round-to-nearest-even
// narrowing, and checkpoints whose parameters are stored narrow load into a float model.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <limits>
#include <vector>

#include "gradcheck.hpp"
#include "test_files.hpp"
#include "kiln/io/checkpoint.hpp"
#include "kiln/kiln.hpp"

using namespace kiln;

TEST_CASE("F16 and BF16: known encodings, rounding to nearest even, overflow, subnormals, NaN") {
  CHECK(io::float_to_half(1.0f) == 0x3c00);
  CHECK(io::float_to_half(-2.0f) == 0xc000);
  CHECK(io::float_to_half(65504.0f) == 0x7bff);
  CHECK(io::float_to_half(65520.0f) == 0x7c00);            // the tie past the largest half: infinity
  CHECK(io::float_to_half(1.0f + 1.0f / 2048) == 0x3c00);  // a tie rounds to the even mantissa
  CHECK(io::float_to_half(1.0f + 3.0f / 2048) == 0x3c02);
  CHECK(io::float_to_half(5.9604644775390625e-8f) == 0x0001);  // the smallest subnormal
  CHECK(io::half_to_float(0x0001) == 5.9604644775390625e-8f);
  CHECK(std::isnan(io::half_to_float(io::float_to_half(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(io::float_to_bfloat16(1.0f) == 0x3f80);
  CHECK(io::bfloat16_to_float(0x3f80) == 1.0f);
  CHECK(io::float_to_bfloat16(1.0f + 1.0f / 256) == 0x3f80);  // tie to even
  CHECK(std::isnan(io::bfloat16_to_float(io::float_to_bfloat16(std::numeric_limits<float>::quiet_NaN()))));
  // Every half widens exactly and narrows back to itself (NaNs aside).
  int mismatches = 0;
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = io::half_to_float(std::uint16_t(h));
    if (!std::isnan(f) && io::float_to_half(f) != h) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("a checkpoint with F16 or BF16 parameters loads into a float model, values rounded") {
  kiln::test::TempDir dir("half");
  using Net = UNet<1, 2, 4, 2>;
  Network<Net> net;
  Rng rng(3);
  net.reset_parameters(rng);
  for (io::DType storage : {io::DType::F16, io::DType::BF16}) {
    std::vector<io::TensorRecord> records;
    std::vector<std::vector<float>> rounded;
    net.visit([&](StateRef<Cpu> r) {
      if (r.kind == StateRef<Cpu>::Kind::counter) {
        records.push_back(
            io::TensorRecord::from_values<std::int64_t>(r.name, {}, std::vector<std::int64_t>{*r.counter}));
        return;
      }
      std::vector<std::int64_t> shape;
      for (int d = 0; d < r.value->shape().rank(); ++d) shape.push_back(r.value->shape()[d]);
      records.push_back(io::TensorRecord::from_floats(r.name, shape, r.value->to_vector(), storage));
      CHECK(records.back().dtype == storage);
      rounded.push_back(records.back().to_floats());
    });
    const auto file = dir.path / "narrow.safetensors";
    io::save_safetensors(file, records, {});
    Network<Net> loaded;
    io::load_checkpoint(file, loaded);
    std::size_t i = 0;
    loaded.visit([&](StateRef<Cpu> r) {
      if (r.kind == StateRef<Cpu>::Kind::counter) return;
      CHECK(r.value->to_vector() == rounded.at(i++));
    });
    CHECK(i == rounded.size());
  }
  // Integers are not floats: an I32 parameter is still refused, naming the tensor.
  std::vector<io::TensorRecord> bad;
  net.visit([&](StateRef<Cpu> r) {
    if (r.kind == StateRef<Cpu>::Kind::counter) {
      bad.push_back(io::TensorRecord::from_values<std::int64_t>(r.name, {}, std::vector<std::int64_t>{*r.counter}));
      return;
    }
    std::vector<std::int64_t> shape;
    for (int d = 0; d < r.value->shape().rank(); ++d) shape.push_back(r.value->shape()[d]);
    bad.push_back(
        io::TensorRecord::from_values<std::int32_t>(r.name, shape, std::vector<std::int32_t>(r.value->numel(), 1)));
  });
  io::save_safetensors(dir.path / "ints.safetensors", bad, {});
  Network<Net> other;
  CHECK_THROWS_WITH(io::load_checkpoint(dir.path / "ints.safetensors", other), doctest::Contains("stored as I32"));
}
