// kiln/io/safetensors.hpp — read and write checkpoints in the safetensors format, byte for
// byte as the reference implementation (huggingface/safetensors) writes them, so PyTorch's
// `safetensors.torch.load_file` reads kiln's checkpoints and kiln reads PyTorch's.
//
// Layout:  [u64 little-endian N] [N bytes of JSON header, space-padded to a multiple of 8]
//          [data section: every tensor's raw little-endian bytes, C order, no gaps]
// Header:  {"__metadata__":{"key":"value",...},
//           "<name>":{"dtype":"F32","shape":[2,3],"data_offsets":[begin,end]}, ...}
//          offsets are relative to the start of the data section; metadata values are strings.
// Like the reference, the writer lays tensors out by descending dtype alignment, then by name,
// so every tensor starts at a multiple of its element size (the header keeps 8-byte alignment).
//
// Integrity: kiln adds metadata "kiln.checksum" = "crc32:<8 hex digits>", the CRC-32 (zlib's) of
// the data section, and "kiln.header_checksum", the CRC-32 of a canonical form of the header
// (header_canonical_form below: every tensor's name, dtype, shape and offsets, and every metadata
// entry but kiln.header_checksum itself). Both are verified on load when present; files from other
// writers have neither and load unchecked, files from kiln before the header checksum have only
// the first. Writing is atomic (atomic_file.hpp): a failed save leaves the previous checkpoint
// intact.
//
// The header's JSON (nlohmann's parser and writer: several CPU-seconds of compiling in every unit
// that loads or saves) is in safetensors_json.hpp, included at the end. A program may compile it
// once instead: define KILN_IO_SEPARATE_JSON in all its units and, in exactly one of them, also
// KILN_IO_JSON_IMPLEMENTATION before including this header (kiln's programs do, in
// cmake/json_once.cpp). Without either macro the library is header-only as usual.
#pragma once

#include "kiln/io/separate.hpp"
#include "kiln/io/atomic_file.hpp"
#include "kiln/io/crc32.hpp"
#include "kiln/io/io_error.hpp"
#include "kiln/io/read_file.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

// The JSON functions below are inline (header-only), or ordinary functions defined in one unit.
#if defined(KILN_IO_SEPARATE_JSON)
#define KILN_IO_JSON_INLINE
#else
#define KILN_IO_JSON_INLINE inline
#endif

namespace kiln::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; kiln copies bytes as they are in memory");

// In the reference implementation's order, which is increasing alignment: the writer sorts by it.
enum class DType : std::uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

inline constexpr DType kAllDTypes[] = {DType::BOOL, DType::U8,  DType::I8,  DType::F8_E5M2, DType::F8_E4M3,
                                       DType::I16,  DType::U16, DType::F16, DType::BF16,    DType::I32,
                                       DType::U32,  DType::F32, DType::F64, DType::I64,     DType::U64};

constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::BOOL:
    case DType::U8:
    case DType::I8:
    case DType::F8_E5M2:
    case DType::F8_E4M3:
      return 1;
    case DType::I16:
    case DType::U16:
    case DType::F16:
    case DType::BF16:
      return 2;
    case DType::I32:
    case DType::U32:
    case DType::F32:
      return 4;
    case DType::F64:
    case DType::I64:
    case DType::U64:
      return 8;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::BOOL:
      return "BOOL";
    case DType::U8:
      return "U8";
    case DType::I8:
      return "I8";
    case DType::F8_E5M2:
      return "F8_E5M2";
    case DType::F8_E4M3:
      return "F8_E4M3";
    case DType::I16:
      return "I16";
    case DType::U16:
      return "U16";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I32:
      return "I32";
    case DType::U32:
      return "U32";
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::I64:
      return "I64";
    case DType::U64:
      return "U64";
  }
  return "?";
}

constexpr std::optional<DType> dtype_from_name(std::string_view name) {
  for (DType t : kAllDTypes)
    if (dtype_name(t) == name) return t;
  return std::nullopt;
}

