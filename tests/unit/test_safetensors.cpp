// safetensors: byte-exact interop with the reference implementation, round trips, checksum,
// validation of damaged or malicious files, and atomic replacement.
#include <doctest/doctest.h>

#include <kiln/io/safetensors.hpp>

#include "test_files.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace kiln::io;

namespace {

using kiln::test::TempDir;  // tests/test_files.hpp

std::vector<std::byte> std_bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(std::byte(v));
  return out;
}

std::vector<std::byte> read_std_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  if (!chars.empty()) std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

void write_std_bytes(const fs::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// A file with this header text (not padded) and data section.
std::vector<std::byte> craft(const std::string& header, const std::vector<std::byte>& data = {}) {
  std::vector<std::byte> out(8);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = std::byte((n >> (8 * i)) & 0xFF);
  for (char c : header) out.push_back(std::byte(c));
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<std::byte> zeros(std::size_t n) { return std::vector<std::byte>(n); }

template <class Action>
std::string expect_error(Action action, const std::vector<std::string>& fragments) {
  std::string message;
  try {
    action();
    FAIL("expected an IoError");
  } catch (const IoError& e) {
    message = e.what();
  }
  INFO("message: " << message);
  for (const auto& fragment : fragments) CHECK(message.find(fragment) != std::string::npos);
  return message;
}

// The bytes must be refused both from memory and from a file, naming the file.
void expect_rejected(const std::vector<std::byte>& bytes, const std::vector<std::string>& fragments) {
  expect_error([&] { parse_safetensors(bytes); }, fragments);
  TempDir dir("st_reject");
  const fs::path path = dir.path / "bad.safetensors";
  write_std_bytes(path, bytes);
  std::vector<std::string> with_name = fragments;
  with_name.push_back("bad.safetensors");
  expect_error([&] { load_safetensors(path); }, with_name);
}

std::vector<TensorRecord> sample_records() {
  return {
      TensorRecord::from_values<float>(
          "down.0.conv1.weight", {2, 1, 3, 3},
          std::vector<float>{0.5f, -1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}),
      TensorRecord::from_values<float>("down.0.conv1.bias", {2}, std::vector<float>{0.25f, -0.125f}),
      TensorRecord::from_values<std::int64_t>("down.0.bn1.num_batches_tracked", {},
                                              std::vector<std::int64_t>{1234567890123}),
      TensorRecord::from_values<std::uint8_t>("rng.state", {3}, std::vector<std::uint8_t>{1, 2, 3}),
      TensorRecord{"half", DType::F16, {2}, std_bytes({0x00, 0x3C, 0x00, 0xC0})},  // 1.0, -2.0
  };
}

}  // namespace

TEST_CASE("safetensors: CRC-32 matches zlib's on the standard check value, in pieces too") {
  const std::string check = "123456789";
  const auto bytes = std::as_bytes(std::span(check.data(), check.size()));
  CHECK(crc32(bytes) == 0xCBF43926u);
  CHECK(crc32(bytes.subspan(4), crc32(bytes.first(4))) == 0xCBF43926u);
  CHECK(crc32({}) == 0u);
  // slice-by-8 against the bitwise definition at every length and alignment up to 40
  std::vector<std::byte> data(48);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte((i * 151 + 7) & 0xFF);
  for (std::size_t start = 0; start < 8; ++start)
    for (std::size_t len = 0; len <= 40; ++len) {
      std::uint32_t c = 0xFFFFFFFFu;
      for (std::size_t i = start; i < start + len; ++i) {
        c ^= std::to_integer<std::uint32_t>(data[i]);
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
      }
      CHECK(crc32(std::span(data).subspan(start, len)) == ~c);
    }
}

TEST_CASE("safetensors: bytes identical to the reference implementation's own test vectors") {
  // huggingface/safetensors, safetensors/src/tensor.rs: test_serialization_forced_alignement
  const std::vector<float> values{0, 1, 2, 3, 4, 5};
  const std::vector<std::byte> expected_aligned =
      std_bytes({72,  0,   0,   0,  0,  0,  0,  0,  123, 34,  97, 116, 116, 110, 48,  34,  58,  123, 34,  100, 116,
                 121, 112, 101, 34, 58, 34, 70, 51, 50,  34,  44, 34,  115, 104, 97,  112, 101, 34,  58,  91,  49,
                 44,  49,  44,  50, 44, 51, 93, 44, 34,  100, 97, 116, 97,  95,  111, 102, 102, 115, 101, 116, 115,
                 34,  58,  91,  48, 44, 50, 52, 93, 125, 125, 32, 32,  32,  32,  32,  32,  32,  0,   0,   0,   0,
                 0,   0,   128, 63, 0,  0,  0,  64, 0,   0,   64, 64,  0,   0,   128, 64,  0,   0,   160, 64});
  CHECK(serialize_safetensors({TensorRecord::from_values("attn0", {1, 1, 2, 3}, values)}, {}, {.checksum = false}) ==
        expected_aligned);

  // test_serialization: a header that needs no padding
  const std::vector<std::byte> expected_plain = std_bytes(
      {64,  0,  0,   0,  0,   0,  0,   0,   123, 34,  97,  116, 116, 110, 46,  48, 34, 58, 123, 34, 100, 116, 121, 112,
       101, 34, 58,  34, 70,  51, 50,  34,  44,  34,  115, 104, 97,  112, 101, 34, 58, 91, 49,  44, 50,  44,  51,  93,
       44,  34, 100, 97, 116, 97, 95,  111, 102, 102, 115, 101, 116, 115, 34,  58, 91, 48, 44,  50, 52,  93,  125, 125,
       0,   0,  0,   0,  0,   0,  128, 63,  0,   0,   0,   64,  0,   0,   64,  64, 0,  0,  128, 64, 0,   0,   160, 64});
  CHECK(serialize_safetensors({TensorRecord::from_values("attn.0", {1, 2, 3}, values)}, {}, {.checksum = false}) ==
        expected_plain);

  // test_empty: no tensors, without and with metadata
  CHECK(serialize_safetensors({}, {}, {.checksum = false}) ==
        std_bytes({8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32}));
  CHECK(serialize_safetensors({}, {{"framework", "pt"}}, {.checksum = false}) ==
        std_bytes({40,  0,   0,   0,  0,  0,  0,   0,   123, 34,  95,  95,  109, 101, 116, 97,
                   100, 97,  116, 97, 95, 95, 34,  58,  123, 34,  102, 114, 97,  109, 101, 119,
                   111, 114, 107, 34, 58, 34, 112, 116, 34,  125, 125, 32,  32,  32,  32,  32}));

  // and kiln reads the reference's bytes
  const SafetensorsFile file = parse_safetensors(expected_aligned);
  CHECK(file.names() == std::vector<std::string>{"attn0"});
  CHECK(file.get("attn0").shape == std::vector<std::int64_t>{1, 1, 2, 3});
  CHECK(file.get("attn0").to_vector<float>() == values);
  CHECK(file.metadata.empty());
}

TEST_CASE("safetensors: hand-built header per the spec, with metadata and two dtypes") {
  // Reference layout: __metadata__ first; tensors by descending dtype alignment (I64 before F32),
  // then by name; compact JSON; spaces to a multiple of 8.
  const std::vector<TensorRecord> records{
      TensorRecord::from_values<float>("w", {2}, std::vector<float>{1.0f, -2.0f}),
      TensorRecord::from_values<std::int64_t>("step", {}, std::vector<std::int64_t>{7}),
  };
  const std::string json = R"({"__metadata__":{"epoch":"3"},"step":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
                           R"("w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  std::string padded = json;
  padded.append((8 - padded.size() % 8) % 8, ' ');
  std::vector<std::byte> data = std_bytes({7, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0});
  CHECK(serialize_safetensors(records, {{"epoch", "3"}}, {.checksum = false}) == craft(padded, data));
}

TEST_CASE("safetensors: save then load round-trips tensors, dtypes, shapes and metadata") {
  TempDir dir("st_roundtrip");
  const fs::path path = dir.path / "model.safetensors";
  const auto records = sample_records();
  const std::map<std::string, std::string> metadata{{"epoch", "12"},
                                                    {"config", R"({"depth":4,"note":"ünïcode \"quoted\""})"}};
  save_safetensors(path, records, metadata);

  const SafetensorsFile file = load_safetensors(path);
  CHECK(file.path == path);
  CHECK(file.tensors.size() == records.size());
  for (const TensorRecord& r : records) {
    REQUIRE(file.contains(r.name));
    const TensorRecord& got = file.get(r.name);
    CHECK(got.dtype == r.dtype);
    CHECK(got.shape == r.shape);
    CHECK(got.data == r.data);
  }
  CHECK(file.get("down.0.bn1.num_batches_tracked").to_vector<std::int64_t>() ==
        std::vector<std::int64_t>{1234567890123});
  CHECK(file.get("down.0.bn1.num_batches_tracked").element_count() == 1);
  CHECK(file.metadata.at("epoch") == "12");
  CHECK(file.metadata.at("config") == metadata.at("config"));
  REQUIRE(file.metadata.count("kiln.checksum") == 1);

  // file order: descending dtype alignment (I64, F32, F16, U8), then name
  CHECK(file.names() == std::vector<std::string>{"down.0.bn1.num_batches_tracked", "down.0.conv1.bias",
                                                 "down.0.conv1.weight", "half", "rng.state"});

  // the checksum is zlib's CRC-32 of the data section, checkable from Python
  const std::vector<std::byte> bytes = read_std_bytes(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(bytes[std::size_t(i)]);
  CHECK((8 + n) % 8 == 0);  // data section starts 8-byte aligned
  char expected[16];
  std::snprintf(expected, sizeof expected, "crc32:%08x", crc32(std::span(bytes).subspan(8 + n)));
  CHECK(file.metadata.at("kiln.checksum") == expected);

  // no temporary left behind
  for (const auto& entry : fs::directory_iterator(dir.path)) CHECK(entry.path().filename() == "model.safetensors");
}

TEST_CASE("safetensors: empty, scalar and zero-sized tensors") {
  const std::vector<TensorRecord> records{
      TensorRecord{"empty", DType::F32, {0, 3}, {}},
      TensorRecord{"also_empty", DType::U8, {0}, {}},
      TensorRecord::from_values<double>("scalar", {}, std::vector<double>{3.5}),
  };
  const SafetensorsFile file = parse_safetensors(serialize_safetensors(records));
  CHECK(file.get("empty").shape == std::vector<std::int64_t>{0, 3});
  CHECK(file.get("empty").data.empty());
  CHECK(file.get("scalar").to_vector<double>() == std::vector<double>{3.5});
  CHECK(parse_safetensors(serialize_safetensors({})).tensors.empty());
}

TEST_CASE("safetensors: a flipped byte in the data is caught by the checksum") {
  TempDir dir("st_checksum");
  const fs::path path = dir.path / "model.safetensors";
  save_safetensors(path, sample_records(), {{"epoch", "1"}});
  std::vector<std::byte> bytes = read_std_bytes(path);
  bytes[bytes.size() - 5] ^= std::byte{0x10};
  write_std_bytes(path, bytes);
  expect_error([&] { load_safetensors(path); }, {"model.safetensors", "checksum mismatch", "the file is damaged"});
  expect_error([&] { parse_safetensors(bytes); }, {"checksum mismatch"});

  // a checksum kiln does not know is refused rather than silently skipped
  const auto odd = serialize_safetensors({}, {{"kiln.checksum", "md5:abc"}}, {.checksum = false});
  CHECK(parse_safetensors(odd).metadata.size() == 0);  // checksum=false drops a stale one when writing
  expect_rejected(craft(R"({"__metadata__":{"kiln.checksum":"md5:abc"}})"), {"unrecognised checksum"});
}

TEST_CASE("safetensors: the header checksum covers names, shapes, offsets and metadata") {
  const std::vector<float> w{1, 2};
  const std::vector<std::byte> bytes =
      serialize_safetensors({TensorRecord::from_values("w", {2}, w)}, {{"epoch", "1"}});
  const SafetensorsFile file = parse_safetensors(bytes);
  // The canonical form (documented in safetensors.hpp, checkable from Python with zlib.crc32):
  // [[metadata pairs but the header checksum, by key], [[name, dtype, shape, begin, end], ... by name]]
  const std::string data_crc = file.metadata.at("kiln.checksum");
  const std::string canonical = R"([[["epoch","1"],["kiln.checksum",")" + data_crc + R"("]],[["w","F32",[2],0,8]]])";
  char expected[16];
  std::snprintf(expected, sizeof expected, "crc32:%08x",
                crc32(std::as_bytes(std::span(canonical.data(), canonical.size()))));
  CHECK(file.metadata.at("kiln.header_checksum") == expected);

  // Damage that leaves valid JSON of the same length: a tensor name, a metadata value.
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  auto damaged = [&](const std::string& from, const std::string& to) {
    std::vector<std::byte> out = bytes;
    const std::size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    std::memcpy(out.data() + at, to.data(), to.size());
    return out;
  };
  expect_error([&] { parse_safetensors(damaged(R"("w":{)", R"("v":{)"), "m.safetensors"); },
               {"'m.safetensors'", "header checksum mismatch", "damaged"});
  expect_error([&] { parse_safetensors(damaged(R"("epoch":"1")", R"("epoch":"7")")); }, {"header checksum mismatch"});
  expect_error([&] { parse_safetensors(damaged("kiln.header_checksum", "kiln.header_checksun")); },
               {"looks like a damaged 'kiln.header_checksum'"});

  // Files from kiln before the header checksum (data checksum only) still load.
  const std::string old_header = R"({"__metadata__":{"kiln.checksum":")" +
                                 detail::checksum_text(crc32(std::as_bytes(std::span(w)))) +
                                 R"("},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::vector<std::byte> data(8);
  std::memcpy(data.data(), w.data(), 8);
  const SafetensorsFile old = parse_safetensors(craft(old_header, data));
  CHECK(old.get("w").to_vector<float>() == w);
  CHECK(old.metadata.count("kiln.header_checksum") == 0);
  // ... and without any checksum (other writers)
  CHECK(parse_safetensors(serialize_safetensors({TensorRecord::from_values("w", {2}, w)}, {}, {.checksum = false}))
            .metadata.empty());
}

