#pragma once
// The emulator's stream capture (CUDA graphs, graph.hpp). While a stream is captured, every launch,
// asynchronous copy, memset and event record queued on it is recorded instead of run; the graph
// replays the records in order. CUDA (in cudaStreamCaptureModeGlobal) refuses, while any capture
// is under way, what could not be part of a graph or would wait for the GPU: a synchronisation, a
// blocking copy, an allocation or a free. The emulator refuses the same, and work queued on any
// other stream (which here would run at once, outside the graph and out of order with it), each
// with an Error that names the call and the captured stream. Kernel arguments are copied at
// capture, as cudaGraphInstantiate keeps them: a per-step value must come from device memory.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL

#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kiln/gpu/error.hpp"

namespace kiln::gpu::emu {

// One captured operation, replayed by calling it (kernel launch, copy, memset, event record).
struct CapturedOp {
  std::string what;  // "launch relu_forward_kernel<4>", "memcpy host to device (256 bytes)"
  std::function<void()> run;
};

struct Capture {
  const void* stream = nullptr;
  std::vector<CapturedOp> ops;
  const char* invalidated = nullptr;  // the first refused call that could not throw (a free in a destructor)
};

struct CaptureState {
  std::mutex mutex;
  Capture* active = nullptr;  // at most one capture at a time (kiln captures one stream)
};

inline CaptureState& capture_state() {
  static CaptureState state;
  return state;
}

KILN_EMU_ENTRY std::string stream_name(const void* stream);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY std::string stream_name(const void* stream) {
  if (stream == nullptr) return "the default stream";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "stream %p", stream);
  return buffer;
}
#endif

// The capture that records work queued on `stream`, or null when none is under way. Work on
// another stream while a capture is under way is refused.
KILN_EMU_ENTRY Capture* capture_for(const void* stream, const std::string& what);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY Capture* capture_for(const void* stream, const std::string& what) {
  CaptureState& s = capture_state();
  std::lock_guard lock(s.mutex);
  if (s.active == nullptr) return nullptr;
  if (s.active->stream != stream)
    throw Error("kiln::gpu: " + what + " on " + stream_name(stream) + " while " + stream_name(s.active->stream) +
                " is being captured into a CUDA graph: it would run now, outside the graph (queue it on the captured "
                "stream)");
  return s.active;
}
#endif

// Throws when a capture is under way: `what` waits for the device, allocates or frees.
KILN_EMU_ENTRY void refuse_during_capture(const std::string& what);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void refuse_during_capture(const std::string& what) {
  CaptureState& s = capture_state();
  std::lock_guard lock(s.mutex);
  if (s.active != nullptr)
    throw Error("kiln::gpu: " + what + " during the capture of a CUDA graph on " + stream_name(s.active->stream) +
                ": not allowed while capturing (it synchronises, copies synchronously, allocates or frees; do it "
                "before the capture, or use the asynchronous form on the captured stream)");
}
#endif

// For calls that must not throw (frees from destructors): the capture is invalidated and its end
// throws, as cudaStreamEndCapture then fails with cudaErrorStreamCaptureInvalidated.
inline void invalidate_capture(const char* what) noexcept {
  CaptureState& s = capture_state();
  std::lock_guard lock(s.mutex);
  if (s.active != nullptr && s.active->invalidated == nullptr) s.active->invalidated = what;
}

inline bool capturing(const void* stream) {
  CaptureState& s = capture_state();
  std::lock_guard lock(s.mutex);
  return s.active != nullptr && s.active->stream == stream;
}

KILN_EMU_ENTRY void begin_capture(Capture& capture, const void* stream);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void begin_capture(Capture& capture, const void* stream) {
  CaptureState& s = capture_state();
  std::lock_guard lock(s.mutex);
  if (stream == nullptr)
    throw Error("kiln::gpu: cannot capture the default (legacy) stream into a CUDA graph: capture a kiln::gpu::Stream");
  if (s.active != nullptr)
    throw Error("kiln::gpu: a CUDA graph capture on " + stream_name(s.active->stream) +
                " is already under way; captures do not nest");
  capture.stream = stream;
  capture.ops.clear();
  s.active = &capture;
}
#endif

// Ends the capture of `capture` (whether it succeeded or is being abandoned).
KILN_EMU_ENTRY void end_capture(Capture& capture);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void end_capture(Capture& capture) {
  CaptureState& s = capture_state();
  std::lock_guard lock(s.mutex);
  if (s.active == &capture) s.active = nullptr;
}
#endif

// Runs `op` now, or records it when `stream` is being captured.
KILN_EMU_ENTRY void run_or_capture(const void* stream, std::string what, std::function<void()> op);
#if KILN_EMU_DEFINITIONS
KILN_EMU_ENTRY void run_or_capture(const void* stream, std::string what, std::function<void()> op) {
  if (Capture* c = capture_for(stream, what)) {
    c->ops.push_back({std::move(what), std::move(op)});
    return;
  }
  op();
}
#endif

}  // namespace kiln::gpu::emu

#endif