// The DType that stores C++ type T (F16/BF16/F8 have no standard C++ type: use raw bytes).
template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::F32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::F64;
  else if constexpr (std::is_same_v<T, bool>)
    return DType::BOOL;
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return DType::U8;
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return DType::I8;
  else if constexpr (std::is_same_v<T, std::int16_t>)
    return DType::I16;
  else if constexpr (std::is_same_v<T, std::uint16_t>)
    return DType::U16;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return DType::I32;
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return DType::U32;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return DType::I64;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return DType::U64;
  else
    static_assert(sizeof(T) == 0, "no safetensors dtype for this C++ type");
}

// IEEE half (F16) and bfloat16 (BF16) <-> float. Widening is exact; narrowing rounds to nearest,
// ties to even (F16: overflow to infinity, subnormals kept; NaN stays NaN).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1fu) {
    bits = sign | 0x7f800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: man * 2^-24
    float v = float(man) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline std::uint16_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint16_t sign = std::uint16_t((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return std::uint16_t(sign | 0x7e00u);   // NaN
  if (ax >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // rounds past 65504: inf
  if (ax < 0x38800000u) {                                       // below 2^-14: subnormal or 0
    float a;
    std::memcpy(&a, &ax, 4);
    const float scaled = a * 16777216.0f;  // units of 2^-24; nearbyint rounds ties to even
    return std::uint16_t(sign | std::uint16_t(std::nearbyint(scaled)));
  }
  const std::uint32_t rounded = ax + 0xfffu + ((ax >> 13) & 1u);  // to nearest even at bit 13
  return std::uint16_t(sign | std::uint16_t((rounded - 0x38000000u) >> 13));
}
inline float bfloat16_to_float(std::uint16_t b) {
  const std::uint32_t bits = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline std::uint16_t float_to_bfloat16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((x >> 16) | 0x40u);  // NaN stays NaN
  return std::uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline bool is_float_dtype(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

// One named tensor: its raw little-endian bytes in C (row-major) order.
struct TensorRecord {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;  // [] is a scalar (one element)
  std::vector<std::byte> data;

  // Product of the dimensions (1 for a scalar). Assumes a validated shape.
  std::uint64_t element_count() const {
    std::uint64_t n = 1;
    for (std::int64_t d : shape) n *= static_cast<std::uint64_t>(d);
    return n;
  }

  template <class T>
  static TensorRecord from_values(std::string name, std::vector<std::int64_t> shape, std::span<const T> values) {
    TensorRecord r{std::move(name), dtype_of<T>(), std::move(shape), std::vector<std::byte>(values.size_bytes())};
    if (!values.empty()) std::memcpy(r.data.data(), values.data(), values.size_bytes());
    return r;
  }
  template <class T>
  static TensorRecord from_values(std::string name, std::vector<std::int64_t> shape, const std::vector<T>& values) {
    return from_values<T>(std::move(name), std::move(shape), std::span<const T>(values));
  }

  // F32 values stored as F32, F16 or BF16 (storage: what is written; the values are rounded).
  static TensorRecord from_floats(std::string name, std::vector<std::int64_t> shape, const std::vector<float>& values,
                                  DType storage) {
    if (storage == DType::F32) return from_values<float>(std::move(name), std::move(shape), values);
    if (storage != DType::F16 && storage != DType::BF16)
      throw IoError("tensor '" + name + "': floats cannot be stored as " + std::string(dtype_name(storage)));
    std::vector<std::uint16_t> narrow(values.size());
    for (std::size_t i = 0; i < values.size(); ++i)
      narrow[i] = storage == DType::F16 ? float_to_half(values[i]) : float_to_bfloat16(values[i]);
    TensorRecord r = from_values<std::uint16_t>(std::move(name), std::move(shape), narrow);
    r.dtype = storage;
    return r;
  }

  // The values of an F32, F16 or BF16 tensor as float (exact); throws IoError for other dtypes.
  std::vector<float> to_floats() const {
    if (dtype == DType::F32) return to_vector<float>();
    if (dtype != DType::F16 && dtype != DType::BF16)
      throw IoError("tensor '" + name + "' holds " + std::string(dtype_name(dtype)) + ", not floating-point values");
    std::vector<float> out(data.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint16_t v;
      std::memcpy(&v, data.data() + 2 * i, 2);
      out[i] = dtype == DType::F16 ? half_to_float(v) : bfloat16_to_float(v);
    }
    return out;
  }

  // The values as T; throws IoError if T does not match the stored dtype.
  template <class T>
  std::vector<T> to_vector() const {
    if (dtype_of<T>() != dtype) {
      throw IoError("tensor '" + name + "' holds " + std::string(dtype_name(dtype)) + ", not " +
                    std::string(dtype_name(dtype_of<T>())));
    }
    std::vector<T> out(data.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), data.data(), out.size() * sizeof(T));
    return out;
  }
};

// A loaded checkpoint: every tensor (in file order) and the metadata.
struct SafetensorsFile {
  std::filesystem::path path;
  std::vector<TensorRecord> tensors;
  std::map<std::string, std::string> metadata;  // includes "kiln.checksum" when the file had one

  bool contains(std::string_view name) const { return find(name) != nullptr; }

  const TensorRecord& get(std::string_view name) const {
    if (const TensorRecord* r = find(name)) return *r;
    throw IoError("tensor '" + std::string(name) + "' not found in " + detail::quoted(path) + " (it holds " +
                  std::to_string(tensors.size()) + " tensors)");
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors.size());
    for (const auto& r : tensors) out.push_back(r.name);
    return out;
  }

 private:
  const TensorRecord* find(std::string_view name) const {
    for (const auto& r : tensors)
      if (r.name == name) return &r;
    return nullptr;
  }
};

struct SaveOptions {
  // Store "kiln.checksum". Off only to produce files byte-identical to the reference writer.
  bool checksum = true;
};

inline constexpr std::string_view kChecksumKey = "kiln.checksum";
inline constexpr std::string_view kHeaderChecksumKey = "kiln.header_checksum";
// The reference refuses headers over 100 MB; so does kiln (and it bounds the allocation).
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

namespace detail {

[[noreturn]] inline void fail_write(const std::filesystem::path& path, const std::string& reason) {
  throw IoError("cannot write " + quoted(path) + ": " + reason);
}
[[noreturn]] inline void fail_load(const std::filesystem::path& path, const std::string& reason) {
  throw IoError("cannot load " + quoted(path) + ": " + reason);
}

inline std::string checksum_text(std::uint32_t crc) {
  char text[16];
  std::snprintf(text, sizeof text, "crc32:%08x", static_cast<unsigned>(crc));
  return text;
}

KILN_IO_ENTRY std::string shape_text(const std::vector<std::int64_t>& shape);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}
#endif

// What kiln.header_checksum covers: the header's meaning, independent of how the JSON was spelled
// (key order, escapes, padding). A compact JSON array [metadata, tensors] where metadata is every
// entry but kiln.header_checksum as [key, value] pairs sorted by key, and tensors are
// [name, dtype, shape, begin, end] sorted by name (names are unique; several empty tensors can
// share an offset, so offsets would not give one order).
struct CanonicalTensor {
  std::string_view name;
  DType dtype;
  const std::vector<std::int64_t>* shape;
  std::uint64_t begin, end;
};

KILN_IO_JSON_INLINE std::string header_canonical_form(const std::map<std::string, std::string>& metadata,
                                                      std::vector<CanonicalTensor> tensors);

inline std::uint32_t header_crc(const std::map<std::string, std::string>& metadata,
                                std::vector<CanonicalTensor> tensors) {
  const std::string text = header_canonical_form(metadata, std::move(tensors));
  return crc32(std::as_bytes(std::span(text.data(), text.size())));
}

// Bytes a shape of dtype needs, or nullopt on overflow.
inline std::optional<std::uint64_t> checked_byte_count(const std::vector<std::int64_t>& shape, DType dtype) {
  std::uint64_t n = dtype_size(dtype);
  for (std::int64_t d : shape) {
    const auto u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > std::numeric_limits<std::uint64_t>::max() / u) return std::nullopt;
    n *= u;
  }
  return n;
}

// The header (length prefix included) and the order in which the data follows it.
struct WritePlan {
  std::vector<std::byte> header;
  std::vector<const TensorRecord*> order;
};

// The compact JSON header (like serde_json::to_string) for tensors in `order`, laid out one after
// the other; IoError naming `path` if a name or metadata string is not valid UTF-8.
KILN_IO_JSON_INLINE std::string header_json(const std::filesystem::path& path,
                                            const std::map<std::string, std::string>& metadata,
                                            const std::vector<const TensorRecord*>& order);

KILN_IO_ENTRY WritePlan plan_safetensors(const std::filesystem::path& path, const std::vector<TensorRecord>& records,
                                         const std::map<std::string, std::string>& metadata,
                                         const SaveOptions& options);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY WritePlan plan_safetensors(const std::filesystem::path& path, const std::vector<TensorRecord>& records,
                                         const std::map<std::string, std::string>& metadata,
                                         const SaveOptions& options) {
  auto fail = [&](const std::string& reason) { fail_write(path, reason); };
  WritePlan plan;
  std::set<std::string_view> names;
  for (const TensorRecord& r : records) {
    if (r.name == "__metadata__") fail("'__metadata__' is reserved and cannot name a tensor");
    if (!names.insert(r.name).second) fail("two tensors are named '" + r.name + "'");
    for (std::int64_t d : r.shape)
      if (d < 0) fail("tensor '" + r.name + "' has a negative dimension in shape " + shape_text(r.shape));
    const auto needed = checked_byte_count(r.shape, r.dtype);
    if (!needed || *needed != r.data.size()) {
      fail("tensor '" + r.name + "' has " + std::to_string(r.data.size()) + " bytes of data, but shape " +
           shape_text(r.shape) + " of " + std::string(dtype_name(r.dtype)) + " needs " +
           (needed ? std::to_string(*needed) : std::string("more than 2^64")));
    }
    plan.order.push_back(&r);
  }
  // As the reference: descending alignment, then name (byte-wise, like Rust's String order).
  std::sort(plan.order.begin(), plan.order.end(), [](const TensorRecord* a, const TensorRecord* b) {
    if (a->dtype != b->dtype) return a->dtype > b->dtype;
    return a->name < b->name;
  });

  std::map<std::string, std::string> all_metadata = metadata;
  if (options.checksum) {
    std::uint32_t crc = 0;
    for (const TensorRecord* r : plan.order) crc = crc32(r->data, crc);
    all_metadata[std::string(kChecksumKey)] = checksum_text(crc);
    std::vector<CanonicalTensor> canonical;
    std::uint64_t offset = 0;
    for (const TensorRecord* r : plan.order) {
      canonical.push_back({r->name, r->dtype, &r->shape, offset, offset + r->data.size()});
      offset += r->data.size();
    }
    all_metadata[std::string(kHeaderChecksumKey)] = checksum_text(header_crc(all_metadata, std::move(canonical)));
  } else {
    // Stale checksums would fail every load.
    all_metadata.erase(std::string(kChecksumKey));
    all_metadata.erase(std::string(kHeaderChecksumKey));
  }

  std::string text = header_json(path, all_metadata, plan.order);
  text.append((8 - text.size() % 8) % 8, ' ');

  const std::uint64_t n = text.size();
  plan.header.resize(8 + text.size());
  for (int i = 0; i < 8; ++i) plan.header[std::size_t(i)] = std::byte((n >> (8 * i)) & 0xFFu);
  std::memcpy(plan.header.data() + 8, text.data(), text.size());
  return plan;
}
#endif

// A tensor's entry in a header being read.
struct HeaderEntry {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin, end;
};

struct ParsedHeader {
  std::vector<HeaderEntry> entries;  // sorted by offset, validated to tile the data section exactly
  std::map<std::string, std::string> metadata;
};

inline constexpr int kMaxHeaderDepth = 8;

// Parses and validates the JSON header (`text`) of a file whose data section has data_size bytes.
KILN_IO_JSON_INLINE ParsedHeader parse_safetensors_header(std::string_view text, std::uint64_t data_size,
                                                          const std::filesystem::path& path);

// A checksum key that is absent: one damaged byte in the key would otherwise switch its check off
// silently (found by the bit-flip test in tests/unit/test_hostile_inputs.cpp), so a metadata key
// one byte away from it is refused as damage.
KILN_IO_ENTRY void refuse_near_key(const std::map<std::string, std::string>& metadata, std::string_view wanted,
                                   const std::filesystem::path& path);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY void refuse_near_key(const std::map<std::string, std::string>& metadata, std::string_view wanted,
                                   const std::filesystem::path& path) {
  for (const auto& [key, value] : metadata) {
    if (key.size() != wanted.size()) continue;
    std::size_t differences = 0;
    for (std::size_t i = 0; i < key.size(); ++i) differences += key[i] != wanted[i];
    if (differences == 1) {
      throw IoError("cannot load " + quoted(path) + ": metadata key '" + key + "' looks like a damaged '" +
                    std::string(wanted) + "': the header is damaged");
    }
  }
}
#endif

// kiln.header_checksum, when present, must match the header as parsed. Checked before any tensor
// data is read.
KILN_IO_ENTRY void verify_header_checksum(const ParsedHeader& header, const std::filesystem::path& path);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY void verify_header_checksum(const ParsedHeader& header, const std::filesystem::path& path) {
  const auto it = header.metadata.find(std::string(kHeaderChecksumKey));
  if (it == header.metadata.end()) {
    refuse_near_key(header.metadata, kHeaderChecksumKey, path);
    return;  // written by another program or by kiln before header checksums: loads unchecked
  }
  if (it->second.rfind("crc32:", 0) != 0) {
    throw IoError("cannot load " + quoted(path) + ": unrecognised checksum '" + it->second + "' in " +
                  std::string(kHeaderChecksumKey) + ": the header is damaged");
  }
  std::vector<CanonicalTensor> canonical;
  canonical.reserve(header.entries.size());
  for (const HeaderEntry& e : header.entries) canonical.push_back({e.name, e.dtype, &e.shape, e.begin, e.end});
  const std::string computed = checksum_text(header_crc(header.metadata, std::move(canonical)));
  if (computed != it->second) {
    throw IoError("cannot load " + quoted(path) + ": header checksum mismatch (stored " + it->second + ", header has " +
                  computed + "): the file's header (tensor names, shapes or metadata) is damaged");
  }
}
#endif

KILN_IO_ENTRY void verify_checksum(const SafetensorsFile& file);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY void verify_checksum(const SafetensorsFile& file) {
  const auto it = file.metadata.find(std::string(kChecksumKey));
  if (it == file.metadata.end()) {
    refuse_near_key(file.metadata, kChecksumKey, file.path);
    return;
  }
  if (it->second.rfind("crc32:", 0) != 0) {
    throw IoError("cannot load " + quoted(file.path) + ": unrecognised checksum '" + it->second + "' in " +
                  std::string(kChecksumKey));
  }
  std::uint32_t crc = 0;
  for (const TensorRecord& r : file.tensors) crc = crc32(r.data, crc);  // file order = data order
  if (checksum_text(crc) != it->second) {
    throw IoError("cannot load " + quoted(file.path) + ": checksum mismatch (stored " + it->second + ", data has " +
                  checksum_text(crc) + "): the file is damaged");
  }
}
#endif

// Reads the 8-byte header length and checks it against the file size.
inline std::uint64_t header_length(std::span<const std::byte> first8, std::uint64_t file_size,
                                   const std::filesystem::path& path) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(first8[std::size_t(i)]);
  if (n > kMaxHeaderBytes) {
    throw IoError("cannot load " + quoted(path) + ": the header length " + std::to_string(n) +
                  " is over the 100 MB limit: not a safetensors file, or a damaged one");
  }
  if (n > file_size - 8) {
    throw IoError("cannot load " + quoted(path) + ": the header length " + std::to_string(n) +
                  " is larger than the rest of the file (" + std::to_string(file_size - 8) +
                  " bytes): truncated, or not a safetensors file");
  }
  return n;
}

