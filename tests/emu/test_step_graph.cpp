// A training step with no per-step host round trip, captured once as a CUDA graph and replayed
// (kiln/gpu/graph.hpp, kiln/cuda/step_scalars.hpp, kiln/cuda/step_monitor.hpp), on the emulator:
// replays run what was captured, with each step's values read from device memory; a capture that
// does something a GPU refuses fails with a sentence saying what; the replayed training step gives
// the same bits as the eager one (Adam and SGD, a learning rate that changes every step); the
// device-side check finds an injected NaN and names its tensor; the losses read every N steps are
// the per-step losses.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "emu/kernel_cases.hpp"
#include "emu/launch_log.hpp"
#include "kiln/cuda/step_monitor.hpp"
#include "kiln/models/unet.hpp"

namespace {

using kiln_test::Cuda;
namespace gpu = kiln::gpu;

__global__ void scale_by_device_factor(const float* factor, float* data, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) data[i] = data[i] * *factor + 1.0f;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const gpu::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("Graph: a capture records launches and copies, runs nothing, and each replay reads the pinned input") {
  gpu::Stream stream;
  kiln::cuda::StreamScope scope(stream);
  gpu::PinnedBuffer factor_host(sizeof(float));
  float* factor = static_cast<float*>(gpu::device_malloc(sizeof(float)));
  float* data = static_cast<float*>(gpu::device_malloc(4 * sizeof(float)));
  const float start[4] = {1, 2, 3, 4};
  gpu::memcpy_host_to_device(data, start, sizeof start);

  gpu::Graph graph;
  graph.capture(stream, [&] {
    gpu::memcpy_async(factor, factor_host.data(), sizeof(float), gpu::CopyKind::host_to_device, stream);
    KILN_LAUNCH(scale_by_device_factor, dim3(1), dim3(32), 0, stream.handle(), factor, data, 4);
  });
  REQUIRE(graph.ready());
  CHECK(graph.size() == 2);
  CHECK(graph.operations()[0].what == "memcpy_async host to device (4 bytes)");
  CHECK(graph.operations()[1].what == "launch scale_by_device_factor");
  float now[4];
  gpu::memcpy_device_to_host(now, data, sizeof now);
  CHECK(std::memcmp(now, start, sizeof now) == 0);  // the capture ran nothing

  std::vector<float> expected(start, start + 4);
  for (float f : {2.0f, -1.0f, 0.5f}) {
    *factor_host.as<float>() = f;  // the step's value, written before the replay
    graph.launch(stream);
    for (float& e : expected) e = e * f + 1.0f;
  }
  gpu::memcpy_device_to_host(now, data, sizeof now);
  for (int i = 0; i < 4; ++i) CHECK(now[i] == expected[std::size_t(i)]);
  gpu::device_free(factor);
  gpu::device_free(data);
}

TEST_CASE("Graph: what a capture does not allow fails with a clear error, and the stream can be captured again") {
  gpu::Stream stream, other;
  kiln::cuda::StreamScope scope(stream);
  float* data = static_cast<float*>(gpu::device_malloc(4 * sizeof(float)));
  float host[4] = {};
  gpu::Graph graph;
  const auto refused = [&](const std::function<void()>& inside) {
    return error_of([&] { graph.capture(stream, inside); });
  };
  CHECK(refused([&] { stream.synchronize(); }).find("Stream::synchronize (cudaStreamSynchronize) during the capture") !=
        std::string::npos);
  CHECK(refused([&] { gpu::synchronize(); }).find("cudaDeviceSynchronize") != std::string::npos);
  CHECK(refused([&] {
          gpu::memcpy_device_to_host(host, data, sizeof host);
        }).find("memcpy_device_to_host (a blocking cudaMemcpy) during the capture of a CUDA graph") !=
        std::string::npos);
  // A layer's blocking read of its result (Loss::forward returns a host float).
  CHECK(refused([&] {
          kiln::Tensor<float, Cuda> t(kiln::Shape{1});
          (void)t;
        }).find("device_malloc (cudaMalloc) of 4 bytes during the capture") != std::string::npos);
  CHECK(refused([&] { gpu::PinnedBuffer b(16); }).find("pinned_malloc (cudaMallocHost)") != std::string::npos);
  CHECK(refused([&] {
          gpu::Event e;
          e.record(stream);
          e.synchronize();
        }).find("Event::synchronize") != std::string::npos);
  CHECK(refused([&] {
          KILN_LAUNCH(scale_by_device_factor, dim3(1), dim3(32), 0, other.handle(), data, data, 4);
        }).find("launch of scale_by_device_factor on stream") != std::string::npos);
  CHECK(error_of([&] { graph.capture(nullptr, [] {}); }).find("cannot capture the default (legacy) stream") !=
        std::string::npos);
  // A free cannot throw (it runs in destructors): the capture is invalidated and its end fails.
  void* scratch = gpu::device_malloc(64);
  CHECK(refused([&] { gpu::device_free(scratch); }).find("the capture was invalidated: device_free (cudaFree)") !=
        std::string::npos);
  CHECK_FALSE(graph.ready());
  CHECK_FALSE(gpu::is_capturing(stream));
  // Nothing is left half-captured: the next capture works and eager work runs again.
  graph.capture(stream, [&] { gpu::memset_async(data, 0, 4 * sizeof(float), stream); });
  CHECK(graph.size() == 1);
  gpu::memcpy_device_to_host(host, data, sizeof host);
  gpu::device_free(data);
}

namespace {

// Width 2: every layer, parameter and state tensor of a U-Net, with channel counts that keep the
// emulator's per-(input, output channel) weight-gradient reductions few (width 4 took 3.5x the CPU,
// minutes under the sanitizers).
// (Width 16 where a test needs the convolutions Adam packs as it writes them, channels of 16 and
// more: at depth 1, on 2 x 2 images, to keep its blocks few.)
template <class Device, int Width = 2>
using TinyUNet = kiln::Network<kiln::UNet<1, 2, Width, (Width > 2 ? 1 : 2), Device>>;

// Trains a TinyUNet<Cuda> for `steps` steps from the same start and data, with a learning rate
// that changes every step, eagerly or (graph) with step 1 eager and steps 2.. replayed from one
// capture. Returns every parameter and optimizer state, and the losses read every `read_every`.
template <class Optimizer, class Options>
struct Run {
  std::vector<std::vector<float>> state;   // every state tensor of the network, then the optimizer's
  std::vector<std::vector<float>> params;  // the parameters alone, then the optimizer's state
  std::vector<float> losses;
  std::vector<float> eager_losses;  // Loss::forward's host floats (eager runs only)
  std::size_t graph_nodes = 0;
};

template <class Optimizer, class Options, int Width = 2>
Run<Optimizer, Options> train_tiny(
    bool graph, int steps, Options options, int read_every = 2,
    const std::function<void(int, std::vector<kiln::ParameterSlot<Cuda>>&)>& after_backward = {},
    kiln::cuda::StepMonitor::Readout* finding = nullptr) {
  gpu::Stream stream;
  kiln::cuda::StreamScope scope(stream);
  kiln::Rng rng(7);
  TinyUNet<Cuda, Width> net;
  net.reset_parameters(rng);
  auto slots = kiln::collect_parameters(net);
  Optimizer opt(slots, options);
  kiln::MSELoss<Cuda> loss;
  std::vector<const kiln::Tensor<float, Cuda>*> grads;
  for (const auto& s : slots) grads.push_back(s.grad);
  kiln::cuda::StepMonitor monitor(grads);
  kiln::cuda::set_update_guard(monitor.update_flag());

  const int side = Width > 2 ? 2 : 4;  // (a wider net on the smallest images its depth takes: fewer blocks)
  const kiln::Shape in = kiln::Shape::nchw(2, 1, side, side), out = kiln::Shape::nchw(2, 2, side, side);
  kiln::Tensor<float, Cuda> x(in), t(out);
  gpu::PinnedBuffer x_host(in.numel() * sizeof(float)), t_host(out.numel() * sizeof(float));
  kiln::Rng data(11);
  Run<Optimizer, Options> run;
  const kiln::Tensor<float, Cuda>* value = nullptr;
  int current = 0;
  const auto queue_step = [&] {
    net.zero_grad();
    gpu::memcpy_async(x.data(), x_host.data(), x_host.bytes(), gpu::CopyKind::host_to_device, stream);
    gpu::memcpy_async(t.data(), t_host.data(), t_host.bytes(), gpu::CopyKind::host_to_device, stream);
    value = &loss.forward_on_device(net.forward(x, kiln::Mode::train), t);
    net.backward(loss.backward());
    if (after_backward) after_backward(current, slots);
    monitor.record(*value);
    opt.step();
  };
  gpu::Graph step_graph;
  for (int step = 1; step <= steps; ++step) {
    current = step;
    const auto xv = kiln_test::random_vector(in.numel(), data), tv = kiln_test::random_vector(out.numel(), data);
    std::memcpy(x_host.data(), xv.data(), x_host.bytes());
    std::memcpy(t_host.data(), tv.data(), t_host.bytes());
    opt.set_lr(1e-2f / static_cast<float>(step));
    if (!graph || step == 1) {
      queue_step();
      if (!graph) {  // the per-step loss as Loss::forward returns it (a blocking read each step)
        float host = 0;
        kiln::DeviceMemory<Cuda>::to_host(&host, value->data(), sizeof host);
        run.eager_losses.push_back(host);
      }
    } else {
      if (!step_graph.ready()) {
        // The capture runs the step's host code once (it stages this step's scalars) and queues
        // nothing; the pinned buffers must not be in use by earlier copies, hence the wait.
        stream.synchronize();
        step_graph.capture(stream, queue_step);
        run.graph_nodes = step_graph.size();
      } else {
        kiln::cuda::HostPass pass;  // this step's learning rate and bias corrections into pinned memory
        opt.step();
      }
      step_graph.launch(stream);
      monitor.replayed();
    }
    if (step % read_every == 0 || step == steps) {
      const auto r = monitor.read();
      run.losses.insert(run.losses.end(), r.losses.begin(), r.losses.end());
      if (finding != nullptr && r.bad_step >= 0 && finding->bad_step < 0) {
        *finding = r;
        finding->bad_step += step - static_cast<int>(r.losses.size()) + 1;  // as a global step number
      }
    }
  }
  kiln::cuda::set_update_guard(nullptr);
  net.visit(
      [&](kiln::StateRef<Cuda> ref) {
        if (ref.value) run.state.push_back(ref.value->to_vector());
      },
      "");
  for (const auto& s : slots) run.params.push_back(s.value->to_vector());
  opt.visit_state([&](const std::string&, kiln::Tensor<float, Cuda>& s) {
    run.state.push_back(s.to_vector());
    run.params.push_back(s.to_vector());
  });
  return run;
}

template <class Optimizer, class Options, int Width = 2>
void check_graph_matches_eager(Options options) {
  // Under the sanitizers 3 steps (step 1 eager, the capture launched at step 2, a replay at step 3
  // with a new learning rate): the emulated step is ~6x slower there, and this test was the
  // sanitizer stage's longest (67 s).
  const int steps = KILN_EMU_ASAN ? 3 : 5;
  const auto eager = train_tiny<Optimizer, Options, Width>(false, steps, options);
  const auto replayed = train_tiny<Optimizer, Options, Width>(true, steps, options);
  CHECK(replayed.graph_nodes > 20);
  REQUIRE(eager.state.size() == replayed.state.size());
  REQUIRE(eager.state.size() > 20);
  std::size_t identical = 0;
  for (std::size_t i = 0; i < eager.state.size(); ++i) {
    CAPTURE(i);
    REQUIRE(eager.state[i].size() == replayed.state[i].size());
    const bool same = std::memcmp(eager.state[i].data(), replayed.state[i].data(), eager.state[i].size() * 4) == 0;
    CHECK(same);
    identical += same;
  }
  CHECK(identical == eager.state.size());
  REQUIRE(eager.losses.size() == std::size_t(steps));
  REQUIRE(replayed.losses.size() == std::size_t(steps));
  REQUIRE(eager.eager_losses.size() == std::size_t(steps));
  for (int s = 0; s < steps; ++s) {
    CAPTURE(s);
    // read every 2 steps (eager and replayed) = read after each step with a blocking copy
    CHECK(std::memcmp(&eager.losses[s], &eager.eager_losses[s], 4) == 0);
    CHECK(std::memcmp(&eager.losses[s], &replayed.losses[s], 4) == 0);
  }
  // The learning rate changed every step: had it been baked into the graph, the weights would differ.
  CHECK(eager.losses[0] != eager.losses[steps - 1]);
}

}  // namespace

TEST_CASE("The training step replayed from a CUDA graph gives the eager step's bits (Adam, changing lr)") {
  if (KILN_EMU_THREADS) return;  // a whole network is far too slow in OS-thread mode
  check_graph_matches_eager<kiln::Adam<Cuda>>(kiln::AdamOptions{.lr = 1e-2f});
}

TEST_CASE("The training step replayed from a CUDA graph gives the eager step's bits (SGD with momentum, changing lr)") {
  if (KILN_EMU_THREADS) return;
  check_graph_matches_eager<kiln::SGD<Cuda>>(kiln::SgdOptions{.lr = 1e-2f, .momentum = 0.9});
}

// Under the tensor-core modes the step also holds the network's one packing launch (by-value batch
// parameter) and the input gradients on the packings kept from the forward.
TEST_CASE("The training step replayed from a CUDA graph gives the eager step's bits under TF32 and BF16") {
  if (KILN_EMU_THREADS) return;
  for (const auto mode : {kiln::cuda::MathMode::tf32, kiln::cuda::MathMode::bf16}) {
    INFO(kiln::cuda::math_mode_name(mode));
    kiln::cuda::MathModeScope scope(mode);
    kiln_test::record_launches(true);
    check_graph_matches_eager<kiln::Adam<Cuda>>(kiln::AdamOptions{.lr = 1e-2f});
    kiln_test::record_launches(false);
    CHECK(kiln_test::launched_kernels().count(mode == kiln::cuda::MathMode::tf32
                                                  ? "conv2d_mma_pack_batch_kernel"
                                                  : "conv2d_mma_pack_batch_bf16_kernel") == 1);
  }
}

// Under TF32, Adam packs the weights of the convolutions of 16 channels and more as it writes them
// (kernels/adam_conv_pack.cuh): the replayed forward reads the packings the previous replay's
// optimizer wrote, with no packing of its own.
TEST_CASE("The training step replayed from a CUDA graph gives the eager step's bits with Adam's packing (TF32)") {
  if (KILN_EMU_THREADS) return;
  kiln::cuda::MathModeScope scope(kiln::cuda::MathMode::tf32);
  kiln_test::record_launches(true);
  check_graph_matches_eager<kiln::Adam<Cuda>, kiln::AdamOptions, 16>(kiln::AdamOptions{.lr = 1e-2f});
  kiln_test::record_launches(false);
  CHECK(kiln_test::launched_kernels().count("adam_conv_pack_kernel") == 1);
}

TEST_CASE("The device-side check finds a NaN gradient, names its tensor, and keeps the weights of the last good step") {
  if (KILN_EMU_THREADS) return;
  const kiln::AdamOptions options{.lr = 1e-2f};
  std::size_t injected = 0;
  const auto inject = [&](int step, std::vector<kiln::ParameterSlot<Cuda>>& slots) {
    if (step != 3) return;
    injected = slots.size() / 2;
    std::vector<float> g = slots[injected].grad->to_vector();
    g.at(5) = std::numeric_limits<float>::quiet_NaN();
    g.at(7) = -std::numeric_limits<float>::infinity();
    slots[injected].grad->copy_from_host(g);
  };
  kiln::cuda::StepMonitor::Readout finding;
  const auto bad = train_tiny<kiln::Adam<Cuda>>(false, 4, options, 4, inject, &finding);
  REQUIRE(finding.bad_step == 3);  // found at the read after step 4, placed at step 3
  CHECK_FALSE(finding.bad_loss);
  REQUIRE(finding.tensors.size() == 1);
  CHECK(finding.tensors[0].tensor == injected);
  CHECK(finding.tensors[0].bad == 2);
  CHECK(finding.tensors[0].first_index == 5);
  CHECK(std::string(finding.tensors[0].first_value) == "NaN");
  CHECK(finding.losses.size() == 4);
  // Steps 3 and 4 updated nothing: the weights and Adam's moments are those after step 2 (only
  // BatchNorm's running statistics moved, in the forward passes), and everything is finite.
  const auto good = train_tiny<kiln::Adam<Cuda>>(false, 2, options, 2);
  REQUIRE(good.params.size() == bad.params.size());
  for (std::size_t i = 0; i < good.params.size(); ++i) {
    CAPTURE(i);
    CHECK(std::memcmp(good.params[i].data(), bad.params[i].data(), good.params[i].size() * 4) == 0);
  }
  for (const auto& tensor : bad.state)
    for (float v : tensor) REQUIRE(std::isfinite(v));
}

TEST_CASE("The device-side check: a non-finite loss marks its step; a clean run reports nothing (deliberate bug)") {
  if (KILN_EMU_THREADS) return;
  const kiln::AdamOptions options{.lr = 1e-2f};
  kiln::cuda::StepMonitor::Readout clean;
  (void)train_tiny<kiln::Adam<Cuda>>(false, 3, options, 3, {}, &clean);
  CHECK(clean.bad_step == -1);
  kiln::cuda::StepMonitor::Readout finding;
  // A NaN in the output layer's bias after step 1's backward: step 2's loss is NaN.
  const auto inject = [&](int step, std::vector<kiln::ParameterSlot<Cuda>>& slots) {
    if (step != 1) return;
    std::vector<float> b = slots.back().value->to_vector();
    b.at(0) = std::numeric_limits<float>::quiet_NaN();
    slots.back().value->copy_from_host(b);
  };
  (void)train_tiny<kiln::Adam<Cuda>>(false, 3, options, 3, inject, &finding);
  // Step 1's loss and gradients came before the NaN (good step); step 2's forward reads it.
  CHECK(finding.bad_step == 2);
  CHECK(finding.bad_loss);
}
