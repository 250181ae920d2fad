// kiln/io/checkpoint.hpp — a network (and optionally its optimizer) to a safetensors file and back.
//
// Public API (namespace kiln::io):
//   struct NamedTensor { std::string name; std::vector<std::int64_t> shape; std::vector<float> values; };
//   template <class D> NamedTensor named_tensor(std::string name, const Tensor<float, D>&);
//   struct CheckpointInfo {
//     std::filesystem::path path;
//     std::map<std::string, std::string> metadata;   // includes kiln.checksum, kiln.format_version, ...
//     std::vector<TensorRecord> extra;               // tensors that are not the model's (optimizer.*, ...)
//     const TensorRecord* find_extra(std::string_view name) const;
//     std::string get(std::string_view key) const;   // metadata value; IoError naming file + key if absent
//   };
//   template <class Net> std::string model_name();   // "UNet<1,2,16,4>" (also for Network<UNet<...>>), else ""
//
//   template <class Net> void save_checkpoint(path, Net& net, const std::map<std::string, std::string>& metadata,
//                                             const std::vector<NamedTensor>& extra = {});
//   template <class Net, HasVisitState Opt> void save_checkpoint(path, Net& net, metadata, Opt& optimizer,
//                                             std::string_view prefix = "optimizer.");
//       every state of net.visit(): parameters and buffers as F32 in their PyTorch shapes (the
//       tensor's Shape), counters (num_batches_tracked) as I64 scalars (shape []); extra tensors
//       as F32; with an optimizer, each opt.visit_state(f) tensor as F32 "<prefix><name>"
//       (e.g. "optimizer.down.0.conv1.weight.exp_avg"). Metadata exactly as the caller gives it
//       (what the model's input and output mean is the caller's to say), plus, unless the caller
//       set them: kiln.format_version = "1", kiln.model = model_name<Net>() (when known). The file is written
//       atomically with CRC-32s of the data and of the header (safetensors.hpp): a failed save
//       leaves the previous file intact.
//
//   template <class Net> CheckpointInfo load_checkpoint(path, Net& net);
//   template <class Net, class F> CheckpointInfo load_checkpoint(path, Net& net, F&& on_extra);
//       // on_extra(const TensorRecord&) for each tensor that is not the model's
//   template <class Net, HasVisitState Opt> CheckpointInfo load_checkpoint(path, Net& net, Opt& optimizer,
//                                             std::string_view prefix = "optimizer.");
//   struct MetadataCheck { std::string key, value; bool required = false; std::string why; };
//   using MetadataChecks = std::vector<MetadataCheck>;
//   load_checkpoint(path, net, const MetadataChecks&)  and  load_checkpoint(path, net, optimizer, checks, prefix)
//       the same, and first the caller's metadata checks: a key present with another value (or
//       absent, when required) is refused before anything changes, e.g. "cannot load 'a.safetensors':
//       metadata task = 'colorize', but this program expects 'denoise' (why)". Without checks the
//       metadata is not looked at: a checkpoint of any task loads into any model of its shape.
//       Checks before changing anything: every tensor the model has is present with exactly its
//       shape and dtype; no tensor under the model's top-level names (down., up., head., ...) is
//       left over; the caller's metadata checks pass; with an optimizer, every
//       "<prefix><name>" is present with the right shape. Errors (IoError) name the file and the
//       tensor, e.g. "cannot load 'a.safetensors': tensor 'down.0.conv1.weight' has shape
//       [32, 1, 3, 3] but this model expects [16, 1, 3, 3] — the checkpoint is of another model
//       size (kiln.model = 'UNet<1,2,32,4>')". Only then are the values copied in. The optimizer's
//       step count is not a tensor: keep it in metadata (the trainer's choice of key).
//   Works for any Device (values go through Tensor::to_vector / copy_from_host).
#pragma once