inline void check_minimum_size(std::uint64_t size, const std::filesystem::path& path) {
  if (size < 8) {
    throw IoError("cannot load " + quoted(path) + ": the file is " + std::to_string(size) +
                  " bytes, too short for a safetensors file (at least 8)");
  }
}

}  // namespace detail

// The whole file in memory (for small files and tests; save_safetensors streams instead).
inline std::vector<std::byte> serialize_safetensors(const std::vector<TensorRecord>& records,
                                                    const std::map<std::string, std::string>& metadata = {},
                                                    const SaveOptions& options = {}) {
  detail::WritePlan plan = detail::plan_safetensors("<memory>", records, metadata, options);
  std::vector<std::byte> out = std::move(plan.header);
  for (const TensorRecord* r : plan.order) out.insert(out.end(), r->data.begin(), r->data.end());
  return out;
}

// Writes `path` atomically: the previous file stays intact unless the new one is complete and
// on disk. Throws IoError naming the file (invalid records, missing directory, disk full, ...).
KILN_IO_ENTRY void save_safetensors(const std::filesystem::path& path, const std::vector<TensorRecord>& records,
                                    const std::map<std::string, std::string>& metadata = {},
                                    const SaveOptions& options = {});
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY void save_safetensors(const std::filesystem::path& path, const std::vector<TensorRecord>& records,
                                    const std::map<std::string, std::string>& metadata, const SaveOptions& options) {
  const detail::WritePlan plan = detail::plan_safetensors(path, records, metadata, options);
  AtomicFile out(path);
  out.write(plan.header);
  for (const TensorRecord* r : plan.order) out.write(r->data);
  out.commit();
}
#endif

