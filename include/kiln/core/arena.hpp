#pragma once
// Arena<Device>: the memory of a forward (and backward) pass, planned once per
// input shape and mode. Layers request their buffers during plan(); finalize()
// makes one allocation and points every requested tensor into it. Re-planning
// into a block that is large enough reuses it, so a step never touches the heap
// after the first.
//
// Two kinds of plan (begin(mode)):
//   Mode::train  every buffer lives for the whole plan: backward reads outputs,
//                saved state and writes gradients long after forward made them.
//                Buffers are laid out one after the other, in request order.
//   Mode::eval   buffers have lifetimes. Planning runs in execution order, so the
//                plan itself is the timeline: a layer's output() is born when the
//                layer is planned and dies when its last reader release()s it
//                (reference counted: a skip connection retain()s its input for the
//                concat after its branch); scratch() lives only while its layer
//                runs. finalize() places the buffers so that two whose lifetimes
//                overlap never share bytes (largest first, each at the lowest
//                offset free for its whole lifetime), so the block is close to the
//                largest set of simultaneously live buffers (live_peak()).
//
// The layer protocol (the same in both modes; lifetimes only matter in eval):
//   const auto x = arena.current();   // the buffer holding this layer's input
//   arena.output(y_, out_shape);      // y_ is born and becomes current()
//   arena.scratch(ws_, ws_shape);     // (if any) needed while the layer runs
//   arena.release(x);                 // this layer was the input's last reader
// request() is a buffer that lives for the whole plan in either mode (gradients
// and saved state in training, small per-layer state in eval). A layer that only
// uses request() is still planned correctly in eval, just without reuse.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "kiln/core/conv_packing.hpp"
#include "kiln/core/conv_shape.hpp"
#include "kiln/core/error.hpp"
#include "kiln/core/mode.hpp"
#include "kiln/core/tensor.hpp"

namespace kiln {

// The plan (Arena::plan_id) whose convolutions the forward running on this thread has packed in one
// launch, 0 for none: set by Network::forward for the duration of its layers' forwards.
class PackedForward {
 public:
  explicit PackedForward(std::uint64_t plan) : previous_(current()) { current() = plan; }
  ~PackedForward() { current() = previous_; }
  PackedForward(const PackedForward&) = delete;
  PackedForward& operator=(const PackedForward&) = delete;
  static bool covers(std::uint64_t plan) { return plan != 0 && current() == plan; }
  // A new plan id, unique in the process across every device's arenas (never 0).
  static std::uint64_t next_plan() {
    static std::atomic<std::uint64_t> last{0};
    return ++last;
  }

 private:
  static std::uint64_t& current() {
    thread_local std::uint64_t plan = 0;
    return plan;
  }
  std::uint64_t previous_;
};

template <class Device>
class Arena {
 public:
  static constexpr std::size_t alignment = 64;
  // A planned buffer, for liveness; `none` stands for memory outside the arena
  // (a network's input), which retain() and release() ignore.
  using Value = std::size_t;
  static constexpr Value none = std::numeric_limits<Value>::max();

  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&&) = default;
  Arena& operator=(Arena&&) = default;

  // Starts a new plan: previous requests are forgotten (their tensors keep
  // pointing at the old block until finalize()).
  void begin(Mode mode = Mode::train) {
    requests_.clear();
    conv_packings_.clear();
    plan_id_ = PackedForward::next_plan();
    mode_ = mode;
    clock_ = 0;
    current_ = none;
    used_ = 0;
    live_peak_ = 0;
  }

  Mode mode() const { return mode_; }
  bool training() const { return mode_ == Mode::train; }

  // A buffer that lives for the whole plan; `slot` is bound at finalize().
  template <class T>
  Value request(Tensor<T, Device>& slot, const Shape& shape) {
    return add(slot, shape, 1);
  }

  // A layer's output: born now, alive until its reference count drops to zero
  // (one reference: the next layer's). It becomes current().
  template <class T>
  Value output(Tensor<T, Device>& slot, const Shape& shape) {
    current_ = add(slot, shape, 1);
    return current_;
  }

  // Working memory of one layer's forward pass. In training the backward pass
  // uses it too, so it is kept; in eval it dies at once (it overlaps exactly
  // the buffers alive while this layer is planned).
  template <class T>
  void scratch(Tensor<T, Device>& slot, const Shape& shape) {
    const Value v = add(slot, shape, 1);
    release(v);
  }

  // The buffer the layer being planned reads (the last output()), or none.
  Value current() const { return current_; }

  // One more reader of `v` will come later (a skip connection's concat).
  void retain(Value v) {
    if (v != none) ++requests_[v].refs;
  }
  // A reader of `v` has run; the last one ends its lifetime (eval plans only).
  void release(Value v) {
    if (v == none || mode_ == Mode::train) return;
    Request& r = requests_[v];
    KILN_CHECK(r.refs > 0, "kiln::Arena: buffer ", v, " released more often than it was retained");
    if (--r.refs == 0) r.end = ++clock_;
  }

