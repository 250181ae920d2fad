#pragma once
// ModelColorizer for one (Model, Device) pair. Included only by the generated translation unit
// of that pair (examples/CMakeLists.txt); a unit for the Cuda device includes <kiln/cuda.hpp> first.
#include "../common/models.hpp"
#include <kiln/io/checkpoint.hpp>
#include <kiln/color/colour_classifier.hpp>
#if KILN_CUDA_DEVICE_INCLUDED
#include <kiln/color/cuda.hpp>  // ColourOps<Cuda>, for the Cuda units (after <kiln/cuda.hpp>)
#endif

#include <memory>
#include <type_traits>

#include "../common/checkpoint_model.hpp"
#include "model_colorizer.hpp"

namespace kiln::programs {

// A 2-channel model predicts ab; a classification model (kColourClasses logits) is wrapped in
// ColourClassifier, which decodes each tile with the annealed mean over the checkpoint's bins.
template <class Model>
using ColorizerNet = std::conditional_t<Model::out_channels == 2, Model, kiln::ColourClassifier<Model>>;

template <class Model>
class ColorizerFor final : public ModelColorizer {
 public:
  using Device = typename Model::device;
  using Net = kiln::Network<ColorizerNet<Model>>;

  std::string_view name() const override { return model_name<Model>(); }
  std::string type_name() const override { return io::model_name<Model>(); }
  int out_channels() const override { return Model::out_channels; }
  bool on_cpu() const override { return std::is_same_v<Device, Cpu>; }
  int size_multiple() const override { return ColorizerNet<Model>::size_multiple; }

  io::CheckpointInfo load(const std::string& path) override {
    return io::load_checkpoint(path, *net_, colorization_checks());
  }
  void set_bins(const std::vector<float>& centres, float temperature) override {
    if constexpr (Model::out_channels != 2) net_->layers().decoder().set_bins(centres, temperature);
  }
  std::vector<io::TensorRecord> export_records(io::DType storage) override {
    std::vector<io::TensorRecord> records;
    if constexpr (std::is_same_v<Device, Cpu>) {
      net_->visit([&](kiln::StateRef<kiln::Cpu> r) {
        if (r.kind == kiln::StateRef<kiln::Cpu>::Kind::counter) {
          records.push_back(
              io::TensorRecord::from_values<std::int64_t>(r.name, {}, std::vector<std::int64_t>{*r.counter}));
          return;
        }
        std::vector<std::int64_t> shape;
        for (int d = 0; d < r.value->shape().rank(); ++d) shape.push_back(r.value->shape()[d]);
        records.push_back(io::TensorRecord::from_floats(r.name, shape, r.value->to_vector(), storage));
      });
    } else {
      (void)storage;
      throw usage_error("--export", "use --device cpu");
    }
    return records;
  }
  std::uint64_t arena_bytes(std::int64_t h, std::int64_t w) override {
    return programs::arena_bytes(*net_, kiln::Shape::nchw(1, 1, h, w), kiln::Mode::eval);
  }
  Colorized colorize(const io::Image& image, const InferSize& how) override {
    return programs::colorize(*net_, image, how);
  }

 private:
  std::unique_ptr<Net> net_ = std::make_unique<Net>();
};

}  // namespace kiln::programs