// Parses a complete file image. `path` only names the source in error messages.
inline SafetensorsFile parse_safetensors(std::span<const std::byte> bytes,
                                         const std::filesystem::path& path = "<memory>") {
  detail::check_minimum_size(bytes.size(), path);
  const std::uint64_t n = detail::header_length(bytes.first(8), bytes.size(), path);
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), std::size_t(n));
  const std::span<const std::byte> data = bytes.subspan(8 + std::size_t(n));
  detail::ParsedHeader header = detail::parse_safetensors_header(text, data.size(), path);
  detail::verify_header_checksum(header, path);

  SafetensorsFile file{path, {}, std::move(header.metadata)};
  for (detail::HeaderEntry& e : header.entries) {
    const auto range = data.subspan(std::size_t(e.begin), std::size_t(e.end - e.begin));
    file.tensors.push_back({std::move(e.name), e.dtype, std::move(e.shape), {range.begin(), range.end()}});
  }
  detail::verify_checksum(file);
  return file;
}

// Loads and validates a checkpoint; each tensor is read straight into its own buffer (peak
// memory is the checkpoint's size, not twice it). Throws IoError naming the file and the fault.
KILN_IO_ENTRY SafetensorsFile load_safetensors(const std::filesystem::path& path);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY SafetensorsFile load_safetensors(const std::filesystem::path& path) {
  const ReadableFile in(path, "checkpoint");
  detail::check_minimum_size(in.size(), path);
  std::byte first8[8];
  in.read_exact(0, first8);
  const std::uint64_t n = detail::header_length(first8, in.size(), path);
  std::string text(std::size_t(n), '\0');
  in.read_exact(8, std::as_writable_bytes(std::span(text)));
  const std::uint64_t data_start = 8 + n;
  detail::ParsedHeader header = detail::parse_safetensors_header(text, in.size() - data_start, path);
  detail::verify_header_checksum(header, path);

  SafetensorsFile file{path, {}, std::move(header.metadata)};
  file.tensors.reserve(header.entries.size());
  for (detail::HeaderEntry& e : header.entries) {
    TensorRecord r{std::move(e.name), e.dtype, std::move(e.shape),
                   std::vector<std::byte>(std::size_t(e.end - e.begin))};
    in.read_exact(data_start + e.begin, r.data);
    file.tensors.push_back(std::move(r));
  }
  detail::verify_checksum(file);
  return file;
}
#endif

}  // namespace kiln::io

#if !defined(KILN_IO_SEPARATE_JSON) || defined(KILN_IO_JSON_IMPLEMENTATION)
#include "kiln/io/safetensors_json.hpp"
#endif