  // One allocation (only if the plan grew), then every request is bound.
  void finalize() {
    place();
    if (used_ > capacity_) {
      block_.reset();
      void* p = DeviceMemory<Device>::allocate(used_);
      block_ = std::shared_ptr<void>(p, [](void* q) { DeviceMemory<Device>::deallocate(q); });
      capacity_ = used_;
      ++allocations_;
    }
    auto* base = static_cast<std::byte*>(block_.get());
    for (auto& r : requests_) r.bind(base + r.offset);
    if (used_) DeviceMemory<Device>::zero(base, used_);
    requests_.clear();
  }

  // The plan's convolutions whose packings a network batches (ConvPacking). plan_id() names the
  // plan (unique in the process): a network that has packed them all for the forward it is running
  // says so with PackedForward{plan_id()} on its thread, and a convolution registered with that
  // plan then skips its own packing (Conv2d; no pointer into the arena is kept).
  // The registrations point into the layers (Conv2d owns its ConvPacking).
  void add_conv_packing(ConvPacking<Device>* c) { conv_packings_.push_back(c); }
  const std::vector<ConvPacking<Device>*>& conv_packings() const { return conv_packings_; }
  std::uint64_t plan_id() const { return plan_id_; }

  // Bytes the last plan needs (the block is at least this large); set by finalize().
  std::size_t bytes_planned() const { return used_; }
  // Bytes the plan begun so far would need, without allocating or binding anything: a dry
  // run (plan into a scratch arena, then measure()) sizes a plan before committing to it.
  std::size_t measure() {
    place();
    return used_;
  }
  // The most bytes alive at one moment of the last plan: no placement can do
  // better, so bytes_planned() / live_peak() measures fragmentation. In a train
  // plan both are the sum of all requests.
  std::size_t live_peak() const { return live_peak_; }
  std::size_t capacity() const { return capacity_; }
  // How many times the block was (re)allocated: tests use it to prove reuse.
  std::size_t allocations() const { return allocations_; }

 private:
  static constexpr std::size_t forever = std::numeric_limits<std::size_t>::max();

  struct Request {
    std::function<void(std::byte*)> bind;
    std::size_t bytes = 0;
    std::size_t begin = 0, end = forever;  // lifetime [begin, end] on the plan's clock
    std::size_t offset = 0;
    int refs = 0;
  };

  template <class T>
  Value add(Tensor<T, Device>& slot, const Shape& shape, int refs) {
    Request r;
    r.bytes = (shape.numel() * sizeof(T) + alignment - 1) / alignment * alignment;
    r.begin = ++clock_;
    r.refs = refs;
    r.bind = [&slot, shape](std::byte* at) { slot = Tensor<T, Device>::view(reinterpret_cast<T*>(at), shape); };
    requests_.push_back(std::move(r));
    return requests_.size() - 1;
  }

  static bool overlap(const Request& a, const Request& b) { return a.begin <= b.end && b.begin <= a.end; }

  // Assigns offsets and computes used_ and live_peak_.
  void place() {
    used_ = 0;
    live_peak_ = 0;
    if (mode_ == Mode::train) {
      // Everything lives throughout: one after the other, as requested.
      for (auto& r : requests_) {
        r.offset = used_;
        used_ += r.bytes;
      }
      live_peak_ = used_;
      return;
    }
    // Lifetimes are intervals; the live bytes change only when one begins, so
    // the peak is the largest sum over the buffers alive at some begin.
    for (const auto& r : requests_) {
      std::size_t live = 0;
      for (const auto& q : requests_)
        if (q.begin <= r.begin && r.begin <= q.end) live += q.bytes;
      live_peak_ = std::max(live_peak_, live);
    }
    // Largest first (earlier first among equals, for a deterministic layout);
    // each takes the lowest offset where it clashes with no placed buffer whose
    // lifetime overlaps its own.
    std::vector<std::size_t> order(requests_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return requests_[a].bytes > requests_[b].bytes; });
    std::vector<std::size_t> placed;
    std::vector<const Request*> clash;
    for (std::size_t i : order) {
      Request& r = requests_[i];
      clash.clear();
      for (std::size_t j : placed)
        if (overlap(r, requests_[j])) clash.push_back(&requests_[j]);
      std::sort(clash.begin(), clash.end(), [](const Request* a, const Request* b) { return a->offset < b->offset; });
      std::size_t offset = 0;
      for (const Request* c : clash) {
        if (offset + r.bytes <= c->offset) break;  // fits in the gap below c
        offset = std::max(offset, c->offset + c->bytes);
      }
      r.offset = offset;
      used_ = std::max(used_, offset + r.bytes);
      placed.push_back(i);
    }
  }

  std::vector<Request> requests_;
  std::vector<ConvPacking<Device>*> conv_packings_;
  std::uint64_t plan_id_ = 0;
  Mode mode_ = Mode::train;
  std::size_t clock_ = 0;
  Value current_ = none;
  std::size_t used_ = 0;
  std::size_t live_peak_ = 0;
  std::size_t capacity_ = 0;
  std::size_t allocations_ = 0;
  std::shared_ptr<void> block_;
};

}  // namespace kiln
