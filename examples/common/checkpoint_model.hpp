#pragma once
// Which model a checkpoint holds, before a network is built to load it into, and what a
// colorization checkpoint must say about its data (the library checks only what it is asked).
#include "devices.hpp"
#include <kiln/io/checkpoint.hpp>
#include <kiln/color/scaling.hpp>
#include <kiln/io/safetensors.hpp>

#include <cstdio>
#include <filesystem>
#include <set>
#include <string>

#include "cli.hpp"

namespace kiln::programs {

// kiln-train stamps its checkpoints with io::add_scaling_metadata (L/50-1 in, ab/110 out);
// kiln-train --resume and kiln-colorize refuse a file that says otherwise (a file without
// the keys, e.g. a PyTorch export, passes).
inline io::MetadataChecks colorization_checks() {
  const std::string why = "the model was trained on differently scaled data";
  return {{std::string(io::kInputScalingKey), std::string(io::kInputScaling), false, why},
          {std::string(io::kOutputScalingKey), std::string(io::kOutputScaling), false, why}};
}

struct CheckpointModel {
  std::string name;  // "small" | "base"
  int width = 0, depth = 0;
  int out_channels = 2;  // 2: ab; kColourClasses: colour-class logits (devices.hpp)
  bool classify() const { return out_channels != 2; }
};

// Reads the checkpoint (checksum verified) and returns the program's model name for it.
// Uses kiln.model ("UNet<1,2,W,D>") when present, otherwise the tensor shapes (a PyTorch export).
inline CheckpointModel checkpoint_model(const std::filesystem::path& path) {
  const io::SafetensorsFile file = io::load_safetensors(path);
  CheckpointModel m;
  const auto it = file.metadata.find(std::string(io::kModelKey));
  if (it != file.metadata.end()) {
    int in = 0, out = 0;
    if (std::sscanf(it->second.c_str(), "UNet<%d,%d,%d,%d>", &in, &out, &m.width, &m.depth) != 4 || in != 1 ||
        (out != 2 && out != kColourClasses))
      throw ProgramError(path.string(),
                         "kiln.model = '" + it->second +
                             "' is not a colorization U-Net these programs know (UNet<1,2,W,D> or UNet<1," +
                             std::to_string(kColourClasses) + ",W,D>)");
    m.out_channels = out;
  } else {
    if (!file.contains("down.0.conv1.weight"))
      throw ProgramError(path.string(),
                         "not a kiln U-Net checkpoint (no 'down.0.conv1.weight' tensor and no kiln.model)");
    m.width = int(file.get("down.0.conv1.weight").shape.at(0));
    std::set<std::string> levels;
    for (const auto& name : file.names())
      if (name.rfind("down.", 0) == 0) levels.insert(name.substr(0, name.find('.', 5)));
    m.depth = int(levels.size());
    if (file.contains("head.weight")) m.out_channels = int(file.get("head.weight").shape.at(0));
    if (m.out_channels != 2 && m.out_channels != kColourClasses)
      throw ProgramError(path.string(), "its head has " + std::to_string(m.out_channels) +
                                            " output channels; the programs know 2 (ab) and " +
                                            std::to_string(kColourClasses) + " (colour classes)");
  }
  m.name = std::string(model_name_for(m.width, m.depth));
  if (m.name.empty())
    throw ProgramError(path.string(), "holds a U-Net of width " + std::to_string(m.width) + " and depth " +
                                          std::to_string(m.depth) +
                                          ", but the programs are built for small (16, 4) and base (32, 4)");
  return m;
}

}  // namespace kiln::programs
