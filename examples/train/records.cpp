// The metrics line and the checkpoint's training state, each as one list of (key, field) pairs
// that both the writer and the reader walk.
#include "records.hpp"

#include <kiln/io/atomic_file.hpp>
#include <kiln/io/checkpoint.hpp>
#include <kiln/io/image.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <span>
#include <type_traits>

#include "../common/cli.hpp"
#include "../common/plot.hpp"

namespace kiln::programs {

namespace fs = std::filesystem;

std::string exact(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// ------------------------------------------------------------------------------ metrics lines

// nullable: written as null when not finite (no validation in that epoch, no step yet).
template <class Record, class F>
void metrics_fields(Record& r, F&& f) {
  f("epoch", r.epoch, false);
  f("step", r.step, false);
  f("lr", r.lr, false);
  f("train_loss", r.train_loss, true);
  f("val_mse_ab", r.val_mse, true);
  f("val_psnr", r.val_psnr, true);
  f("val_colorfulness_pred", r.cf_pred, true);
  f("val_colorfulness_true", r.cf_true, true);
  f("baseline_mse_ab", r.base_mse, true);
  f("baseline_psnr", r.base_psnr, true);
  f("seconds", r.seconds, false);
  f("images_per_s", r.images_per_s, false);
}

std::string metrics_line(const EpochRecord& r) {
  nlohmann::ordered_json j;
  metrics_fields(r, [&](const char* key, const auto& v, bool nullable) {
    if (nullable && !std::isfinite(double(v)))
      j[key] = nullptr;
    else
      j[key] = v;
  });
  return j.dump();
}

std::vector<EpochRecord> read_metrics(const fs::path& file) {
  std::vector<EpochRecord> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    EpochRecord r;
    metrics_fields(r, [&](const char* key, auto& v, bool) {
      const bool number = j.contains(key) && j[key].is_number();
      using V = std::remove_reference_t<decltype(v)>;
      if constexpr (std::is_integral_v<V>)
        v = number ? j[key].get<V>() : 0;
      else
        v = number ? j[key].get<V>() : NAN;
    });
    out.push_back(r);
  }
  return out;
}

void write_metrics(const fs::path& file, const std::vector<EpochRecord>& records) {
  std::string text;
  for (const EpochRecord& r : records) text += metrics_line(r) + "\n";
  io::write_file_atomically(file, std::as_bytes(std::span(text.data(), text.size())));
}

void append_metrics(const fs::path& file, const EpochRecord& r) {
  std::ofstream out(file, std::ios::app);
  out << metrics_line(r) << "\n";
  out.flush();
  if (!out) throw ProgramError(file.string(), "cannot append to the metrics file");
}

void plot_metrics(const fs::path& png, const std::vector<EpochRecord>& records, const std::string& loss_name) {
  Series train{"TRAIN " + loss_name, kBlue, {}, {}};
  Series val{"VALIDATION", kOrange, {}, {}};
  Series grey{"GREY (AB = 0)", kGrey, {}, {}, true};
  for (const EpochRecord& r : records) {
    train.x.push_back(r.epoch), train.y.push_back(r.train_loss);
    val.x.push_back(r.epoch), val.y.push_back(r.val_mse);
    grey.x.push_back(r.epoch), grey.y.push_back(r.base_mse);
  }
  Canvas cv(1000, 380, kWhite);
  plot_panel(cv, 0, 0, 500, 380, "TRAINING LOSS", "EPOCH", {train});
  plot_panel(cv, 500, 0, 500, 380, "VAL MSE OF AB (LAB UNITS)", "EPOCH", {grey, val});
  io::save_png(png, cv.image());
}

// ------------------------------------------------------------------------------ checkpoint state

// How a value is read back: not at all (described for readers), as text, or as a number that
// must be whole, finite, non-negative, or non-negative or +inf (no validation yet: best = inf).
enum class Rule { described, text, whole, finite, non_negative, non_negative_or_inf };

template <class State, class F>
void state_fields(State& s, F&& f) {
  f("model", s.model, Rule::described);
  f("width", s.width, Rule::described);
  f("depth", s.depth, Rule::described);
  f("config", s.config, Rule::described);
  f("schedule", s.schedule, Rule::described);
  f("baseline_mse_ab", s.baseline_mse_ab, Rule::described);
  f("epoch", s.epoch, Rule::whole);
  f("step_in_epoch", s.step_in_epoch, Rule::whole);
  f("step", s.step, Rule::whole);
  f("schedule_position", s.schedule_position, Rule::non_negative);
  f("best_val_mse", s.best_val, Rule::non_negative_or_inf);
  f("best_epoch", s.best_epoch, Rule::finite);
  f("seconds", s.seconds, Rule::non_negative);
  f("images", s.images, Rule::whole);
  f("epoch_loss_sum", s.epoch_loss_sum, Rule::finite);
  f("epoch_loss_count", s.epoch_loss_count, Rule::whole);
  f("epoch_seconds", s.epoch_seconds, Rule::non_negative);
  f("epoch_images", s.epoch_images, Rule::whole);
  f("ema_value", s.ema_value, Rule::finite);
  f("ema_weight", s.ema_weight, Rule::non_negative);
  f("optimizer_steps", s.optimizer_steps, Rule::whole);
  f("loader_state", s.loader_state, Rule::text);
}

static std::string state_key(const char* field) { return std::string("kiln.train.") + field; }

void write_state(const TrainState& s, std::map<std::string, std::string>& metadata) {
  state_fields(s, [&](const char* field, const auto& v, Rule) {
    using V = std::remove_cvref_t<decltype(v)>;
    std::string& out = metadata[state_key(field)];
    if constexpr (std::is_same_v<V, std::string>)
      out = v;
    else if constexpr (std::is_integral_v<V>)
      out = std::to_string(v);
    else
      out = exact(v);
  });
}

// Reads every field that is not only described; `text_of(key)` gives a key's text (it throws
// for a missing key), `bad(key, text, message)` reports a value that breaks its rule.
template <class TextOf, class Bad>
static void read_fields(TrainState& s, TextOf&& text_of, Bad&& bad) {
  state_fields(s, [&](const char* field, auto& v, Rule rule) {
    using V = std::remove_cvref_t<decltype(v)>;
    if (rule == Rule::described) return;
    const std::string key = state_key(field), text = text_of(key);
    if constexpr (std::is_same_v<V, std::string>) {
      v = text;
    } else {
      char* end = nullptr;
      const double x = std::strtod(text.c_str(), &end);
      const double lo = rule == Rule::finite ? -1e300 : 0;
      if (text.empty() || end != text.c_str() + text.size() || std::isnan(x) ||
          (rule != Rule::non_negative_or_inf && !std::isfinite(x)) || x < lo) {
        bad(key, "its metadata " + key + " is '" + text + "', not " + (lo >= 0 ? "a non-negative" : "a finite") +
                     " number as kiln-train writes");
        return;
      }
      if constexpr (std::is_integral_v<V>) {
        if (x != std::floor(x) || x > 9e15) {
          bad(key, "its metadata " + key + " is " + text + ", not a whole number");
          return;
        }
        // Counts kept in an int (epochs, steps in an epoch) saturate far beyond any real run.
        v = std::is_same_v<V, int> ? V(std::min<long long>((long long)x, 1 << 30)) : V(x);
      } else {
        v = x;
      }
    }
  });
}

TrainState read_state(const io::CheckpointInfo& info) {
  TrainState s;
  const std::string file = info.path.string();
  read_fields(
      s, [&](const std::string& key) { return info.get(key); },
      [&](const std::string&, const std::string& message) { throw ProgramError(file, "cannot resume: " + message); });
  return s;
}

std::optional<TrainState> peek_state(const std::map<std::string, std::string>& metadata) {
  TrainState s;
  bool ok = true;
  read_fields(
      s,
      [&](const std::string& key) {
        const auto it = metadata.find(key);
        if (it == metadata.end()) ok = false;
        return it == metadata.end() ? std::string("missing") : it->second;
      },
      [&](const std::string&, const std::string&) { ok = false; });
  if (!ok) return std::nullopt;
  return s;
}

}  // namespace kiln::programs
