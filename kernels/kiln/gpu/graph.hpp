#pragma once
// kiln::gpu::Graph: work queued on one stream, captured once and replayed (RAII). Under nvcc:
// cudaStreamBeginCapture (global mode) / cudaStreamEndCapture / cudaGraphInstantiate /
// cudaGraphLaunch. In the emulator the capture records every launch, asynchronous copy, memset and
// event record queued on the stream, and launch() replays them in order (emu_capture.hpp); what a
// capture does not allow (a synchronisation, a blocking copy, an allocation or a free, work on
// another stream) throws kiln::gpu::Error there, as it fails on the GPU.
//
//   kiln::gpu::Graph step;
//   step.capture(stream, [&] { forward(); backward(); update(); });  // nothing runs yet
//   for (...) step.launch(stream);                                     // the whole step, replayed
//
// Kernel arguments and copy addresses are fixed at capture: anything that changes from one replay
// to the next must be read by the kernels from device memory (e.g. copied there from a PinnedBuffer
// by a copy inside the graph).
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "kiln/gpu/config.hpp"
#include "kiln/gpu/error.hpp"
#include "kiln/gpu/stream.hpp"

#if KILN_GPU_REAL
#include "kiln/gpu/cuda_check.hpp"
#else
#include "kiln/gpu/emu_capture.hpp"
#endif

namespace kiln::gpu {

// Counts the captures begun in this process: a value staged for device memory before a capture
// must be copied again inside the next one (include/kiln/cuda/step_scalars.hpp).
inline std::uint64_t& capture_generation() {
  static std::uint64_t generation = 0;
  return generation;
}

class Graph {
 public:
  Graph() = default;
  ~Graph() { reset(); }
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Captures what `queue_work()` queues on `stream` (a kiln::gpu::Stream, not the default stream)
  // into this graph, replacing any earlier one. Nothing runs. If queue_work throws, or queues
  // something a capture does not allow, the capture is abandoned and the error rethrown.
  template <class F>
  void capture(stream_handle stream, F&& queue_work) {
    reset();
    begin(stream);
    try {
      std::forward<F>(queue_work)();
    } catch (...) {
      abandon(stream);
      throw;
    }
    end(stream);
  }

  // Runs the captured work once more on `stream`, in the order it was queued.
  void launch(stream_handle stream) {
    if (!ready()) throw Error("kiln::gpu::Graph::launch: nothing was captured");
#if KILN_GPU_REAL
    detail::check_cuda(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch");
#else
    if (emu::Capture* c = emu::capture_for(stream, "Graph::launch")) {
      (void)c;
      throw Error("kiln::gpu::Graph::launch: a graph cannot be launched into a capture in kiln's emulator");
    }
    for (const emu::CapturedOp& op : recorded_.ops) op.run();
#endif
  }

  bool ready() const noexcept { return ready_; }
  // The number of operations (graph nodes) captured.
  std::size_t size() const {
#if KILN_GPU_REAL
    if (graph_ == nullptr) return 0;
    std::size_t count = 0;
    detail::check_cuda(cudaGraphGetNodes(graph_, nullptr, &count), "cudaGraphGetNodes");
    return count;
#else
    return recorded_.ops.size();
#endif
  }
#if !KILN_GPU_REAL
  // What was recorded, in order ("launch relu_forward_kernel<4>", "memcpy_async host to device ...").
  const std::vector<emu::CapturedOp>& operations() const noexcept { return recorded_.ops; }
#endif

  void reset() noexcept {
#if KILN_GPU_REAL
    if (exec_ != nullptr) (void)cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) (void)cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
#else
    recorded_.ops.clear();
    recorded_.invalidated = nullptr;
#endif
    ready_ = false;
  }

 private:
  void begin(stream_handle stream) {
    ++capture_generation();
#if KILN_GPU_REAL
    if (stream == nullptr)
      throw Error(
          "kiln::gpu: cannot capture the default (legacy) stream into a CUDA graph: capture a kiln::gpu::Stream");
    detail::check_cuda(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
#else
    emu::begin_capture(recorded_, stream);
#endif
  }
  void end(stream_handle stream) {
#if KILN_GPU_REAL
    cudaGraph_t graph = nullptr;
    detail::check_cuda(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
    graph_ = graph;
    detail::check_cuda(cudaGraphInstantiate(&exec_, graph_, 0), "cudaGraphInstantiate");
#else
    emu::end_capture(recorded_);
    if (recorded_.invalidated != nullptr) {
      const std::string why = recorded_.invalidated;
      reset();
      throw Error("kiln::gpu: the capture was invalidated: " + why + " during the capture of a CUDA graph on " +
                  emu::stream_name(stream) + ": not allowed while capturing");
    }
#endif
    ready_ = true;
  }
  void abandon(stream_handle stream) noexcept {
#if KILN_GPU_REAL
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(stream, &graph) == cudaSuccess && graph != nullptr) (void)cudaGraphDestroy(graph);
    (void)cudaGetLastError();
#else
    (void)stream;
    emu::end_capture(recorded_);
#endif
    reset();
  }

#if KILN_GPU_REAL
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
#else
  emu::Capture recorded_;
#endif
  bool ready_ = false;
};

}  // namespace kiln::gpu