TEST_CASE("safetensors: truncated and too-short files") {
  const std::vector<std::byte> good = serialize_safetensors(sample_records());
  expect_rejected(std::vector<std::byte>(good.begin(), good.end() - 1), {"beyond the data section"});
  expect_rejected(std::vector<std::byte>(good.begin(), good.begin() + 40), {"header length", "larger than the rest"});
  expect_rejected(std::vector<std::byte>(good.begin(), good.begin() + 5), {"5 bytes", "too short"});
  expect_rejected({}, {"0 bytes", "too short"});
  // trailing bytes after the last tensor
  std::vector<std::byte> longer = good;
  longer.push_back(std::byte{0});
  expect_rejected(longer, {"trailing bytes"});
}

TEST_CASE("safetensors: garbage header lengths are refused before allocating") {
  expect_rejected(std_bytes({0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, '{', '}'}), {"header length", "100 MB"});
  expect_rejected(std_bytes({0x00, 0xE1, 0xF5, 0x05, 0, 0, 0, 0, '{', '}'}),
                  {"header length", "larger than the rest"});  // 1e8
  // a text file
  const std::string text = "this is not a checkpoint at all\n";
  std::vector<std::byte> bytes;
  for (char c : text) bytes.push_back(std::byte(c));
  expect_rejected(bytes, {"header length"});
}

