#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "gradcheck.hpp"
#include "test_files.hpp"
#include "kiln/io/checkpoint.hpp"
#include "kiln/kiln.hpp"
#include "kiln/models/unet.hpp"

using namespace kiln;
namespace fs = std::filesystem;

namespace {

using Tiny = UNet<1, 2, 4, 2>;
using Wider = UNet<1, 2, 8, 2>;

using kiln::test::bytes_of;
using kiln::test::write_bytes;
struct TempDir : kiln::test::TempDir {
  TempDir() : kiln::test::TempDir("test_checkpoint") {}
};

// A network with random weights and non-trivial running statistics.
template <class Net>
void train_a_little(Network<Net>& net, std::uint64_t seed) {
  Rng rng(seed);
  net.reset_parameters(rng);
  for (int i = 0; i < 3; ++i) {
    auto x = kiln::test::random_tensor(Shape::nchw(2, 1, 8, 8), rng);
    net.forward(x, Mode::train);
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("checkpoint: save -> load into a fresh network gives bitwise identical eval outputs") {
  TempDir dir;
  const fs::path file = dir.path / "tiny.safetensors";
  Network<Tiny> a;
  train_a_little(a, 1);
  io::save_checkpoint(file, a, {{"epoch", "7"}, {"step", "1234"}, {"rng", "1 2 3 4"}});

  Network<Tiny> b;
  Rng other(99);
  b.reset_parameters(other);
  const io::CheckpointInfo info = io::load_checkpoint(file, b);

  Rng rng(5);
  auto x = kiln::test::random_tensor(Shape::nchw(2, 1, 8, 8), rng);
  const std::vector<float> ya = a.forward(x, Mode::eval).to_vector();
  const std::vector<float> yb = b.forward(x, Mode::eval).to_vector();
  CHECK(ya == yb);

  // Every state matches, counters included.
  std::vector<std::int64_t> ca, cb;
  a.visit([&](StateRef<Cpu> r) {
    if (r.counter) ca.push_back(*r.counter);
  });
  b.visit([&](StateRef<Cpu> r) {
    if (r.counter) cb.push_back(*r.counter);
  });
  CHECK(ca == cb);
  CHECK(ca.at(0) == 3);

  SUBCASE("metadata round trip") {
    CHECK(info.metadata.at("epoch") == "7");
    CHECK(info.metadata.at("step") == "1234");
    CHECK(info.metadata.at("rng") == "1 2 3 4");
    CHECK(info.get("kiln.model") == "UNet<1,2,4,2>");
    CHECK(info.get("kiln.format_version") == "1");
    // The library says nothing about what the data means: that is the caller's metadata.
    CHECK(info.metadata.count("kiln.input_scaling") == 0);
    CHECK(info.metadata.count("kiln.output_scaling") == 0);
    CHECK(info.metadata.count("kiln.checksum") == 1);
    CHECK(info.extra.empty());
    CHECK_THROWS_WITH_AS(info.get("nope"), doctest::Contains("no metadata 'nope'"), io::IoError);
  }
  SUBCASE("PyTorch state_dict layout: F32 in PyTorch shapes, counters as I64 scalars") {
    const io::SafetensorsFile f = io::load_safetensors(file);
    CHECK(f.tensors.size() == 76);
    const auto& w = f.get("down.0.conv1.weight");
    CHECK(w.dtype == io::DType::F32);
    CHECK(w.shape == std::vector<std::int64_t>{4, 1, 3, 3});
    CHECK(f.get("up.0.reduce.weight").shape == std::vector<std::int64_t>{8, 16, 1, 1});
    CHECK(f.get("head.bias").shape == std::vector<std::int64_t>{2});
    const auto& nbt = f.get("bottleneck.bn2.num_batches_tracked");
    CHECK(nbt.dtype == io::DType::I64);
    CHECK(nbt.shape.empty());
    CHECK(nbt.to_vector<std::int64_t>() == std::vector<std::int64_t>{3});
  }
  CHECK(io::model_name<Tiny>() == "UNet<1,2,4,2>");
  CHECK(io::model_name<Network<UNet<1, 2, 32, 4>>>() == "UNet<1,2,32,4>");
}

TEST_CASE("checkpoint: a checkpoint of another model size names the tensor and both shapes") {
  TempDir dir;
  const fs::path file = dir.path / "wider.safetensors";
  Network<Wider> wide;
  train_a_little(wide, 2);
  io::save_checkpoint(file, wide, {});
  Network<Tiny> tiny;
  const std::string msg = error_of([&] { io::load_checkpoint(file, tiny); });
  CHECK(msg.find(file.string()) != std::string::npos);
  CHECK(msg.find("tensor 'down.0.conv1.weight' has shape [8, 1, 3, 3] but this model expects [4, 1, 3, 3]") !=
        std::string::npos);
  CHECK(msg.find("another model size (kiln.model = 'UNet<1,2,8,2>')") != std::string::npos);
}

TEST_CASE("checkpoint: missing and unexpected model tensors are errors; other tensors are extras") {
  TempDir dir;
  Network<Tiny> net;
  train_a_little(net, 3);
  const fs::path good = dir.path / "good.safetensors";
  io::save_checkpoint(good, net, {}, {io::NamedTensor{"trainer.ema", {2}, {1.0f, 2.0f}}});
  io::SafetensorsFile f = io::load_safetensors(good);

  SUBCASE("extras are handed back") {
    Network<Tiny> fresh;
    std::vector<std::string> seen;
    const auto info = io::load_checkpoint(good, fresh, [&](const io::TensorRecord& r) { seen.push_back(r.name); });
    CHECK(seen == std::vector<std::string>{"trainer.ema"});
    REQUIRE(info.find_extra("trainer.ema"));
    CHECK(info.find_extra("trainer.ema")->to_vector<float>() == std::vector<float>{1.0f, 2.0f});
  }
  SUBCASE("missing") {
    std::vector<io::TensorRecord> records;
    for (auto& r : f.tensors)
      if (r.name != "head.bias") records.push_back(r);
    const fs::path file = dir.path / "missing.safetensors";
    io::save_safetensors(file, records, f.metadata);
    const std::string msg = error_of([&] { io::load_checkpoint(file, net); });
    CHECK(msg.find("lacks 1 of the 76 tensors") != std::string::npos);
    CHECK(msg.find("'head.bias'") != std::string::npos);
  }
  SUBCASE("unexpected") {
    std::vector<io::TensorRecord> records = f.tensors;
    records.push_back(io::TensorRecord::from_values<float>("down.9.conv1.weight", {1}, std::vector<float>{0.0f}));
    const fs::path file = dir.path / "unexpected.safetensors";
    io::save_safetensors(file, records, f.metadata);
    const std::string msg = error_of([&] { io::load_checkpoint(file, net); });
    CHECK(msg.find("does not have: 'down.9.conv1.weight'") != std::string::npos);
  }
  SUBCASE("wrong dtype") {
    std::vector<io::TensorRecord> records;
    for (auto& r : f.tensors)
      if (r.name != "head.bias") records.push_back(r);
    records.push_back(io::TensorRecord::from_values<double>("head.bias", {2}, std::vector<double>{0.0, 0.0}));
    const fs::path file = dir.path / "dtype.safetensors";
    io::save_safetensors(file, records, f.metadata);
    CHECK(error_of([&] { io::load_checkpoint(file, net); }).find("tensor 'head.bias' is stored as F64") !=
          std::string::npos);
  }
  SUBCASE("other scaling: refused only when the caller checks it") {
    auto meta = f.metadata;
    meta["kiln.output_scaling"] = "ab/128";
    const fs::path file = dir.path / "scaling.safetensors";
    io::save_safetensors(file, f.tensors, meta);
    const io::MetadataChecks checks{{"kiln.output_scaling", "ab/110", false, "differently scaled data"}};
    const std::string msg = error_of([&] { io::load_checkpoint(file, net, checks); });
    CHECK(msg.find(file.string()) != std::string::npos);
    CHECK(msg.find(
              "metadata kiln.output_scaling = 'ab/128', but this program expects 'ab/110' (differently scaled data)") !=
          std::string::npos);
    Network<Tiny> fresh;
    CHECK(io::load_checkpoint(file, fresh).get("kiln.output_scaling") == "ab/128");
  }
}

TEST_CASE("checkpoint: the caller's metadata is stored as given and checked only as asked") {
  TempDir dir;
  Network<Tiny> net;
  train_a_little(net, 4);
  const fs::path file = dir.path / "denoise.safetensors";
  io::save_checkpoint(file, net, {{"task", "denoise"}, {"input", "noisy rgb 0..1"}});
  const io::SafetensorsFile f = io::load_safetensors(file);
  CHECK(f.metadata.at("task") == "denoise");
  CHECK(f.metadata.count("kiln.input_scaling") == 0);

  Network<Tiny> b;
  // Checks that hold, including a required one; a key the file lacks passes unless required.
  const auto info = io::load_checkpoint(file, b, io::MetadataChecks{{"task", "denoise", true, ""}, {"absent", "x"}});
  CHECK(info.get("input") == "noisy rgb 0..1");
  const std::vector<float> before = b.forward(Tensor<float, Cpu>(Shape::nchw(1, 1, 8, 8)), Mode::eval).to_vector();

  Network<Tiny> c;
  const std::vector<float> untouched = c.forward(Tensor<float, Cpu>(Shape::nchw(1, 1, 8, 8)), Mode::eval).to_vector();
  CHECK(error_of([&] {
          io::load_checkpoint(file, c, io::MetadataChecks{{"task", "colorize", false, "another task"}});
        }).find("metadata task = 'denoise', but this program expects 'colorize' (another task)") != std::string::npos);
  CHECK(error_of([&] {
          io::load_checkpoint(file, c, io::MetadataChecks{{"noise_sigma", "25", true, ""}});
        }).find("has no metadata 'noise_sigma', but this program expects '25'") != std::string::npos);
  // A refused load changes nothing.
  CHECK(c.forward(Tensor<float, Cpu>(Shape::nchw(1, 1, 8, 8)), Mode::eval).to_vector() == untouched);
  CHECK(before != untouched);

  // With an optimizer: the checks run before the optimizer's state is looked at.
  Adam<Cpu> adam(collect_parameters(net));
  const fs::path with_opt = dir.path / "opt.safetensors";
  io::save_checkpoint(with_opt, net, {{"task", "denoise"}}, adam);
  Adam<Cpu> adam2(collect_parameters(c));
  CHECK(error_of([&] {
          io::load_checkpoint(with_opt, c, adam2, io::MetadataChecks{{"task", "sr", true, ""}});
        }).find("metadata task = 'denoise'") != std::string::npos);
  CHECK(io::load_checkpoint(with_opt, c, adam2, io::MetadataChecks{{"task", "denoise", true, ""}}).get("task") ==
        "denoise");
}

TEST_CASE("checkpoint: damaged files are refused, naming the file") {
  TempDir dir;
  Network<Tiny> net;
  train_a_little(net, 4);
  const fs::path file = dir.path / "a.safetensors";
  io::save_checkpoint(file, net, {});
  const std::vector<char> good = bytes_of(file);

  SUBCASE("a flipped byte fails the checksum") {
    std::vector<char> bad = good;
    bad[bad.size() - 3] = char(bad[bad.size() - 3] ^ 0x10);
    write_bytes(file, bad);
    const std::string msg = error_of([&] { io::load_checkpoint(file, net); });
    CHECK(msg.find("checksum mismatch") != std::string::npos);
    CHECK(msg.find(file.string()) != std::string::npos);
  }
  SUBCASE("a changed tensor name or metadata value fails the header checksum") {
    // Valid JSON of the same length both times: only kiln.header_checksum can tell.
    const std::string text(good.begin(), good.end());
    for (auto [from, to] :
         {std::pair<std::string, std::string>{"\"down.0.conv1.bias\"", "\"down.0.conv1.bia5\""},
          std::pair<std::string, std::string>{"\"kiln.format_version\":\"1\"", "\"kiln.format_version\":\"2\""}}) {
      const std::size_t at = text.find(from);
      REQUIRE(at != std::string::npos);
      std::vector<char> bad = good;
      std::copy(to.begin(), to.end(), bad.begin() + std::ptrdiff_t(at));
      write_bytes(file, bad);
      const std::string msg = error_of([&] { io::load_checkpoint(file, net); });
      INFO(msg);
      CHECK(msg.find("header checksum mismatch") != std::string::npos);
      CHECK(msg.find(file.string()) != std::string::npos);
    }
  }
  SUBCASE("a truncated file") {
    for (std::size_t size : {good.size() / 2, std::size_t(5), good.size() - 1}) {
      write_bytes(file, std::vector<char>(good.begin(), good.begin() + std::ptrdiff_t(size)));
      const std::string msg = error_of([&] { io::load_checkpoint(file, net); });
      CHECK(msg.find(file.string()) != std::string::npos);
      CHECK(msg != "(no error)");
    }
  }
}

TEST_CASE("checkpoint: a failed save leaves the previous file intact") {
  TempDir dir;
  Network<Tiny> net;
  train_a_little(net, 6);
  const fs::path file = dir.path / "keep.safetensors";
  io::save_checkpoint(file, net, {{"epoch", "1"}});
  const std::vector<char> before = bytes_of(file);

  // The temporary file cannot be created: a directory is in its place.
  fs::create_directory(file.string() + ".tmp." + std::to_string(::getpid()));
  Network<Tiny> changed;
  train_a_little(changed, 7);
  CHECK_THROWS_AS(io::save_checkpoint(file, changed, {{"epoch", "2"}}), io::IoError);
  CHECK(bytes_of(file) == before);
  CHECK(io::load_checkpoint(file, changed).metadata.at("epoch") == "1");

  // A missing directory: an error naming the path, nothing written.
  const fs::path nowhere = dir.path / "no" / "such" / "dir" / "x.safetensors";
  const std::string msg = error_of([&] { io::save_checkpoint(nowhere, net, {}); });
  CHECK(msg.find(nowhere.string()) != std::string::npos);
  CHECK(!fs::exists(nowhere));
}

TEST_CASE("checkpoint: optimizer state round trip") {
  TempDir dir;
  const fs::path file = dir.path / "opt.safetensors";
  Network<Tiny> net;
  train_a_little(net, 8);
  Adam<Cpu> adam(collect_parameters(net));
  {
    Rng rng(3);
    auto x = kiln::test::random_tensor(Shape::nchw(2, 1, 8, 8), rng);
    const auto& y = net.forward(x, Mode::train);
    net.zero_grad();
    net.backward(y);
    adam.step();
  }
  io::save_checkpoint(file, net, {{"optimizer.step", std::to_string(adam.step_count())}}, adam);
  CHECK(io::load_safetensors(file).contains("optimizer.down.0.conv1.weight.exp_avg_sq"));

  Network<Tiny> net2;
  Adam<Cpu> adam2(collect_parameters(net2));
  const auto info = io::load_checkpoint(file, net2, adam2);
  CHECK(info.get("optimizer.step") == "1");
  std::vector<std::vector<float>> m1, m2;
  adam.visit_state([&](const std::string&, Tensor<float, Cpu>& t) { m1.push_back(t.to_vector()); });
  adam2.visit_state([&](const std::string&, Tensor<float, Cpu>& t) { m2.push_back(t.to_vector()); });
  CHECK(m1 == m2);
  CHECK(m1.size() == 2 * 46);  // 46 parameter tensors, two moments each

  // A model-only checkpoint cannot restore an optimizer.
  const fs::path model_only = dir.path / "model.safetensors";
  io::save_checkpoint(model_only, net, {});
  CHECK(error_of([&] { io::load_checkpoint(model_only, net2, adam2); }).find("has no optimizer state") !=
        std::string::npos);
}
