#pragma once
// kiln::gpu::Stream: an owned CUDA stream (RAII). stream_handle is cudaStream_t under nvcc and an
// opaque pointer in the emulator, where everything runs synchronously. A null handle, or
// Stream::default_stream(), is the default stream.
#include <utility>

#include "kiln/gpu/config.hpp"

#if KILN_GPU_REAL
#include "kiln/gpu/cuda_check.hpp"
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

}  // namespace kiln::gpu