#include "kiln/io/separate.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/io/io_error.hpp"
#include "kiln/io/safetensors.hpp"
#include "kiln/core/state.hpp"

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kiln::io {

inline constexpr std::string_view kFormatVersionKey = "kiln.format_version";
inline constexpr std::string_view kFormatVersion = "1";
inline constexpr std::string_view kModelKey = "kiln.model";

// A host copy of a tensor to store next to the model.
struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

namespace detail {
inline std::vector<std::int64_t> dims(const Shape& s) {
  std::vector<std::int64_t> d;
  for (int i = 0; i < s.rank(); ++i) d.push_back(s[i]);
  return d;
}
// "[16, 1, 3, 3]", "[]" (as Shape::str)
inline std::string dims_text(const std::vector<std::int64_t>& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}
}  // namespace detail

template <class Device>
NamedTensor named_tensor(std::string name, const Tensor<float, Device>& t) {
  return NamedTensor{std::move(name), detail::dims(t.shape()), t.to_vector()};
}

struct CheckpointInfo {
  std::filesystem::path path;
  std::map<std::string, std::string> metadata;
  std::vector<TensorRecord> extra;

  const TensorRecord* find_extra(std::string_view name) const {
    for (const auto& r : extra)
      if (r.name == name) return &r;
    return nullptr;
  }
  std::string get(std::string_view key) const {
    const auto it = metadata.find(std::string(key));
    if (it == metadata.end()) {
      throw IoError("checkpoint " + detail::quoted(path) + " has no metadata '" + std::string(key) + "'");
    }
    return it->second;
  }
};

namespace detail {

// Network<Net> names the model inside it (Network::model); a bare model names itself.
template <class Net>
struct unwrap_network {
  using type = Net;
};
template <class Net>
requires requires { typename Net::model; }
struct unwrap_network<Net> {
  using type = typename Net::model;
};

template <class Device>
struct StateProbe {
  void operator()(const std::string&, Tensor<float, Device>&) const {}
};

}  // namespace detail

// Something with visit_state(f), f(const std::string&, Tensor<float, device>&): Adam, SGD, ...
template <class S>
concept HasVisitState = requires(S& s) {
  typename S::device;
  s.visit_state(detail::StateProbe<typename S::device>{});
};

// "UNet<1,2,16,4>" for UNet (and Network<UNet>), "" for networks that do not describe themselves.
template <class Net>
std::string model_name() {
  using N = typename detail::unwrap_network<std::remove_cvref_t<Net>>::type;
  if constexpr (requires {
                  N::kind;
                  N::width;
                  N::depth;
                }) {
    return std::string(N::kind) + "<" + std::to_string(N::in_channels) + "," + std::to_string(N::out_channels) + "," +
           std::to_string(N::width) + "," + std::to_string(N::depth) + ">";
  } else {
    return {};
  }
}

namespace detail {

template <class Net>
std::vector<TensorRecord> model_records(Net& net) {
  using Device = typename Net::device;
  std::vector<TensorRecord> records;
  net.visit(
      [&](StateRef<Device> ref) {
        if (ref.kind == StateRef<Device>::Kind::counter) {
          const std::int64_t v = *ref.counter;
          records.push_back(
              TensorRecord::from_values<std::int64_t>(ref.name, {}, std::span<const std::int64_t>(&v, 1)));
        } else {
          const std::vector<float> values = ref.value->to_vector();
          records.push_back(TensorRecord::from_values<float>(ref.name, dims(ref.value->shape()), values));
        }
      },
      std::string{});
  return records;
}

template <class Net>
std::map<std::string, std::string> checkpoint_metadata(const std::map<std::string, std::string>& given) {
  std::map<std::string, std::string> m = given;
  m.try_emplace(std::string(kFormatVersionKey), std::string(kFormatVersion));
  if (const std::string name = model_name<Net>(); !name.empty()) m.try_emplace(std::string(kModelKey), name);
  return m;
}

inline std::string first_component(std::string_view name) { return std::string(name.substr(0, name.find('.'))); }

inline std::string list_names(const std::vector<std::string>& names, std::size_t max = 5) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < max; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > max) s += " and " + std::to_string(names.size() - max) + " more";
  return s;
}

}  // namespace detail

// One expectation about a checkpoint's metadata, checked by load_checkpoint before anything changes.
struct MetadataCheck {
  std::string key;
  std::string value;
  bool required = false;  // false: a file without the key passes (e.g. a PyTorch export)
  std::string why;        // appended to the error: what a different value means

  MetadataCheck(std::string k, std::string v, bool req = false, std::string reason = {})
      : key(std::move(k)), value(std::move(v)), required(req), why(std::move(reason)) {}
};
using MetadataChecks = std::vector<MetadataCheck>;