TEST_CASE("safetensors: malformed headers give precise errors") {
  expect_rejected(craft(R"([1,2,3])"), {"not an object"});
  expect_rejected(craft(R"("string")"), {"not an object"});
  expect_rejected(craft(R"({"a":)"), {"not valid JSON"});
  expect_rejected(craft("{\"a\xff\":1}"), {"not valid JSON"});  // not UTF-8
  expect_rejected(craft(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", zeros(4)),
                  {"'a'", "unknown dtype 'F33'"});
  expect_rejected(craft(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", zeros(4)), {"'a'", "no dtype"});
  expect_rejected(craft(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", zeros(4)),
                  {"'a'", "negative dimension"});
  expect_rejected(craft(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", zeros(4)),
                  {"'a'", "non-negative integers"});
  expect_rejected(craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", zeros(4)),
                  {"'a'", "needs 8 bytes", "hold 4"});
  expect_rejected(craft(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]}})", zeros(4)),
                  {"'a'", "more than 2^64"});
  expect_rejected(craft(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", zeros(4)),
                  {"'a'", "data_offsets"});
  expect_rejected(craft(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", zeros(4)), {"'a'", "end before"});
  expect_rejected(craft(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", zeros(4)),
                  {"'a'", "beyond the data section"});
  expect_rejected(craft(R"({"a":"F32"})"), {"'a'", "not an object"});
  expect_rejected(craft(R"({"__metadata__":{"k":1}})"), {"metadata 'k'", "not a string"});
  expect_rejected(craft(R"({"__metadata__":[]})"), {"__metadata__", "not an object"});
  expect_rejected(
      craft(
          R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
          zeros(2)),
      {"'a'", "twice"});
}

TEST_CASE("safetensors: overlapping ranges and holes are refused") {
  expect_rejected(
      craft(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          zeros(12)),
      {"'a'", "'b'", "overlap"});
  // two names for the same bytes
  expect_rejected(
      craft(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
          zeros(4)),
      {"overlap"});
  expect_rejected(
      craft(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
          zeros(12)),
      {"bytes 4 to 8", "belong to no tensor"});
  // offsets out of order in the header are fine when they tile the data
  const auto ok = parse_safetensors(craft(
      R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
      std_bytes({10, 20})));
  CHECK(ok.names() == std::vector<std::string>{"a", "b"});
  CHECK(ok.get("b").data == std_bytes({20}));
}

TEST_CASE("safetensors: get() of a missing tensor names it and the file; to_vector checks the dtype") {
  TempDir dir("st_get");
  const fs::path path = dir.path / "ckpt.safetensors";
  save_safetensors(path, sample_records());
  const SafetensorsFile file = load_safetensors(path);
  expect_error([&] { (void)file.get("up.0.conv.weight"); },
               {"tensor 'up.0.conv.weight' not found in", "ckpt.safetensors"});
  expect_error([&] { (void)file.get("down.0.conv1.bias").to_vector<double>(); },
               {"down.0.conv1.bias", "F32", "not F64"});
  expect_error([&] { load_safetensors(dir.path / "missing.safetensors"); }, {"missing.safetensors", "does not exist"});
  expect_error([&] { load_safetensors(dir.path); }, {"directory"});
}

TEST_CASE("safetensors: invalid records are refused before anything is written") {
  TempDir dir("st_invalid");
  const fs::path path = dir.path / "x.safetensors";
  expect_error(
      [&] {
        save_safetensors(path, {TensorRecord{"a", DType::F32, {3}, zeros(8)}});
      },
      {"x.safetensors", "'a'", "8 bytes", "needs 12"});
  expect_error([&] { save_safetensors(path, {TensorRecord{"a", DType::F32, {-1}, {}}}); }, {"negative dimension"});
  expect_error(
      [&] {
        save_safetensors(path,
                         {TensorRecord{"a", DType::U8, {1}, zeros(1)}, TensorRecord{"a", DType::U8, {1}, zeros(1)}});
      },
      {"two tensors are named 'a'"});
  expect_error([&] { save_safetensors(path, {TensorRecord{"__metadata__", DType::U8, {1}, zeros(1)}}); }, {"reserved"});
  expect_error([&] { save_safetensors(path, {TensorRecord{"bad\xff", DType::U8, {1}, zeros(1)}}); }, {"UTF-8"});
  CHECK_FALSE(fs::exists(path));
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("safetensors: a failed write keeps the previous checkpoint loadable") {
  TempDir dir("st_atomic");
  const fs::path path = dir.path / "last.safetensors";
  save_safetensors(path, sample_records(), {{"epoch", "1"}});
  const std::vector<std::byte> before = read_std_bytes(path);

  // 1. the records are invalid
  CHECK_THROWS_AS(save_safetensors(path, {TensorRecord{"a", DType::F32, {3}, zeros(8)}}), IoError);
  // 2. the temporary file cannot be created (its name is taken by a directory; works as root too)
  const fs::path blocker = path.string() + ".tmp." + std::to_string(::getpid());
  fs::create_directory(blocker);
  expect_error(
      [&] {
        save_safetensors(path, sample_records(), {{"epoch", "2"}});
      },
      {"last.safetensors", "temporary", "Is a directory"});
  fs::remove(blocker);
  // 3. the directory does not exist
  expect_error([&] { save_safetensors(dir.path / "gone" / "c.safetensors", sample_records()); },
               {"c.safetensors", "No such file or directory"});

  CHECK(read_std_bytes(path) == before);
  CHECK(load_safetensors(path).metadata.at("epoch") == "1");

  // and a successful save replaces it
  save_safetensors(path, sample_records(), {{"epoch", "2"}});
  CHECK(load_safetensors(path).metadata.at("epoch") == "2");
}

// A tmpfs of `bytes` mounted on a fresh folder for the scope (needs CAP_SYS_ADMIN, e.g. root in a
// container that allows mounts); mounted() is false where that is refused.
struct SmallFileSystem {
  TempDir dir;
  bool ok = false;
  explicit SmallFileSystem(std::size_t bytes) : dir("st_small_fs") {
    const std::string options = "size=" + std::to_string(bytes) + ",mode=0700";
    ok = ::mount("kiln-test", dir.path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) == 0;
    if (!ok) error = errno;
  }
  ~SmallFileSystem() {
    if (ok) ::umount2(dir.path.c_str(), MNT_DETACH);
  }
  int error = 0;
};

std::vector<TensorRecord> floats(std::size_t n) {
  return {TensorRecord::from_values("w", {std::int64_t(n)}, std::vector<float>(n, 0.25f))};
}

TEST_CASE("safetensors: a full disk fails the save cleanly and keeps the previous file") {
  SmallFileSystem fs64k(64 * 1024);
  if (!fs64k.ok) {
    MESSAGE("skipped: cannot mount a 64 KiB tmpfs here (" << std::strerror(fs64k.error)
                                                          << "); needs root with mount rights");
    return;
  }
  const fs::path path = fs64k.dir.path / "latest.safetensors";
  save_safetensors(path, floats(10'000), {{"step", "1"}});  // 40 KB: fits
  const std::vector<std::byte> before = read_std_bytes(path);
  // The new file is written next to the old one before the rename: 40 KB more do not fit.
  expect_error(
      [&] {
        save_safetensors(path, floats(10'000), {{"step", "2"}});
      },
      {"latest.safetensors", "No space left on device"});
  CHECK(read_std_bytes(path) == before);
  CHECK(load_safetensors(path).metadata.at("step") == "1");
  for (const auto& entry : fs::directory_iterator(fs64k.dir.path))
    CHECK(entry.path().filename() == "latest.safetensors");  // the temporary was removed
  // ... which freed its space: a smaller save goes through.
  save_safetensors(path, floats(1'000), {{"step", "3"}});
  CHECK(load_safetensors(path).metadata.at("step") == "3");
}

TEST_CASE("safetensors: write_all reports a full device (/dev/full)") {
  const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    MESSAGE("skipped: no /dev/full here");
    return;
  }
  const std::vector<std::byte> bytes(4096);
  expect_error([&] { write_all(fd, bytes, "checkpoint.safetensors"); },
               {"checkpoint.safetensors", "No space left on device"});
  ::close(fd);
}

TEST_CASE("safetensors: AtomicFile abandoned mid-write leaves the target untouched and no temporary") {
  TempDir dir("st_abandon");
  const fs::path path = dir.path / "t.bin";
  write_file_atomically(path, std_bytes({1, 2, 3}));
  {
    AtomicFile out(path);
    out.write(std_bytes({9, 9, 9, 9}));
    CHECK(fs::exists(out.temporary()));
    // destroyed without commit(), as when an exception unwinds a save
  }
  CHECK(read_std_bytes(path) == std_bytes({1, 2, 3}));
  for (const auto& entry : fs::directory_iterator(dir.path)) CHECK(entry.path().filename() == "t.bin");
}

TEST_CASE("safetensors: dtype names and sizes follow the spec") {
  CHECK(dtype_size(DType::F32) == 4);
  CHECK(dtype_size(DType::F16) == 2);
  CHECK(dtype_size(DType::BF16) == 2);
  CHECK(dtype_size(DType::I64) == 8);
  CHECK(dtype_size(DType::I32) == 4);
  CHECK(dtype_size(DType::U8) == 1);
  CHECK(dtype_size(DType::BOOL) == 1);
  for (DType t : kAllDTypes) CHECK(dtype_from_name(dtype_name(t)) == t);
  CHECK_FALSE(dtype_from_name("f32").has_value());
  static_assert(dtype_of<float>() == DType::F32);
  static_assert(dtype_of<std::int64_t>() == DType::I64);
}
