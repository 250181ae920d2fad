#pragma once
// Arena<Device>: the memory of a training step, planned once per input shape.
// Layers request their buffers (outputs, saved state, input gradients) during
// plan(); finalize() makes one allocation and points every requested tensor
// into it. Re-planning for the same shape reuses the block, so a step never
// touches the heap after the first.
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "kiln/core/tensor.hpp"

namespace kiln {

template <class Device>
class Arena {
 public:
  static constexpr std::size_t alignment = 64;

  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&&) = default;
  Arena& operator=(Arena&&) = default;

  // Starts a new plan: previous requests are forgotten (their tensors keep
  // pointing at the old block until finalize()).
  void begin() {
    requests_.clear();
    used_ = 0;
  }

  // Asks for a float tensor of the given shape; `slot` is bound at finalize().
  template <class T>
  void request(Tensor<T, Device>& slot, const Shape& shape) {
    std::size_t offset = used_;
    used_ += (shape.numel() * sizeof(T) + alignment - 1) / alignment * alignment;
    requests_.push_back({[&slot, shape, offset](std::byte* base) {
      slot = Tensor<T, Device>::view(reinterpret_cast<T*>(base + offset), shape);
    }});
  }

  // One allocation (only if the plan grew), then every request is bound.
  void finalize() {
    if (used_ > capacity_) {
      block_.reset();
      void* p = DeviceMemory<Device>::allocate(used_);
      block_ = std::shared_ptr<void>(p, [](void* q) { DeviceMemory<Device>::deallocate(q); });
      capacity_ = used_;
      ++allocations_;
    }
    auto* base = static_cast<std::byte*>(block_.get());
    for (auto& r : requests_) r.bind(base);
    if (used_) DeviceMemory<Device>::zero(base, used_);
    requests_.clear();
  }

  std::size_t bytes_planned() const { return used_; }
  std::size_t capacity() const { return capacity_; }
  // How many times the block was (re)allocated: tests use it to prove reuse.
  std::size_t allocations() const { return allocations_; }

 private:
  struct Request {
    std::function<void(std::byte*)> bind;
  };
  std::vector<Request> requests_;
  std::size_t used_ = 0;
  std::size_t capacity_ = 0;
  std::size_t allocations_ = 0;
  std::shared_ptr<void> block_;
};

}  // namespace kiln