namespace detail {

KILN_IO_ENTRY void check_metadata(const SafetensorsFile& file, const MetadataChecks& checks);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY void check_metadata(const SafetensorsFile& file, const MetadataChecks& checks) {
  const std::string where = "cannot load " + quoted(file.path) + ": ";
  for (const MetadataCheck& c : checks) {
    const std::string why = c.why.empty() ? "" : " (" + c.why + ")";
    const auto it = file.metadata.find(c.key);
    if (it == file.metadata.end()) {
      if (c.required)
        throw IoError(where + "the checkpoint has no metadata '" + c.key + "', but this program expects '" + c.value +
                      "'" + why);
    } else if (it->second != c.value) {
      throw IoError(where + "metadata " + c.key + " = '" + it->second + "', but this program expects '" + c.value +
                    "'" + why);
    }
  }
}
#endif

// Validates the model's tensors in `file`, then copies them into net. Returns the records that
// are not the model's (moved out of file).
// The work of restore_model on the network's states (visit() order) and its model name: compiled
// once per device, not once per network.
template <class Device>
std::vector<TensorRecord> restore_states(SafetensorsFile& file, const std::vector<StateRef<Device>>& refs,
                                         const std::string& ours, const MetadataChecks& checks) {
  using Ref = StateRef<Device>;
  const std::string where = "cannot load " + quoted(file.path) + ": ";
  const auto model_it = file.metadata.find(std::string(kModelKey));
  const std::string file_model = model_it == file.metadata.end() ? "" : model_it->second;
  const std::string model_note = file_model.empty() ? "" : " (kiln.model = '" + file_model + "')";

  check_metadata(file, checks);

  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < file.tensors.size(); ++i) index.emplace(file.tensors[i].name, i);

  std::set<std::string> model_names, top_level;
  std::vector<std::string> missing;
  std::vector<std::pair<Ref, const TensorRecord*>> matched;
  for (const Ref& ref : refs) {
    model_names.insert(ref.name);
    top_level.insert(first_component(ref.name));
    const auto it = index.find(ref.name);
    if (it == index.end()) {
      missing.push_back(ref.name);
      continue;
    }
    const TensorRecord& r = file.tensors[it->second];
    const bool counter = ref.kind == Ref::Kind::counter;
    const DType want_dtype = counter ? DType::I64 : DType::F32;
    const std::vector<std::int64_t> want_shape = counter ? std::vector<std::int64_t>{} : dims(ref.value->shape());
    // Parameters and buffers may be stored narrower (F16, BF16: a compact model file); they widen exactly.
    if (r.dtype != want_dtype && !(!counter && is_float_dtype(r.dtype))) {
      throw IoError(where + "tensor '" + ref.name + "' is stored as " + std::string(dtype_name(r.dtype)) +
                    " but this model expects " + std::string(dtype_name(want_dtype)));
    }
    if (r.shape != want_shape) {
      throw IoError(where + "tensor '" + ref.name + "' has shape " + dims_text(r.shape) + " but this model expects " +
                    dims_text(want_shape) + " — the checkpoint is of another model size" + model_note);
    }
    matched.emplace_back(ref, &r);
  }
  if (!missing.empty()) {
    throw IoError(where + "the checkpoint lacks " + std::to_string(missing.size()) + " of the " +
                  std::to_string(refs.size()) + " tensors this model" + (ours.empty() ? "" : " (" + ours + ")") +
                  " needs: " + list_names(missing) + " — it is of another model" + model_note);
  }
  std::vector<std::string> unexpected;
  for (const auto& r : file.tensors)
    if (!model_names.count(r.name) && top_level.count(first_component(r.name))) unexpected.push_back(r.name);
  if (!unexpected.empty()) {
    throw IoError(where + "the checkpoint holds " + std::to_string(unexpected.size()) + " model tensor(s) this model" +
                  (ours.empty() ? "" : " (" + ours + ")") + " does not have: " + list_names(unexpected) +
                  " — it is of another model" + model_note);
  }

  for (auto& [ref, r] : matched) {
    if (ref.kind == Ref::Kind::counter) {
      *ref.counter = r->template to_vector<std::int64_t>().at(0);
    } else {
      const std::vector<float> values = r->to_floats();
      ref.value->copy_from_host(values);
    }
  }
  std::vector<TensorRecord> extra;
  for (auto& r : file.tensors)
    if (!model_names.count(r.name)) extra.push_back(std::move(r));
  return extra;
}

