// kiln/io/safetensors_json.hpp — the JSON of a safetensors header: writing it, reading and
// validating it, and the canonical form its checksum covers (safetensors.hpp declares these).
// Included by safetensors.hpp, unless a program compiles it in one unit of its own
// (KILN_IO_SEPARATE_JSON, see safetensors.hpp).
#pragma once

#include "kiln/io/safetensors.hpp"

#include <nlohmann/json.hpp>

namespace kiln::io::detail {

KILN_IO_JSON_INLINE std::string header_canonical_form(const std::map<std::string, std::string>& metadata,
                                                      std::vector<CanonicalTensor> tensors) {
  nlohmann::json meta = nlohmann::json::array();
  for (const auto& [key, value] : metadata)  // std::map: sorted by key
    if (key != kHeaderChecksumKey) meta.push_back({key, value});
  std::sort(tensors.begin(), tensors.end(),
            [](const CanonicalTensor& a, const CanonicalTensor& b) { return a.name < b.name; });
  nlohmann::json entries = nlohmann::json::array();
  for (const CanonicalTensor& t : tensors)
    entries.push_back({std::string(t.name), std::string(dtype_name(t.dtype)), *t.shape, t.begin, t.end});
  // error_handler replace: never throw from here. The reader's strings were parsed as UTF-8;
  // the writer's own header dump refuses invalid UTF-8 right after this.
  return nlohmann::json::array({std::move(meta), std::move(entries)})
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

KILN_IO_JSON_INLINE std::string header_json(const std::filesystem::path& path,
                                            const std::map<std::string, std::string>& metadata,
                                            const std::vector<const TensorRecord*>& order) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const TensorRecord* r : order) {
    nlohmann::ordered_json info = nlohmann::ordered_json::object();
    info["dtype"] = std::string(dtype_name(r->dtype));
    info["shape"] = r->shape;
    info["data_offsets"] = {offset, offset + r->data.size()};
    header[r->name] = std::move(info);
    offset += r->data.size();
  }
  std::string text;
  try {
    text = header.dump();  // compact, like serde_json::to_string
  } catch (const nlohmann::json::exception& e) {
    fail_write(path, std::string("a tensor name or metadata string is not valid UTF-8 (") + e.what() + ")");
  }
  return text;
}

// A JSON value for a message, cut to 100 characters (a hostile header can hold megabytes).
inline std::string json_excerpt(const nlohmann::json& value) {
  std::string text = value.dump();
  if (text.size() > 100) text = text.substr(0, 97) + "...";
  return text;
}

KILN_IO_JSON_INLINE ParsedHeader parse_safetensors_header(std::string_view text, std::uint64_t data_size,
                                                          const std::filesystem::path& path) {
  auto fail = [&](const std::string& reason) { fail_load(path, reason); };
  // JSON has no raw NUL bytes, but nlohmann's parser stops at one and ignores what follows: a
  // damaged padding byte (space -> NUL) would pass unnoticed (found by the bit-flip test).
  if (const auto nul = text.find('\0'); nul != std::string_view::npos)
    fail("the header holds a NUL byte at offset " + std::to_string(8 + nul) + ": the file is damaged");
  nlohmann::json header;
  try {
    std::set<std::string> keys;  // nlohmann keeps the last of duplicate keys silently: refuse them
    header = nlohmann::json::parse(text, [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& value) {
      // A safetensors header nests 3 levels ({"name": {"shape": [...]}}). Deeper nesting is
      // refused while parsing: printing a deeply nested value (json::dump, in the messages
      // below) recursed once per level, and 100,000 levels (a 200 KB header) overflowed the
      // stack (found by fuzzing; fuzz/regressions/safetensors/deep_nesting.safetensors).
      if (depth > kMaxHeaderDepth) {
        throw IoError("cannot load " + quoted(path) + ": the header nests JSON more than " +
                      std::to_string(kMaxHeaderDepth) + " levels deep (a safetensors header needs 3)");
      }
      if (depth == 1 && event == nlohmann::json::parse_event_t::key && !keys.insert(value.get<std::string>()).second) {
        throw IoError("cannot load " + quoted(path) + ": the header names '" + value.get<std::string>() + "' twice");
      }
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("the header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object()) fail("the header is JSON but not an object");

  ParsedHeader parsed;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail("__metadata__ is not an object");
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string()) fail("metadata '" + key + "' is not a string");
        parsed.metadata[key] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!value.is_object()) fail(where + ": its entry is not an object");
    if (!value.contains("dtype") || !value["dtype"].is_string()) fail(where + ": no dtype");
    const auto dtype = dtype_from_name(value["dtype"].get<std::string>());
    if (!dtype) fail(where + ": unknown dtype '" + value["dtype"].get<std::string>() + "'");
    if (!value.contains("shape") || !value["shape"].is_array()) fail(where + ": no shape");
    std::vector<std::int64_t> shape;
    for (const auto& d : value["shape"]) {
      if (d.is_number_integer() && !d.is_number_unsigned() && d.get<std::int64_t>() < 0) {
        fail(where + ": negative dimension " + json_excerpt(d) + " in shape " + json_excerpt(value["shape"]));
      }
      if (!d.is_number_unsigned() || d.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max())) {
        fail(where + ": shape " + json_excerpt(value["shape"]) + " is not a list of non-negative integers");
      }
      shape.push_back(d.get<std::int64_t>());
    }
    const auto& offsets = value.contains("data_offsets") ? value["data_offsets"] : nlohmann::json();
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      fail(where + ": data_offsets must be two non-negative integers [begin, end]");
    }
    const auto begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
    if (end < begin) fail(where + ": data_offsets " + json_excerpt(offsets) + " end before they begin");
    if (end > data_size) {
      fail(where + ": data_offsets " + json_excerpt(offsets) + " reach beyond the data section (" +
           std::to_string(data_size) + " bytes): the file is truncated or damaged");
    }
    const auto needed = checked_byte_count(shape, *dtype);
    if (!needed || *needed != end - begin) {
      fail(where + ": shape " + shape_text(shape) + " of " + std::string(dtype_name(*dtype)) + " needs " +
           (needed ? std::to_string(*needed) : std::string("more than 2^64")) + " bytes but data_offsets " +
           json_excerpt(offsets) + " hold " + std::to_string(end - begin));
    }
    parsed.entries.push_back({name, *dtype, std::move(shape), begin, end});
  }

  // The tensors must tile the data section: no overlap (two tensors sharing bytes), no hole.
  std::sort(parsed.entries.begin(), parsed.entries.end(), [](const HeaderEntry& a, const HeaderEntry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  std::uint64_t covered = 0;
  const HeaderEntry* previous = nullptr;
  for (const HeaderEntry& e : parsed.entries) {
    if (e.begin < covered) {
      fail("tensors '" + previous->name + "' and '" + e.name + "' overlap (bytes " + std::to_string(e.begin) + " to " +
           std::to_string(std::min(covered, e.end)) + " of the data section)");
    }
    if (e.begin > covered) {
      fail("bytes " + std::to_string(covered) + " to " + std::to_string(e.begin) +
           " of the data section belong to no tensor (before '" + e.name + "')");
    }
    covered = e.end;
    if (e.end > e.begin || !previous) previous = &e;
  }
  if (covered != data_size) {
    fail("the data section has " + std::to_string(data_size) + " bytes but the tensors cover " +
         std::to_string(covered) + " (trailing bytes after the last tensor)");
  }
  return parsed;
}

}  // namespace kiln::io::detail
