#pragma once
// kiln::gpu::Stream: an owned CUDA stream (RAII). stream_handle is cudaStream_t under nvcc and an
// opaque pointer in the emulator, where everything runs synchronously. A null handle, or
// Stream::default_stream(), is the default stream. Event: a CUDA event (RAII) to wait for the work
// queued before it without waiting for the whole stream (in the emulator that work is already done).
#include <utility>

#include "kiln/gpu/config.hpp"

#if KILN_GPU_REAL
#include "kiln/gpu/cuda_check.hpp"
#else
#include "kiln/gpu/emu_capture.hpp"
#endif

namespace kiln::gpu {

#if KILN_GPU_REAL
using stream_handle = cudaStream_t;
#else
struct EmulatedStream {};
using stream_handle = EmulatedStream*;
#endif

class Stream {
 public:
  Stream() {
#if KILN_GPU_REAL
    detail::check_cuda(cudaStreamCreateWithFlags(&handle_, cudaStreamNonBlocking), "cudaStreamCreate");
#else
    handle_ = new EmulatedStream;
#endif
    owning_ = true;
  }
  ~Stream() { release(); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)), owning_(std::exchange(other.owning_, false)) {}
  Stream& operator=(Stream&& other) noexcept {
    if (this != &other) {
      release();
      handle_ = std::exchange(other.handle_, nullptr);
      owning_ = std::exchange(other.owning_, false);
    }
    return *this;
  }

  // The default (null) stream; not owned.
  static Stream& default_stream() {
    static Stream stream{nullptr, false};
    return stream;
  }

  stream_handle handle() const noexcept { return handle_; }
  operator stream_handle() const noexcept { return handle_; }

  // Waits until all work queued on this stream is done.
  void synchronize() const {
#if KILN_GPU_REAL
    detail::check_cuda(cudaStreamSynchronize(handle_), "cudaStreamSynchronize");
#else
    emu::refuse_during_capture("Stream::synchronize (cudaStreamSynchronize)");
#endif
  }

 private:
  Stream(stream_handle handle, bool owning) : handle_(handle), owning_(owning) {}
  void release() noexcept {
    if (owning_ && handle_ != nullptr) {
#if KILN_GPU_REAL
      cudaStreamDestroy(handle_);
#else
      delete handle_;
#endif
    }
    handle_ = nullptr;
    owning_ = false;
  }

  stream_handle handle_ = nullptr;
  bool owning_ = false;
};

// Whether work queued on `stream` is being captured into a graph (graph.hpp) rather than run.
inline bool is_capturing(stream_handle stream) {
#if KILN_GPU_REAL
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  detail::check_cuda(cudaStreamIsCapturing(stream, &status), "cudaStreamIsCapturing");
  return status == cudaStreamCaptureStatusActive;
#else
  return emu::capturing(stream);
#endif
}

// A CUDA event without timing (RAII). record() marks the point reached in a stream's queue;
// synchronize() waits on the host until the work before it is done (refused during a capture).
// Recorded while the stream is captured, it becomes a node of the graph (an external event record),
// so that each replay records it again: a host waiting on it waits for that point of the last replay.
class Event {
 public:
  Event() {
#if KILN_GPU_REAL
    detail::check_cuda(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate");
#endif
  }
  ~Event() {
#if KILN_GPU_REAL
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
#endif
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record(stream_handle stream) {
#if KILN_GPU_REAL
    const unsigned flags = is_capturing(stream) ? cudaEventRecordExternal : cudaEventRecordDefault;
    detail::check_cuda(cudaEventRecordWithFlags(event_, stream, flags), "cudaEventRecord");
#else
    emu::run_or_capture(stream, "event record", [] {});
#endif
  }
  void synchronize() const {
#if KILN_GPU_REAL
    detail::check_cuda(cudaEventSynchronize(event_), "cudaEventSynchronize");
#else
    emu::refuse_during_capture("Event::synchronize (cudaEventSynchronize)");
#endif
  }

 private:
#if KILN_GPU_REAL
  cudaEvent_t event_ = nullptr;
#endif
};

}  // namespace kiln::gpu