template <class Net>
std::vector<TensorRecord> restore_model(SafetensorsFile& file, Net& net, const MetadataChecks& checks = {}) {
  using Ref = StateRef<typename Net::device>;
  std::vector<Ref> refs;
  net.visit([&](Ref ref) { refs.push_back(ref); }, std::string{});
  return restore_states(file, refs, model_name<Net>(), checks);
}

}  // namespace detail

template <class Net>
void save_checkpoint(const std::filesystem::path& path, Net& net, const std::map<std::string, std::string>& metadata,
                     const std::vector<NamedTensor>& extra = {}) {
  std::vector<TensorRecord> records = detail::model_records(net);
  for (const NamedTensor& t : extra) {
    std::uint64_t n = 1;
    for (auto d : t.shape) n *= std::uint64_t(d);
    if (n != t.values.size()) {
      throw IoError("cannot write " + detail::quoted(path) + ": extra tensor '" + t.name + "' has " +
                    std::to_string(t.values.size()) + " values for shape " + detail::dims_text(t.shape));
    }
    records.push_back(TensorRecord::from_values<float>(t.name, t.shape, t.values));
  }
  save_safetensors(path, records, detail::checkpoint_metadata<Net>(metadata));
}

template <class Net, HasVisitState Opt>
void save_checkpoint(const std::filesystem::path& path, Net& net, const std::map<std::string, std::string>& metadata,
                     Opt& optimizer, std::string_view prefix = "optimizer.") {
  std::vector<NamedTensor> extra;
  optimizer.visit_state([&](const std::string& name, auto& tensor) {
    extra.push_back(named_tensor(std::string(prefix) + name, tensor));
  });
  save_checkpoint(path, net, metadata, extra);
}

template <class Net, class F>
requires std::invocable<F&, const TensorRecord&> CheckpointInfo load_checkpoint(const std::filesystem::path& path,
                                                                                Net& net, F&& on_extra) {
  SafetensorsFile file = load_safetensors(path);
  CheckpointInfo info{path, file.metadata, detail::restore_model(file, net)};
  for (const TensorRecord& r : info.extra) on_extra(r);
  return info;
}

template <class Net>
CheckpointInfo load_checkpoint(const std::filesystem::path& path, Net& net) {
  return load_checkpoint(path, net, [](const TensorRecord&) {});
}

template <class Net>
CheckpointInfo load_checkpoint(const std::filesystem::path& path, Net& net, const MetadataChecks& checks) {
  SafetensorsFile file = load_safetensors(path);
  return CheckpointInfo{path, file.metadata, detail::restore_model(file, net, checks)};
}

template <class Net, HasVisitState Opt>
CheckpointInfo load_checkpoint(const std::filesystem::path& path, Net& net, Opt& optimizer,
                               const MetadataChecks& checks, std::string_view prefix = "optimizer.") {
  SafetensorsFile file = load_safetensors(path);
  detail::check_metadata(file, checks);
  const std::string where = "cannot load " + detail::quoted(path) + ": ";
  // Check the optimizer state first, so that a failure leaves both net and optimizer untouched.
  optimizer.visit_state([&](const std::string& name, auto& tensor) {
    const std::string full = std::string(prefix) + name;
    const TensorRecord* r = nullptr;
    for (const auto& t : file.tensors)
      if (t.name == full) r = &t;
    if (!r) {
      throw IoError(where + "the checkpoint has no optimizer state '" + full +
                    "' (saved without the optimizer, or with another optimizer)");
    }
    const auto want = detail::dims(tensor.shape());
    if (r->dtype != DType::F32 || r->shape != want) {
      throw IoError(where + "optimizer state '" + full + "' is " + std::string(dtype_name(r->dtype)) + " " +
                    detail::dims_text(r->shape) + " but this optimizer expects F32 " + detail::dims_text(want));
    }
  });
  CheckpointInfo info{path, file.metadata, detail::restore_model(file, net, checks)};
  optimizer.visit_state([&](const std::string& name, auto& tensor) {
    const TensorRecord* r = info.find_extra(std::string(prefix) + name);
    const std::vector<float> values = r->template to_vector<float>();
    tensor.copy_from_host(values);
  });
  return info;
}

template <class Net, HasVisitState Opt>
CheckpointInfo load_checkpoint(const std::filesystem::path& path, Net& net, Opt& optimizer,
                               std::string_view prefix = "optimizer.") {
  return load_checkpoint(path, net, optimizer, MetadataChecks{}, prefix);
}

}  // namespace kiln::io
