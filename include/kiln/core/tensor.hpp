#pragma once
// Tensor<T, Device>: a shape and a pointer to device memory, either owned
// (shared, like a PyTorch tensor: copies alias) or a view into memory someone
// else owns (an Arena, a parameter buffer). Contiguous, row-major (NCHW for
// activations). Copies between devices are explicit: kiln::to<Device>(t).
//
// ALIASING — read this before keeping a tensor:
//   * Copying a Tensor (`Tensor b = a;`, passing by value, storing in a vector) never copies
//     the elements: b and a are the same memory, a write through one shows through the other.
//     For an independent copy call a.clone() (or kiln::copy(dst, src) into a tensor you own).
//   * A view (owns_memory() == false) does not keep its memory alive. Every layer's forward()
//     and backward(), Network::forward/infer, and Loss::backward return a reference to a view
//     into the network's Arena: it is valid until the next forward/backward/plan of that
//     network, which OVERWRITES it (the next batch's output lands in the same bytes, and an
//     eval plan reuses them for other layers). Copying the reference gives another view of the
//     same bytes, not a snapshot. To keep a result across steps: `auto kept = net.forward(x, m).clone();`
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "kiln/core/device.hpp"
#include "kiln/core/error.hpp"
#include "kiln/core/shape.hpp"

namespace kiln {

template <class T, class Device = Cpu>
class Tensor {
  static_assert(std::is_trivially_copyable_v<T>, "kiln::Tensor holds trivially copyable element types only");

 public:
  using value_type = T;
  using device_type = Device;

  Tensor() = default;

  // Owning tensor, zero-filled.
  explicit Tensor(const Shape& shape) : shape_(shape) {
    if (shape.numel() == 0) return;
    void* p = DeviceMemory<Device>::allocate(bytes());
    owner_ = std::shared_ptr<void>(p, [](void* q) { DeviceMemory<Device>::deallocate(q); });
    data_ = static_cast<T*>(p);
    DeviceMemory<Device>::zero(data_, bytes());
  }

  // Non-owning view of memory that outlives the tensor.
  static Tensor view(T* data, const Shape& shape) {
    Tensor t;
    t.data_ = data;
    t.shape_ = shape;
    return t;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  std::size_t numel() const { return shape_.numel(); }
  std::size_t bytes() const { return numel() * sizeof(T); }
  bool empty() const { return data_ == nullptr; }
  bool owns_memory() const { return owner_ != nullptr; }

  // Same memory, another shape of the same element count.
  Tensor reshaped(const Shape& shape) const {
    KILN_CHECK(shape.numel() == numel(), "kiln::Tensor::reshaped: cannot view ", shape_.str(), " as ", shape.str());
    Tensor t = *this;
    t.shape_ = shape;
    return t;
  }

  void zero() { DeviceMemory<Device>::zero(data_, bytes()); }

  // A deep copy on the same device that owns its memory (torch.Tensor.clone()): later writes to
  // this tensor (or to the arena it views) do not show in the clone, and the clone outlives it.
  Tensor clone() const {
    Tensor t(shape_);
    if (numel() != 0) DeviceMemory<Device>::copy(t.data_, data_, bytes());
    return t;
  }

  // Host access (CPU tensors only).
  std::span<T> span() requires std::is_same_v<Device, Cpu> { return {data_, numel()}; }
  std::span<const T> span() const requires std::is_same_v<Device, Cpu> { return {data_, numel()}; }
  T& operator[](std::size_t i) requires std::is_same_v<Device, Cpu> { return data_[i]; }
  const T& operator[](std::size_t i) const requires std::is_same_v<Device, Cpu> { return data_[i]; }
  // NCHW element access for rank-4 CPU tensors.
  T& at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) requires std::is_same_v<Device, Cpu> {
    return data_[((n * shape_.c() + c) * shape_.h() + h) * shape_.w() + w];
  }
  const T& at(std::int64_t n, std::int64_t c, std::int64_t h,
              std::int64_t w) const requires std::is_same_v<Device, Cpu> {
    return data_[((n * shape_.c() + c) * shape_.h() + h) * shape_.w() + w];
  }

  // Copies the elements to a host vector (any device).
  std::vector<T> to_vector() const {
    std::vector<T> v(numel());
    if (!v.empty()) DeviceMemory<Device>::to_host(v.data(), data_, bytes());
    return v;
  }
  // Fills from a host buffer of exactly numel() elements (any device).
  void copy_from_host(std::span<const T> host) {
    KILN_CHECK(host.size() == numel(), "kiln::Tensor::copy_from_host: got ", host.size(),
               " values for a tensor of shape ", shape_.str());
    if (!host.empty()) DeviceMemory<Device>::from_host(data_, host.data(), bytes());
  }
  static Tensor from_host(const Shape& shape, std::span<const T> host) {
    Tensor t(shape);
    t.copy_from_host(host);
    return t;
  }

 private:
  T* data_ = nullptr;
  Shape shape_{};
  std::shared_ptr<void> owner_;
};

// Copies src into dst (same device, same element count).
template <class T, class Device>
void copy(Tensor<T, Device>& dst, const Tensor<T, Device>& src) {
  KILN_CHECK(dst.numel() == src.numel(), "kiln::copy: destination ", dst.shape().str(), " and source ",
             src.shape().str(), " differ in size");
  DeviceMemory<Device>::copy(dst.data(), src.data(), src.bytes());
}

// Explicit copy to another device (through the host where the devices differ).
template <class To, class T, class From>
Tensor<T, To> to(const Tensor<T, From>& src) {
  Tensor<T, To> dst(src.shape());
  if (src.numel() == 0) return dst;
  if constexpr (std::is_same_v<To, From>) {
    DeviceMemory<To>::copy(dst.data(), src.data(), src.bytes());
  } else if constexpr (std::is_same_v<From, Cpu>) {
    DeviceMemory<To>::from_host(dst.data(), src.data(), src.bytes());
  } else if constexpr (std::is_same_v<To, Cpu>) {
    DeviceMemory<From>::to_host(dst.data(), src.data(), src.bytes());
  } else {
    std::vector<T> host = src.to_vector();
    dst.copy_from_host(host);
  }
  return dst;
}

}  // namespace kiln
