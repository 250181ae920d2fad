// kiln's side of the PyTorch interop test (tests/interop/pytorch_interop.py), on the `small`
// model the demo trains (UNet<1,2,16,4>):
//   interop_tool export OUT.safetensors
//       random weights, running statistics from a few train-mode forward passes (so eval mode
//       differs from train mode), saved as a kiln checkpoint with two extra tensors:
//       "interop.input" [2,1,32,32] and "interop.output", kiln's eval-mode output for it.
//   interop_tool run CHECKPOINT OUT.safetensors
//       loads a checkpoint written by another program (PyTorch) that carries "interop.input",
//       runs that input through the network in eval mode, writes "interop.output" to OUT.
// Errors: a message on stderr and exit 1.
#include <kiln/io/checkpoint.hpp>
#include <kiln/io/safetensors.hpp>
#include <kiln/kiln.hpp>
#include <kiln/models/unet.hpp>

#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace io = kiln::io;
using Model = kiln::UNetSmall<kiln::Cpu>;
using Net = kiln::Network<Model>;

namespace {

constexpr const char* kInput = "interop.input";
constexpr const char* kOutput = "interop.output";

kiln::Tensor<float, kiln::Cpu> random_input(kiln::Shape shape, kiln::Rng& rng) {
  std::vector<float> v(std::size_t(shape.numel()));
  for (float& x : v) x = rng.uniform(-1.0f, 1.0f);
  return kiln::Tensor<float, kiln::Cpu>::from_host(shape, v);
}

std::vector<std::int64_t> dims_of(const kiln::Shape& s) {
  std::vector<std::int64_t> d;
  for (int i = 0; i < s.rank(); ++i) d.push_back(s[i]);
  return d;
}

int export_checkpoint(const char* out) {
  auto net = std::make_unique<Net>();
  kiln::Rng rng(2026);
  net->reset_parameters(rng);
  // Running statistics that are neither the initial 0/1 nor the last batch's.
  for (int i = 0; i < 4; ++i) {
    const auto x = random_input(kiln::Shape::nchw(4, 1, 32, 32), rng);
    net->forward(x, kiln::Mode::train);
  }
  const auto input = random_input(kiln::Shape::nchw(2, 1, 32, 32), rng);
  const auto output = net->forward(input, kiln::Mode::eval);
  io::save_checkpoint(out, *net, {{"kiln.interop", "export"}},
                      {io::NamedTensor{kInput, dims_of(input.shape()), input.to_vector()},
                       io::NamedTensor{kOutput, dims_of(output.shape()), output.to_vector()}});
  std::printf("wrote %s (%s, %zu parameters)\n", out, io::model_name<Model>().c_str(),
              std::size_t(Model::parameter_count));
  return 0;
}

int run_checkpoint(const char* checkpoint, const char* out) {
  auto net = std::make_unique<Net>();
  std::optional<io::TensorRecord> input;
  io::load_checkpoint(checkpoint, *net, [&](const io::TensorRecord& r) {
    if (r.name == kInput) input = r;
  });
  if (!input) throw io::IoError(std::string(checkpoint) + ": no tensor '" + kInput + "' to run");
  if (input->shape.size() != 4) throw io::IoError(std::string(checkpoint) + ": '" + kInput + "' is not NCHW");
  const kiln::Shape shape = kiln::Shape::nchw(input->shape[0], input->shape[1], input->shape[2], input->shape[3]);
  const auto x = kiln::Tensor<float, kiln::Cpu>::from_host(shape, input->to_vector<float>());
  const auto y = net->forward(x, kiln::Mode::eval);
  io::save_safetensors(out, {io::TensorRecord::from_values<float>(kOutput, dims_of(y.shape()), y.to_vector())});
  std::printf("wrote %s\n", out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "export" && argc == 3) return export_checkpoint(argv[2]);
    if (cmd == "run" && argc == 4) return run_checkpoint(argv[2], argv[3]);
    std::fprintf(stderr, "usage: interop_tool export OUT.safetensors | run CHECKPOINT OUT.safetensors\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "interop_tool: %s\n", e.what());
    return 1;
  }
}
