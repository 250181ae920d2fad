// fuzz/fuzz_safetensors.cpp — parse_safetensors on arbitrary bytes (header length, JSON, dtype
// and shape checks, offsets, overlaps, checksum), plus a round-trip property: whatever it accepts
// re-serialises (serialize_safetensors) and re-parses to the same tensors and metadata.
#include "fuzz_common.hpp"

#include <kiln/core/error.hpp>
#include <kiln/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <tuple>

namespace {

using kiln::io::DType;
using Content = std::map<std::string, std::tuple<DType, std::vector<std::int64_t>, std::vector<std::byte>>>;

Content content_of(const kiln::io::SafetensorsFile& file) {
  Content out;
  for (const auto& t : file.tensors) {
    const bool fresh = out.emplace(t.name, std::make_tuple(t.dtype, t.shape, t.data)).second;
    KILN_FUZZ_CHECK(fresh, "tensor '%s' twice in one accepted file", t.name.c_str());
  }
  return out;
}

std::map<std::string, std::string> without_checksum(std::map<std::string, std::string> metadata) {
  // The checksum covers the data in file order; the writer re-orders tensors, so it may differ
  // (and the header checksum covers the offsets, which change with the order).
  metadata.erase(std::string(kiln::io::kChecksumKey));
  metadata.erase(std::string(kiln::io::kHeaderChecksumKey));
  return metadata;
}

bool near_checksum_key(const std::map<std::string, std::string>& metadata) {
  for (const std::string_view want : {kiln::io::kChecksumKey, kiln::io::kHeaderChecksumKey}) {
    for (const auto& [key, value] : metadata) {
      if (key.size() != want.size()) continue;
      std::size_t differences = 0;
      for (std::size_t i = 0; i < key.size(); ++i) differences += key[i] != want[i];
      if (differences == 1) return true;
    }
  }
  return false;
}

void run(std::span<const std::byte> bytes) {
  using namespace kiln::io;
  SafetensorsFile file;
  try {
    file = parse_safetensors(bytes, "fuzz-input.safetensors");
  } catch (const IoError&) {
    return;  // the expected outcome for bad input
  }
  // Accepted: the data section is tiled exactly, every tensor's size matches its shape.
  std::uint64_t total = 0;
  for (const auto& t : file.tensors) {
    KILN_FUZZ_CHECK(t.name != "__metadata__", "a tensor named __metadata__");
    KILN_FUZZ_CHECK(t.data.size() == t.element_count() * dtype_size(t.dtype), "tensor '%s': %zu bytes for its shape",
                    t.name.c_str(), t.data.size());
    total += t.data.size();
  }
  KILN_FUZZ_CHECK(total <= bytes.size(), "tensors hold %llu bytes, more than the %zu-byte file",
                  static_cast<unsigned long long>(total), bytes.size());
  const Content original = content_of(file);

  for (const bool checksum : {true, false}) {
    std::vector<std::byte> again;
    try {
      again = serialize_safetensors(file.tensors, file.metadata, SaveOptions{checksum});
    } catch (const IoError& e) {
      KILN_FUZZ_CHECK(false, "an accepted file does not re-serialise: %s", e.what());
    }
    SafetensorsFile reread;
    try {
      reread = parse_safetensors(again, "round-trip");
    } catch (const IoError& e) {
      // Without a checksum, a key one byte away from kiln.checksum reads as a damaged one.
      if (!checksum && near_checksum_key(file.metadata)) continue;
      KILN_FUZZ_CHECK(false, "a re-serialised file does not parse: %s", e.what());
    }
    KILN_FUZZ_CHECK(content_of(reread) == original, "round trip changed the tensors");
    KILN_FUZZ_CHECK(without_checksum(reread.metadata) == without_checksum(file.metadata),
                    "round trip changed the metadata");
    KILN_FUZZ_CHECK(reread.metadata.count(std::string(kChecksumKey)) == (checksum ? 1u : 0u), "checksum key");
    KILN_FUZZ_CHECK(reread.metadata.count(std::string(kHeaderChecksumKey)) == (checksum ? 1u : 0u),
                    "header checksum key");
    // The writer is canonical: writing what it read gives the same bytes.
    const std::vector<std::byte> third = serialize_safetensors(reread.tensors, reread.metadata, SaveOptions{checksum});
    KILN_FUZZ_CHECK(third == again, "serialisation is not a fixed point");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  run(std::as_bytes(std::span(data, size)));
  return 0;
}
