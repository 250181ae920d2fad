#pragma once
// Backend<Cuda>: the host-side launchers of kiln's hand-written CUDA kernels (kernels/*.cuh).
// Same members and signatures as Backend<Cpu> (include/kiln/cpu/backend.hpp), so every layer
// templated on Device runs unchanged on kiln::Cuda. Every launcher computes the grid and block and
// goes through kiln/cuda/launch.hpp: kiln::gpu::launch on kiln::cuda::current_stream(), under nvcc
// a real launch checked with cudaGetLastError, otherwise the CPU emulator. A failure throws
// kiln::gpu::Error naming the kernel. No cuBLAS/cuDNN here (the cuDNN oracle is
// <kiln/cuda/cudnn.hpp>).
#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "kiln/core/backend.hpp"
#include "kiln/core/backend_ops.hpp"
#include "kiln/core/conv_shape.hpp"
#include "kiln/core/error.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/cuda/launch.hpp"
#include "kiln/cuda/math_mode.hpp"
#include "kiln/cuda/memory.hpp"
#include "kiln/cuda/separate.hpp"  // KILN_CUDA_SEPARATE: the convolution kernels from one unit
#include "kiln/cuda/step_scalars.hpp"
#include "kiln/gpu/gpu.hpp"

#include "activation.cuh"
#include "adam_conv_pack.cuh"
#include "batchnorm.cuh"
#include "batchnorm_nhwc.cuh"
#include "conv2d.cuh"
#include "conv2d_igemm.cuh"
#include "conv2d_mma.cuh"
#include "conv2d_mma_bf16.cuh"
#include "conv2d_mma_bf16_wgrad.cuh"
#include "conv2d_mma_wgrad.cuh"
#include "conv2d_simt.cuh"
#include "conv2d_simt_wgrad.cuh"
#include "conv2d_strided.cuh"
#include "conv2d_tf32_plan.cuh"
#include "elementwise.cuh"
#include "loss.cuh"
#include "optim.cuh"
#include "pooling.cuh"
#include "reduce.cuh"
#include "softmax_xent.cuh"
#include "spatial_grid.cuh"
#include "upsample.cuh"
#include "vector_access.cuh"

namespace kiln {

namespace cuda {
// Whether Adam<Cuda> writes the TF32 packings of the convolutions' weights as it updates them
// (kernels/adam_conv_pack.cuh; default on). Off: the next forward packs them, as SGD's does. For
// comparisons (tests, kiln_bench_step_gpu); change it between steps.
inline std::atomic<bool>& optimizer_packing_setting() {
  static std::atomic<bool> on{true};
  return on;
}
inline void set_optimizer_packing(bool on) { optimizer_packing_setting().store(on); }
inline bool optimizer_packing() { return optimizer_packing_setting().load(); }
}  // namespace cuda

template <>
inline constexpr bool backend_included<Cuda> = true;

template <>
struct Backend<Cuda> {
  // The optional capabilities of core/backend_ops.hpp.
  static constexpr bool fused_batchnorm_relu = true;
  static constexpr bool multi_tensor_adam = true;
  static constexpr bool batched_conv_packing = true;       // conv2d_pack_forwards (TF32 and BF16 training forwards)
  static constexpr bool synchronised_batchnorm = false;    // batchnorm_*_across (kiln/nn/replicas.hpp)
  static constexpr bool activation_copies = true;          // BF16 NHWC copies from the BatchNorm + ReLU kernels
  static constexpr bool deferred_wgrad_reductions = true;  // conv2d_*_wgrad_reductions (Network::backward)

  using T = Tensor<float, Cuda>;
  using I = Tensor<std::int32_t, Cuda>;

 private:
  static float* ptr(T& t) { return t.empty() ? nullptr : t.data(); }
  static const float* ptr(const T& t) { return t.empty() ? nullptr : t.data(); }
  static constexpr unsigned reduce_threads = kiln::cuda::kernels::reduce_threads;
  using ReducePlan = kiln::cuda::kernels::ReducePlan;
  // The reductions a backward has deferred (conv2d_defer_wgrad_reductions), per thread: a network's
  // backward runs on one thread (the list keeps its capacity: a step allocates nothing after the first).
  struct WgradReductions {
    bool deferring = false;
    std::vector<kiln::cuda::kernels::mma_wgrad::ReduceEntry> pending;
  };
  static WgradReductions& wgrad_reductions() {
    thread_local WgradReductions r;
    return r;
  }
  // dw += the split-K partial sums in order (conv2d_mma_wgrad_reduce_kernel), or listed for the
  // batched launch where a backward defers them.
  template <int K>
  static void wgrad_reduce(const ConvShape& s, const float* partials, int splits, float* dw) {
    namespace mw = kiln::cuda::kernels::mma_wgrad;
    if (WgradReductions& r = wgrad_reductions(); r.deferring) {
      r.pending.push_back({s, partials, dw, splits, 0});
      return;
    }
    launch(KILN_CUDA_KERNEL(conv2d_mma_wgrad_reduce_kernel, K), dim3(mw::reduce_blocks(s)),
           dim3(mw::reduce_block_threads(K)), 0, s, partials, splits, dw);
  }

  // ---- the one launch path (kiln/cuda/launch.hpp) -------------------------------------------
  template <class... Params, class... Args>
  static void launch(const kiln::cuda::Kernel<Params...>& k, dim3 grid, dim3 block, std::size_t shared_bytes,
                     Args&&... args) {
    kiln::cuda::launch(k, grid, block, shared_bytes, std::forward<Args>(args)...);
  }
  template <class... Params, class... Args>
  static void launch_cluster(const kiln::cuda::Kernel<Params...>& k, dim3 grid, dim3 block, dim3 cluster,
                             std::size_t shared_bytes, Args&&... args) {
    kiln::cuda::launch_cluster(k, grid, block, cluster, shared_bytes, std::forward<Args>(args)...);
  }
  template <class... Params, class... Args>
  static void launch_1d(const kiln::cuda::Kernel<Params...>& k, std::int64_t items, Args&&... args) {
    kiln::cuda::launch_1d(k, items, std::forward<Args>(args)...);
  }
  // f.template operator()<K>() for the first K of Ks equal to k, else for the last of Ks (0: the
  // run-time kernel size; the tensor-core kernels list only 1 and 3, which uses_tensor_cores checked).
  template <int K, int... Ks, class F>
  static void with_kernel_size(std::int64_t k, F&& f) {
    if constexpr (sizeof...(Ks) == 0)
      f.template operator()<K>();
    else if (k == K)
      f.template operator()<K>();
    else
      with_kernel_size<Ks...>(k, std::forward<F>(f));
  }
  // f.template operator()<V>() with V = 4 (float4 accesses) or 1, as vector_width() decided.
  template <class F>
  static void with_width(int v, F&& f) {
    if (v == 4)
      f.template operator()<4>();
    else
      f.template operator()<1>();
  }
  template <class F>
  static void with_relu(bool relu, F&& f) {
    if (relu)
      f.template operator()<true>();
    else
      f.template operator()<false>();
  }

  // Device scratch for the reductions (kernels/reduce.cuh): one buffer per stream and kind, grown to
  // the largest request and kept, so after the first training step no step allocates (and a CUDA
  // graph captured later sees a fixed address). Launches on one stream run in order, so consecutive
  // reductions can share it. The buffers live until the process ends (never freed from a static
  // destructor, which could run after the CUDA runtime or the emulator's allocation table is gone).
  struct StreamBuffers {
    struct Buffer {
      void* memory = nullptr;
      std::size_t bytes = 0;
    };
    std::mutex mutex;
    std::map<kiln::gpu::stream_handle, Buffer> by_stream;
  };
  // This stream's buffer of `buffers`, at least `bytes` long; a grown one is zeroed first where
  // `zeroed` (queued on the stream, before every later use).
  static void* stream_buffer(StreamBuffers& buffers, std::size_t bytes, bool zeroed) {
    std::lock_guard lock(buffers.mutex);
    StreamBuffers::Buffer& b = buffers.by_stream[kiln::cuda::current_stream()];
    if (b.bytes < bytes) {
      void* grown = DeviceMemory<Cuda>::allocate(bytes);  // throws before the old buffer is released
      if (zeroed) DeviceMemory<Cuda>::zero(grown, bytes);
      DeviceMemory<Cuda>::deallocate(b.memory);
      b.memory = grown;
      b.bytes = bytes;
    }
    return b.memory;
  }
  // The partial sums of the two-stage reductions.
  static double* partials(std::int64_t doubles) {
    static auto* buffers = new StreamBuffers;
    return static_cast<double*>(
        stream_buffer(*buffers, static_cast<std::size_t>(doubles > 0 ? doubles : 1) * sizeof(double), false));
  }
  // One counter per channel for the one-launch reductions (channel_sum_kernel): zeroed when
  // allocated, and each launch leaves its counters at zero again.
  static unsigned* reduce_counters(std::int64_t count) {
    static auto* buffers = new StreamBuffers;
    return static_cast<unsigned*>(
        stream_buffer(*buffers, static_cast<std::size_t>(count > 0 ? count : 1) * sizeof(unsigned), true));
  }
  // The device copy of an optimizer's step arguments, numel left out (it differs per tensor while
  // the rest is the step's): one staged copy per step (kiln/cuda/step_scalars.hpp).
  template <class Args>
  static const Args* staged(Args a) {
    a.numel = 0;
    return kiln::cuda::scalar_slot<Args>(kiln::cuda::current_stream()).stage(a, kiln::cuda::current_stream());
  }
  static double2* partial_pairs(double* p) { return reinterpret_cast<double2*>(p); }
  // The 2-D grid of a per-channel reduction: (chunks, channels).
  static dim3 channel_grid(const ReducePlan& plan, std::int64_t channels, const char* what) {
    KILN_CHECK(channels <= 65535, "Backend<Cuda>::", what, ": ", channels,
               " channels; the per-channel kernels support up to 65535 (gridDim.y)");
    return dim3(static_cast<unsigned>(plan.chunks), static_cast<unsigned>(channels));
  }
  // Stage 2 of a two-stage reduction: out[i] (+)= scale * Σ_j partials[j * outputs + i] (32 outputs per block).
  static void sum_partials(const double* partial, int chunks, std::int64_t outputs, double scale, bool accumulate,
                           float* out) {
    launch(KILN_CUDA_KERNEL_FLOAT(sum_partials_kernel), dim3(static_cast<unsigned>((outputs + 31) / 32)),
           dim3(reduce_threads), 0, partial, chunks, outputs, scale, accumulate, out);
  }
  // db[c] += Σ over n and hw of dy[n][c][hw] (the convolutions' bias gradient), in one launch: the
  // channel's last block adds the partial sums (channel_sum_kernel).
  static void bias_gradient(std::int64_t n, std::int64_t channels, std::int64_t hw, const T& dy, T& db) {
    if (channels == 0) return;
    const ReducePlan plan = kiln::cuda::kernels::reduce_plan(n * hw);
    double* part = partials(channels * plan.chunks);
    unsigned* counters = reduce_counters(channels);
    const dim3 grid = channel_grid(plan, channels, "conv2d bias gradient");
    with_width(kiln::cuda::kernels::vector_width(hw, {dy.data()}), [&]<int V>() {
      launch(KILN_CUDA_KERNEL(channel_sum_kernel, V), grid, dim3(reduce_threads), 0, n, channels, hw, plan, dy.data(),
             part, counters, db.data());
    });
  }

 public:
  // ---- Math mode (kiln/cuda/math_mode.hpp): which convolution kernels run ----------
  static void set_math_mode(kiln::cuda::MathMode mode) { kiln::cuda::set_math_mode(mode); }
  static kiln::cuda::MathMode math_mode() { return kiln::cuda::math_mode(); }

  // ---- Conv2d -------------------------------------------------------------
  // Strict fp32: the SIMT implicit GEMM's packed weights (forward or input gradient, never live
  // at once; conv2d_simt.cuh), where it takes the shape. TF32: the forward's packed weights, the input gradient's
  // packed weights (both mma.sync) and the weight gradient's split-K partial sums (mma.sync, or the
  // implicit GEMM's where the mma kernel does not take the shape), never live at once, so the
  // largest of them; under MathMode::tf32 at least the forward's and the input gradient's regions side
  // by side (tf32_forward::kept_workspace_floats), so that the training forward packs both and the input
  // gradient's stays there for the backward (ConvKept::tf32_dgrad_packing). BF16 (mma_bf16_wgrad::layout): x's NHWC
  // BF16 copy first, kept from the forward for the weight gradient, then the forward's packed weights, or the input
  // gradient's with dy's copy and the weight gradient's partial sums after them, and past them the input gradient's
  // packing kept from the forward (ConvKept::bf16_copy_and_dgrad_packing); where a BF16 NHWC kernel does not take
  // the shape, what its TF32 stand-in needs.
  static std::size_t conv2d_workspace_floats(const ConvShape& s) {
    namespace k = kiln::cuda::kernels;
    if (uses_simt(s))  // + the SIMT weight gradient's split-K partial sums
      return static_cast<std::size_t>(std::max(
          {k::simt_conv::packed_weight_floats(s), k::simt_conv::packed_weight_floats(k::simt_conv::transposed(s)),
           k::simt_wgrad::supports(s) ? k::simt_wgrad::workspace_floats(s) : std::int64_t{0}}));
    if (!uses_tensor_cores(s)) return 0;
    std::int64_t floats = static_cast<std::int64_t>(conv2d_forward_workspace_floats(s));
    if (bf16_math() && uses_mma_forward(s) && k::mma_bf16::supports(k::mma_conv::transposed(s)))
      floats = std::max(floats, k::mma_bf16_wgrad::layout(s).partials);  // x's copy kept, + dy's
    else if (uses_mma_forward(s) && k::mma_conv::supports(k::mma_conv::transposed(s)))
      floats = std::max(floats, k::tf32_forward::workspace_floats(k::mma_conv::transposed(s)));  // + split-K
    if (tf32_dgrad_keepable(s))  // both packings side by side: the input gradient's kept from the forward
      floats = std::max(floats, k::tf32_forward::kept_workspace_floats(s));
    floats = std::max(floats, k::mma_wgrad::supports(s) ? k::mma_wgrad::workspace_floats(s)
                                                        : k::igemm::weight_grad_workspace_floats(s));
    if (bf16_math() && k::mma_bf16_wgrad::supports(s))  // dy's and x's copies, then the partial sums
      floats = std::max(floats, k::mma_bf16_wgrad::layout(s).total);
    if (bf16_dgrad_keepable(s))  // + the input gradient's packing, kept from the forward
      floats = std::max(floats, k::mma_bf16_wgrad::layout(s).kept_total);
    return static_cast<std::size_t>(floats);
  }

  // TF32: the packed weights and split-K tiles of either family's plan (tf32_forward::workspace_floats:
  // mma.sync or wgmma, whichever this device takes). BF16: the NHWC BF16 copy of the input and its
  // BF16 packing (conv2d_mma_bf16.cuh; mma_bf16_wgrad::layout), or the TF32 packing where that
  // kernel does not take the shape (its TF32 stand-in). Strict fp32: the SIMT implicit GEMM's packed weights.
  static std::size_t conv2d_forward_workspace_floats(const ConvShape& s) {
    namespace k = kiln::cuda::kernels;
    if (uses_simt(s)) return static_cast<std::size_t>(k::simt_conv::packed_weight_floats(s));
    if (!uses_mma_forward(s)) return 0;
    if (bf16_math() && k::mma_bf16::supports(s))
      return static_cast<std::size_t>(k::mma_bf16::packed_weight_floats(s) + k::mma_bf16::nhwc_floats(s));
    ask_wgmma_while_planning(s);
    return static_cast<std::size_t>(k::tf32_forward::workspace_floats(s));  // + the split-K partial tiles
  }

  static void conv2d_forward(const ConvShape& s, const T& x, const T& w, const T& b, T& y, T& ws) {
    conv2d_forward(s, x, w, b, y, ws, false);
  }
  // x_copied: x's BF16 copy is already in the slot conv2d_input_copy(s, ws) named (written by the
  // layer before); only where that slot was not null.
  static void conv2d_forward(const ConvShape& s, const T& x, const T& w, const T& b, T& y, T& ws, bool x_copied) {
    namespace ig = kiln::cuda::kernels::igemm;
    if (s.n == 0 || s.h == 0 || s.w == 0) return;
    if (uses_mma_forward(s) &&
        (bf16_nhwc_forward_fits(s, ws) ||
         static_cast<std::int64_t>(ws.numel()) >= kiln::cuda::kernels::mma_conv::packed_weight_floats(s))) {
      conv2d_forward_mma(s, x, w, b, y, ws, x_copied);
      return;
    }
    // A workspace planned under strict fp32 (or none), or offsets past 32 bits.
    if (uses_tensor_cores(s)) {
      with_kernel_size<1, 3>(s.k, [&]<int K>() {
        launch(KILN_CUDA_KERNEL(conv2d_igemm_forward_kernel, K), igemm_grid(s, ig::Pass::forward), dim3(ig::threads),
               ig::shared_bytes, s, x.data(), w.data(), ptr(b), y.data());
      });
      return;
    }
    if (uses_simt(s) &&
        static_cast<std::int64_t>(ws.numel()) >= kiln::cuda::kernels::simt_conv::packed_weight_floats(s)) {
      conv2d_simt<false>(s, x, w, ptr(b), y, ws);
      return;
    }
    // Strict fp32 outside the SIMT implicit GEMM (K other than 1 and 3, no planned workspace,
    // offsets past 32 bits): the direct tiled kernel.
    const dim3 grid = conv_grid(s, s.c_out);
    with_kernel_size<1, 3, 0>(s.k, [&]<int K>() {
      launch(KILN_CUDA_KERNEL(conv2d_forward_kernel, K), grid, conv_block(), conv_shared_bytes(s), s, x.data(),
             w.data(), ptr(b), y.data());
    });
  }

  // A network's training forward, before its layers run: every convolution in `convs` whose forward
  // would pack both weight layouts (tf32_dgrad_kept_fits: MathMode::tf32, a training workspace)
  // gets them, with its split-K counters zeroed, in one launch per pack_batch_max convolutions
  // (conv2d_mma_pack_batch_kernel) instead of one each; each Conv2d of that forward then calls
  // conv2d_forward_packed. Under MathMode::bf16 the same for every convolution whose forward would
  // pack both BF16 layouts (bf16_dgrad_kept_fits; conv2d_mma_pack_batch_bf16_kernel). The others are
  // left alone (their forward packs as before).
  static void conv2d_pack_forwards(std::span<ConvPacking<Cuda>* const> convs) {
    namespace mc = kiln::cuda::kernels::mma_conv;
    namespace tp = kiln::cuda::kernels::tf32_forward;
    namespace mb = kiln::cuda::kernels::mma_bf16;
    mc::PackBatch<mc::pack_batch_max> batch{};
    mc::PackBatch<mc::pack_batch_max, mb::PackBoth> bf16_batch{};
    int blocks = 0, bf16_blocks = 0;
    auto flush = [&] {
      if (batch.count > 0)
        launch(KILN_CUDA_KERNEL(conv2d_mma_pack_batch_kernel, mc::pack_batch_max), dim3(static_cast<unsigned>(blocks)),
               dim3(mc::pack_threads), 0, batch);
      batch = mc::PackBatch<mc::pack_batch_max>{};
      blocks = 0;
    };
    auto flush_bf16 = [&] {
      if (bf16_batch.count > 0)
        launch(KILN_CUDA_KERNEL(conv2d_mma_pack_batch_bf16_kernel, mc::pack_batch_max),
               dim3(static_cast<unsigned>(bf16_blocks)), dim3(mc::pack_threads), 0, bf16_batch);
      bf16_batch = mc::PackBatch<mc::pack_batch_max, mb::PackBoth>{};
      bf16_blocks = 0;
    };
    for (const ConvPacking<Cuda>* entry : convs) {
      const ConvPacking<Cuda>& c = *entry;
      const ConvShape& s = c.shape;
      if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_out == 0) continue;
      if (conv2d_packed_current(c)) continue;  // the optimizer packed them as it wrote them
      const bool bf16 = bf16_dgrad_kept_fits(s, *c.workspace);
      if (!bf16 && !tf32_dgrad_kept_fits(s, *c.workspace)) continue;
      float* ws = c.workspace->data();
      int forward_blocks = 0, dgrad_blocks = 0;
      with_kernel_size<1, 3>(s.k, [&]<int K>() {
        forward_blocks = static_cast<int>(mc::pack_weight_blocks<K, false>(s));
        dgrad_blocks = static_cast<int>(mc::pack_weight_blocks<K, true>(s));
      });
      if (bf16) {
        if (bf16_batch.count == mc::pack_batch_max) flush_bf16();
        const auto l = kiln::cuda::kernels::mma_bf16_wgrad::layout(s);
        bf16_batch.entries[bf16_batch.count++] = {s,
                                                  c.weight->data(),
                                                  reinterpret_cast<__nv_bfloat16*>(ws + l.weights),
                                                  reinterpret_cast<__nv_bfloat16*>(ws + l.kept_dgrad),
                                                  forward_blocks,
                                                  bf16_blocks};
        bf16_blocks += forward_blocks + dgrad_blocks;
        continue;
      }
      if (batch.count == mc::pack_batch_max) flush();
      const ConvShape t = mc::transposed(s);
      const tp::Plan plan = tf32_plan(s, *c.workspace), dgrad_plan = tp::plan(t);
      float* dgrad = ws + tp::dgrad_offset(s);
      batch.entries[batch.count++] = {s,
                                      c.weight->data(),
                                      ws,
                                      tp::counters(s, ws, plan),
                                      dgrad,
                                      tp::counters(t, dgrad, dgrad_plan),
                                      tp::counter_count(s, plan),
                                      tp::counter_count(t, dgrad_plan),
                                      forward_blocks,
                                      blocks};
      blocks += forward_blocks + dgrad_blocks;
    }
    flush();
    flush_bf16();
  }
  // Whether the optimizer's record in c (core/conv_packing.hpp) still describes c's workspace: the
  // packings adam_step_multi wrote there for the plans the next forward and input gradient run.
  static bool conv2d_packed_current(const ConvPacking<Cuda>& c) {
    return c.packed_by_optimizer() && c.optimizer_packed == optimizer_packing_key(c);
  }
  // The weight gradients' split-K reductions of one backward in one launch (HasDeferredWgradReductions):
  // between conv2d_defer_wgrad_reductions() and conv2d_flush_wgrad_reductions() on this thread, a
  // TF32 or BF16 mma.sync weight gradient whose splits are added apart (mma_wgrad::Splits, not
  // one_launch) leaves its partial sums in its workspace and is listed; the flush adds every listed
  // one onto its dw, reduce_batch_max per launch (conv2d_mma_wgrad_reduce_batch_kernel: the same
  // sums in the same order as conv2d_mma_wgrad_reduce_kernel, so the same bits). The caller keeps
  // each dw unread and each workspace unwritten until the flush (Network::backward: its layers'
  // workspaces are theirs alone until the next forward). drop: an exception left the backward; the
  // list is forgotten, nothing launched.
  static void conv2d_defer_wgrad_reductions() {
    WgradReductions& r = wgrad_reductions();
    r.pending.clear();
    r.deferring = true;
  }
  static void conv2d_flush_wgrad_reductions() {
    namespace mw = kiln::cuda::kernels::mma_wgrad;
    WgradReductions& r = wgrad_reductions();
    r.deferring = false;
    mw::ReduceBatch<mw::reduce_batch_max> batch{};
    int blocks = 0;
    auto flush = [&] {
      if (batch.count > 0)
        launch(KILN_CUDA_KERNEL(conv2d_mma_wgrad_reduce_batch_kernel, mw::reduce_batch_max),
               dim3(static_cast<unsigned>(blocks)), dim3(mw::reduce_batch_threads), 0, batch);
      batch = mw::ReduceBatch<mw::reduce_batch_max>{};
      blocks = 0;
    };
    for (mw::ReduceEntry e : r.pending) {
      if (batch.count == mw::reduce_batch_max) flush();
      e.first_block = blocks;
      batch.entries[batch.count++] = e;
      blocks += mw::reduce_batch_blocks(e.s);
    }
    flush();
    r.pending.clear();
  }
  static void conv2d_drop_wgrad_reductions() noexcept {
    WgradReductions& r = wgrad_reductions();
    r.pending.clear();
    r.deferring = false;
  }
  // conv2d_forward where conv2d_pack_forwards has packed this convolution's weights in ws in the
  // same network forward (the same tests: tf32_dgrad_kept_fits, or bf16_dgrad_kept_fits, which
  // implies the BF16 forward's bf16_nhwc_forward_fits): the GEMM alone (BF16: x's NHWC copy, then the
  // GEMM); elsewhere conv2d_forward itself.
  static void conv2d_forward_packed(const ConvShape& s, const T& x, const T& w, const T& b, T& y, T& ws,
                                    bool x_copied = false) {
    if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_out == 0) return conv2d_forward(s, x, w, b, y, ws, x_copied);
    if (bf16_dgrad_kept_fits(s, ws)) {
      const auto* wp =
          reinterpret_cast<const __nv_bfloat16*>(ws.data() + kiln::cuda::kernels::mma_bf16_wgrad::layout(s).weights);
      return conv2d_bf16_packed_forward(s, x, wp, ptr(b), y, ws, x_copied);
    }
    if (!tf32_dgrad_kept_fits(s, ws)) return conv2d_forward(s, x, w, b, y, ws, x_copied);
    conv2d_tf32_packed(s, x, ws.data(), ptr(b), y, tf32_plan(s, ws));
  }

  // What conv2d_forward, run now on ws, leaves there for the backward of the same step (Conv2d
  // asks right after its training forward): under BF16 with room for the NHWC forward, x's NHWC BF16
  // copy at mma_bf16_wgrad::layout(s).x_copy, which the BF16 weight gradient then reads instead of
  // copying x again. The same test as the forward's BF16 branch (bf16_nhwc_forward_fits).
  // Under TF32 with room for both packings (a training plan: tf32_dgrad_kept_fits), the input
  // gradient's packed weights at tf32_forward::dgrad_offset(s), which its input gradient then runs on.
  // Under BF16 with room for both (bf16_dgrad_kept_fits), x's copy and the input gradient's BF16
  // packing at mma_bf16_wgrad::layout(s).kept_dgrad.
  static ConvKept conv2d_forward_kept(const ConvShape& s, const T& ws) {
    if (s.c_out > 0 && uses_mma_forward(s) && bf16_nhwc_forward_fits(s, ws))
      return bf16_dgrad_kept_fits(s, ws) ? ConvKept::bf16_copy_and_dgrad_packing : ConvKept::x_bf16_copy;
    return tf32_dgrad_kept_fits(s, ws) ? ConvKept::tf32_dgrad_packing : ConvKept::nothing;
  }

  // The activation copies (core/backend_ops.hpp, HasActivationCopies): where a training forward
  // of s on ws reads x's BF16 NHWC copy (mma_bf16_wgrad::layout(s).x_copy: the same test as the
  // forward's BF16 branch and conv2d_forward_kept's), and where the backward reads dy's
  // (layout(s).dy_copy: the input gradient's BF16 branch where dx is wanted, else the BF16 weight
  // gradient's); null where the convolution would read none. Float pointers into ws; the copies
  // hold C rounded up to 16 BF16 per pixel.
  static float* conv2d_input_copy(const ConvShape& s, T& ws) {
    if (s.n == 0 || s.h == 0 || s.w == 0 || s.c_in == 0 || s.c_out == 0) return nullptr;
    return uses_mma_forward(s) && bf16_nhwc_forward_fits(s, ws)
               ? ws.data() + kiln::cuda::kernels::mma_bf16_wgrad::layout(s).x_copy
               : nullptr;
  }
  static float* conv2d_gradient_copy(const ConvShape& s, T& ws, bool dx_wanted) {
    namespace k = kiln::cuda::kernels;
    if (!bf16_math() || s.n == 0 || s.h == 0 || s.w == 0 || s.c_in == 0 || s.c_out == 0) return nullptr;
    const auto l = k::mma_bf16_wgrad::layout(s);
    if (static_cast<std::int64_t>(ws.numel()) < l.partials) return nullptr;
    const bool read = dx_wanted ? uses_mma_forward(s) && k::mma_bf16::supports(k::mma_conv::transposed(s))
                                : k::mma_bf16_wgrad::supports(s);
    return read ? ws.data() + l.dy_copy : nullptr;
  }

  // dx may be empty (not wanted) and is overwritten; dw and db (may be empty) accumulate. `kept`:
  // what this layer's forward left in ws (conv2d_forward_kept; ConvKept::nothing when unsure).
  // dy_copied: dy's BF16 copy is already in the slot conv2d_gradient_copy(s, ws, !dx.empty()) named
  // (written by the layer after); only where that slot was not null.
  static void conv2d_backward(const ConvShape& s, const T& x, const T& w, const T& dy, T& dx, T& dw, T& db, T& ws,
                              ConvKept kept = ConvKept::nothing, bool dy_copied = false) {
    if (s.n == 0 || s.h == 0 || s.w == 0) return;
    if (uses_tensor_cores(s)) {
      conv2d_backward_tf32(s, x, w, dy, dx, dw, ws, kept, dy_copied);
    } else {
      if (!dx.empty() && uses_simt(s) &&
          static_cast<std::int64_t>(ws.numel()) >=
              kiln::cuda::kernels::simt_conv::packed_weight_floats(kiln::cuda::kernels::simt_conv::transposed(s))) {
        conv2d_simt<true>(s, dy, w, nullptr, dx, ws);
      } else if (!dx.empty()) {
        const dim3 grid = conv_grid(s, s.c_in);
        with_kernel_size<1, 3, 0>(s.k, [&]<int K>() {
          launch(KILN_CUDA_KERNEL(conv2d_backward_data_kernel, K), grid, conv_block(), conv_shared_bytes(s), s,
                 w.data(), dy.data(), dx.data());
        });
      }
      if (!dw.empty() && uses_simt(s) && kiln::cuda::kernels::simt_wgrad::supports(s)) {
        conv2d_simt_wgrad(s, x, dy, dw, ws);
      } else if (!dw.empty()) {
        const dim3 grid(static_cast<unsigned>(s.c_in), static_cast<unsigned>(s.c_out));
        with_kernel_size<1, 3, 0>(s.k, [&]<int K>() {
          launch(KILN_CUDA_KERNEL(conv2d_backward_weight_kernel, K), grid, dim3(reduce_threads), 0, s, x.data(),
                 dy.data(), dw.data());
        });
      }
    }
    if (!db.empty()) bias_gradient(s.n, s.c_out, s.h * s.w, dy, db);
  }

  // ---- Conv2d with stride > 1 (kernels/conv2d_strided.cuh; no workspace) ------
  // One thread per output (forward) or input (input gradient) element on a spatial_grid.
  static void conv2d_strided_forward(const StridedConvShape& s, const T& x, const T& w, const T& b, T& y) {
    if (s.n * s.c_out * s.ho() * s.wo() == 0) return;
    const auto g = kiln::cuda::kernels::spatial_grid(s.ho(), s.wo(), s.n * s.c_out);
    launch(KILN_CUDA_KERNEL_FLOAT(conv2d_strided_forward_kernel), g.grid, g.block, 0, s, x.data(), w.data(), ptr(b),
           y.data());
  }
  // dx may be empty (not wanted) and is overwritten; dw and db (may be empty) accumulate.
  static void conv2d_strided_backward(const StridedConvShape& s, const T& x, const T& w, const T& dy, T& dx, T& dw,
                                      T& db) {
    if (s.n == 0 || s.h == 0 || s.w == 0) return;
    if (!dx.empty() && s.c_in > 0) {
      const auto g = kiln::cuda::kernels::spatial_grid(s.h, s.w, s.n * s.c_in);
      launch(KILN_CUDA_KERNEL_FLOAT(conv2d_strided_backward_data_kernel), g.grid, g.block, 0, s, w.data(), dy.data(),
             dx.data());
    }
    if (!dw.empty())
      launch(KILN_CUDA_KERNEL_FLOAT(conv2d_strided_backward_weight_kernel),
             dim3(static_cast<unsigned>(s.c_in), static_cast<unsigned>(s.c_out)), dim3(reduce_threads), 0, s, x.data(),
             dy.data(), dw.data());
    if (!db.empty()) bias_gradient(s.n, s.c_out, s.ho() * s.wo(), dy, db);
  }

  // ---- Activations (LeakyReLU, SiLU, Sigmoid, Tanh), Dropout ------------------
  static void activation_forward(const ActivationArgs& a, const T& x, T& y) {
    launch_1d(KILN_CUDA_KERNEL_FLOAT(activation_forward_kernel), a.numel, a, x.data(), y.data());
  }
  // dx overwritten; reads x (LeakyReLU, SiLU) or y (Sigmoid, Tanh).
  static void activation_backward(const ActivationArgs& a, const T& x, const T& y, const T& dy, T& dx) {
    launch_1d(KILN_CUDA_KERNEL_FLOAT(activation_backward_kernel), a.numel, a, ptr(x), ptr(y), dy.data(), dx.data());
  }
  static void dropout_forward(const DropoutArgs& a, const T& x, T& y) {
    launch_1d(KILN_CUDA_KERNEL_FLOAT(dropout_kernel), a.numel, a, x.data(), y.data());
  }
  static void dropout_backward(const DropoutArgs& a, const T& dy, T& dx) { dropout_forward(a, dy, dx); }

  // ---- Element-wise helpers (kiln::sub, mul, scale, clamp; out may alias an input) ----
  static void elementwise_binary(ElementwiseOp op, const T& a, const T& b, T& out) {
    const auto n = static_cast<std::int64_t>(a.numel());
    launch_1d(KILN_CUDA_KERNEL_FLOAT(elementwise_binary_kernel), n, op, a.data(), b.data(), out.data(), n);
  }
  static void affine(const T& a, float alpha, float beta, T& out) {
    const auto n = static_cast<std::int64_t>(a.numel());
    launch_1d(KILN_CUDA_KERNEL_FLOAT(affine_kernel), n, a.data(), alpha, beta, out.data(), n);
  }
  static void clamp(const T& a, float lo, float hi, T& out) {
    const auto n = static_cast<std::int64_t>(a.numel());
    launch_1d(KILN_CUDA_KERNEL_FLOAT(clamp_kernel), n, a.data(), lo, hi, out.data(), n);
  }

  // ---- ReLU, add, channel concat (V = 4: float4 accesses where aligned) -------
  static void relu_forward(const T& x, T& y) {
    const auto n = static_cast<std::int64_t>(x.numel());
    if (n == 0) return;
    with_width(kiln::cuda::kernels::vector_width(n, {x.data(), y.data()}),
               [&]<int V>() { launch_1d(KILN_CUDA_KERNEL(relu_forward_kernel, V), n / V, x.data(), y.data(), n); });
  }
  static void relu_backward(const T& y, const T& dy, T& dx) {
    const auto n = static_cast<std::int64_t>(y.numel());
    if (n == 0) return;
    with_width(kiln::cuda::kernels::vector_width(n, {y.data(), dy.data(), dx.data()}), [&]<int V>() {
      launch_1d(KILN_CUDA_KERNEL(relu_backward_kernel, V), n / V, y.data(), dy.data(), dx.data(), n);
    });
  }
  static void add(const T& a, const T& b, T& out) {
    const auto n = static_cast<std::int64_t>(a.numel());
    if (n == 0) return;
    with_width(kiln::cuda::kernels::vector_width(n, {a.data(), b.data(), out.data()}),
               [&]<int V>() { launch_1d(KILN_CUDA_KERNEL(add_kernel, V), n / V, a.data(), b.data(), out.data(), n); });
  }
  static void concat_channels(const T& a, const T& b, T& y) {
    if (y.numel() == 0) return;
    const std::int64_t hw = a.shape().h() * a.shape().w();
    with_width(kiln::cuda::kernels::vector_width(hw, {a.data(), b.data(), y.data()}), [&]<int V>() {
      launch(KILN_CUDA_KERNEL(concat_channels_kernel, V),
             plane_grid(hw, V, a.shape().c() + b.shape().c(), a.shape().n()), dim3(256), 0, a.data(), a.shape().c(),
             b.data(), b.shape().c(), y.data(), hw);
    });
  }
  static void split_channels(const T& dy, T& da, T& db) {
    if (dy.numel() == 0) return;
    const std::int64_t hw = dy.shape().h() * dy.shape().w();
    with_width(kiln::cuda::kernels::vector_width(hw, {dy.data(), da.data(), db.data()}), [&]<int V>() {
      launch(KILN_CUDA_KERNEL(split_channels_kernel, V), plane_grid(hw, V, dy.shape().c(), dy.shape().n()), dim3(256),
             0, dy.data(), da.data(), da.shape().c(), db.data(), db.shape().c(), hw);
    });
  }

  // ---- BatchNorm2d (and BatchNorm2d + ReLU, fused) ---------------------------
  // As Backend<Cpu>: training uses and saves batch statistics and updates running_* in place; eval
  // uses running_* and saves them as save_mean/save_invstd. Two launches each way on the 2-D grid
  // (chunks, C) of kernels/reduce.cuh (see kernels/batchnorm.cuh).
  static void batchnorm_forward(const BatchNormArgs& a, const T& x, const T& weight, const T& bias, T& running_mean,
                                T& running_var, T& save_mean, T& save_invstd, T& y) {
    batchnorm_forward_pass(false, a, x, weight, bias, running_mean, running_var, save_mean, save_invstd, y);
  }
  // dx overwritten (may be empty: not wanted); dweight, dbias accumulate.
  static void batchnorm_backward(const BatchNormArgs& a, const T& x, const T& weight, const T& save_mean,
                                 const T& save_invstd, const T& dy, T& dx, T& dweight, T& dbias) {
    batchnorm_backward_pass(false, a, x, weight, save_mean, save_invstd, nullptr, dy, dx, dweight, dbias);
  }
  // y = max(batchnorm(x), 0) in the same passes (as cpu::batchnorm_relu_*); backward takes the
  // ReLU's output y as the mask of dy and gives the batch norm's dx, dweight, dbias.
  static void batchnorm_relu_forward(const BatchNormArgs& a, const T& x, const T& weight, const T& bias,
                                     T& running_mean, T& running_var, T& save_mean, T& save_invstd, T& y) {
    batchnorm_forward_pass(true, a, x, weight, bias, running_mean, running_var, save_mean, save_invstd, y);
  }
  static void batchnorm_relu_backward(const BatchNormArgs& a, const T& x, const T& weight, const T& save_mean,
                                      const T& save_invstd, const T& y, const T& dy, T& dx, T& dweight, T& dbias) {
    batchnorm_backward_pass(true, a, x, weight, save_mean, save_invstd, y.data(), dy, dx, dweight, dbias);
  }
  // The same, also writing y's (dx's) BF16 NHWC copy into `copy` (a convolution's slot:
  // conv2d_input_copy / conv2d_gradient_copy; null: none) in the same pass (kernels/batchnorm_nhwc.cuh).
  // The backward writes it only with dx (a slot without dx is a caller's error).
  static void batchnorm_relu_forward(const BatchNormArgs& a, const T& x, const T& weight, const T& bias,
                                     T& running_mean, T& running_var, T& save_mean, T& save_invstd, T& y, float* copy) {
    batchnorm_forward_pass(true, a, x, weight, bias, running_mean, running_var, save_mean, save_invstd, y,
                           reinterpret_cast<__nv_bfloat16*>(copy));
  }
  static void batchnorm_relu_backward(const BatchNormArgs& a, const T& x, const T& weight, const T& save_mean,
                                      const T& save_invstd, const T& y, const T& dy, T& dx, T& dweight, T& dbias,
                                      float* copy) {
    KILN_CHECK(copy == nullptr || !dx.empty(), "Backend<Cuda>::batchnorm_relu_backward: a copy of dx without dx");
    batchnorm_backward_pass(true, a, x, weight, save_mean, save_invstd, y.data(), dy, dx, dweight, dbias,
                            reinterpret_cast<__nv_bfloat16*>(copy));
  }

  // ---- MaxPool2d ------------------------------------------------------------
  // argmax: the index of each window's maximum inside its input plane (ih * W + iw). S = 2 reads
  // window rows as float2 (even width, 8-byte aligned), S = 0 any size.
  static void maxpool2d_forward(const PoolArgs& a, const T& x, T& y, I& argmax) {
    if (a.n * a.c * a.out_h() * a.out_w() == 0) return;
    const auto g = kiln::cuda::kernels::spatial_grid(a.out_h(), a.out_w(), a.n * a.c);
    with_kernel_size<2, 0>(pool_pairs(a.size, a.w, {x.data()}), [&]<int S>() {
      launch(KILN_CUDA_KERNEL(maxpool2d_forward_kernel, S), g.grid, g.block, 0, a, x.data(), y.data(), argmax.data());
    });
  }
  static void maxpool2d_backward(const PoolArgs& a, const I& argmax, const T& dy, T& dx) {
    if (a.n * a.c * a.h * a.w == 0) return;
    const auto cells = [&](std::int64_t n) { return (n + a.size - 1) / a.size; };
    const auto g = kiln::cuda::kernels::spatial_grid(cells(a.h), cells(a.w), a.n * a.c);
    with_kernel_size<2, 0>(pool_pairs(a.size, a.w, {dx.data()}), [&]<int S>() {
      launch(KILN_CUDA_KERNEL(maxpool2d_backward_kernel, S), g.grid, g.block, 0, a, argmax.data(), dy.data(),
             dx.data());
    });
  }

  // ---- Upsample (integer scale; bilinear with align_corners = false) ---------
  // Nearest: one thread per input element; S = 2 writes / reads the 2 x 2 block's rows as float2.
  static void upsample_nearest_forward(const UpsampleArgs& a, const T& x, T& y) {
    if (y.numel() == 0) return;
    const auto g = kiln::cuda::kernels::spatial_grid(a.h, a.w, a.n * a.c);
    with_kernel_size<2, 0>(pool_pairs(a.scale, 2 * a.w, {y.data()}), [&]<int S>() {
      launch(KILN_CUDA_KERNEL(upsample_nearest_forward_kernel, S), g.grid, g.block, 0, a, x.data(), y.data());
    });
  }
  static void upsample_nearest_backward(const UpsampleArgs& a, const T& dy, T& dx) {
    if (dx.numel() == 0) return;
    const auto g = kiln::cuda::kernels::spatial_grid(a.h, a.w, a.n * a.c);
    with_kernel_size<2, 0>(pool_pairs(a.scale, 2 * a.w, {dy.data()}), [&]<int S>() {
      launch(KILN_CUDA_KERNEL(upsample_nearest_backward_kernel, S), g.grid, g.block, 0, a, dy.data(), dx.data());
    });
  }
  static void upsample_bilinear_forward(const UpsampleArgs& a, const T& x, T& y) {
    if (y.numel() == 0) return;
    const auto g = kiln::cuda::kernels::spatial_grid(a.out_h(), a.out_w(), a.n * a.c);
    launch(KILN_CUDA_KERNEL_FLOAT(upsample_bilinear_forward_kernel), g.grid, g.block, 0, a, x.data(), y.data());
  }
  static void upsample_bilinear_backward(const UpsampleArgs& a, const T& dy, T& dx) {
    if (dx.numel() == 0) return;
    const auto g = kiln::cuda::kernels::spatial_grid(a.h, a.w, a.n * a.c);
    launch(KILN_CUDA_KERNEL_FLOAT(upsample_bilinear_backward_kernel), g.grid, g.block, 0, a, dy.data(), dx.data());
  }

  // ---- Losses (mean reduction) -----------------------------------------------
  // out: a 1-element tensor receiving the mean loss: a two-stage reduction (deterministic).
  static void loss_forward(const LossArgs& a, const T& prediction, const T& target, T& out) {
    const ReducePlan plan = kiln::cuda::kernels::reduce_plan(a.numel);
    double* part = partials(plan.chunks);
    with_width(kiln::cuda::kernels::vector_width(a.numel, {ptr(prediction), ptr(target)}), [&]<int V>() {
      launch(KILN_CUDA_KERNEL(loss_partial_kernel, V), dim3(static_cast<unsigned>(plan.chunks)), dim3(reduce_threads),
             0, a, plan, ptr(prediction), ptr(target), part);
    });
    sum_partials(part, plan.chunks, 1, a.numel ? 1.0 / static_cast<double>(a.numel) : 0.0, false, out.data());
  }
  // dprediction overwritten with dL/dprediction.
  static void loss_backward(const LossArgs& a, const T& prediction, const T& target, T& dprediction) {
    if (a.numel == 0) return;
    with_width(kiln::cuda::kernels::vector_width(a.numel, {prediction.data(), target.data(), dprediction.data()}),
               [&]<int V>() {
                 launch_1d(KILN_CUDA_KERNEL(loss_backward_kernel, V), a.numel / V, a, prediction.data(), target.data(),
                           dprediction.data());
               });
  }

  // ---- Softmax cross-entropy (kernels/softmax_xent.cuh) -------------------------
  // Per-pixel losses into pixel_loss (one thread per pixel: pixel_grid), then their mean by a two-stage
  // reduction (deterministic).
  static void softmax_xent_forward(const SoftmaxXentArgs& a, const T& logits, const T& targets, const T& weights,
                                   T& pixel_loss, T& out) {
    if (a.pixels() > 0) {
      const auto g = kiln::cuda::kernels::pixel_grid(a.hw, a.n);
      launch(KILN_CUDA_KERNEL_FLOAT(softmax_xent_pixel_kernel), g.grid, g.block, 0, a, logits.data(), targets.data(),
             ptr(weights), ptr(pixel_loss));
    }
    const ReducePlan plan = kiln::cuda::kernels::reduce_plan(a.pixels());
    double* part = partials(plan.chunks);
    with_width(kiln::cuda::kernels::vector_width(a.pixels(), {ptr(pixel_loss)}), [&]<int V>() {
      launch(KILN_CUDA_KERNEL(flat_sum_partial_kernel, V), dim3(static_cast<unsigned>(plan.chunks)),
             dim3(reduce_threads), 0, a.pixels(), plan, ptr(std::as_const(pixel_loss)), part);
    });
    sum_partials(part, plan.chunks, 1, a.pixels() ? 1.0 / static_cast<double>(a.pixels()) : 0.0, false, out.data());
  }
  static void softmax_xent_backward(const SoftmaxXentArgs& a, const T& logits, const T& targets, const T& weights,
                                    T& dlogits) {
    if (a.pixels() == 0) return;
    const auto g = kiln::cuda::kernels::pixel_grid(a.hw, a.n);
    launch(KILN_CUDA_KERNEL_FLOAT(softmax_xent_backward_kernel), g.grid, g.block, 0, a, logits.data(), targets.data(),
           ptr(weights), dlogits.data());
  }

  // ---- Optimizer updates ---------------------------------------------------------
  // The step's scalars are staged in device memory (kiln/cuda/step_scalars.hpp: one copy per step
  // from pinned memory, inside a captured graph too); the kernels skip the update while the
  // update guard (kiln::cuda::set_update_guard) is set.
  static void adam_step(const AdamStepArgs& a, T& param, const T& grad, T& exp_avg, T& exp_avg_sq) {
    launch_1d(KILN_CUDA_KERNEL_FLOAT(adam_step_kernel), a.numel, staged(a), a.numel, kiln::cuda::update_guard(),
              param.data(), grad.data(), exp_avg.data(), exp_avg_sq.data());
  }
  // Adam / AdamW on every tensor of `tensors` in as few launches as possible (one per
  // kernels::adam_multi_max_tensors tensors); a.numel is ignored (each tensor has its own).
  // The same arithmetic as adam_step per tensor; Adam<Cuda> calls it (Backend<Cpu> has one too).
  // A convolution's weight (`packing` set: Adam<Cuda> passes its slot's) whose training plan keeps the
  // TF32 packings in its workspace (optimizer_packing_key) is updated by adam_conv_pack_kernel, which
  // writes both packings too (kernels/adam_conv_pack.cuh), and the record of them is left in
  // `packing` for the next forward (conv2d_packed_current); the caller forgot the old one.
  struct AdamTensors {
    T* param;
    const T* grad;
    T* exp_avg;
    T* exp_avg_sq;
    ConvPacking<Cuda>* packing = nullptr;
  };
  static void adam_step_multi(const AdamStepArgs& a, std::span<const AdamTensors> tensors) {
    namespace k = kiln::cuda::kernels;
    const AdamStepArgs* args = staged(a);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const AdamTensors& t = tensors[i];
      KILN_CHECK(t.grad->numel() == t.param->numel() && t.exp_avg->numel() == t.param->numel() &&
                     t.exp_avg_sq->numel() == t.param->numel(),
                 "Backend<Cuda>::adam_step_multi: tensor ", i, " has ", t.param->numel(), " parameters but ",
                 t.grad->numel(), " gradients, ", t.exp_avg->numel(), " and ", t.exp_avg_sq->numel(), " moments");
    }
    adam_pack_convolutions(args, tensors);
    std::size_t next = 0;
    while (next < tensors.size()) {
      k::AdamTensorList<float> list{};
      std::int64_t total = 0;
      list.count = 0;
      for (; next < tensors.size() && list.count < k::adam_multi_max_tensors; ++next) {
        const AdamTensors& t = tensors[next];
        const auto n = static_cast<std::int64_t>(t.param->numel());
        if (n == 0 || packed_as_written(t)) continue;
        list.p[list.count] = t.param->data();
        list.g[list.count] = t.grad->data();
        list.m[list.count] = t.exp_avg->data();
        list.v[list.count] = t.exp_avg_sq->data();
        list.start[list.count] = total;
        total += n;
        ++list.count;
      }
      list.start[list.count] = total;
      if (list.count > 0)
        launch_1d(KILN_CUDA_KERNEL_FLOAT(adam_multi_tensor_kernel), total, args, kiln::cuda::update_guard(), list);
    }
  }
  // What adam_step_multi's fused update would leave in c's workspace, as the next forward asks for it
  // (conv2d_packed_current): the workspace and both TF32 plans (the forward's, the input gradient's).
  // All zero where it packs nothing: the optimizer's packing off (kiln::cuda::set_optimizer_packing),
  // no training workspace with room for both packings (tf32_dgrad_kept_fits: MathMode::tf32), or a
  // shape adam_conv_pack_kernel does not take (adam_pack::supports).
  static std::array<std::uint64_t, 4> optimizer_packing_key(const ConvPacking<Cuda>& c) {
    namespace tp = kiln::cuda::kernels::tf32_forward;
    const ConvShape& s = c.shape;
    if (c.workspace == nullptr || !kiln::cuda::optimizer_packing() || s.n == 0 || s.h == 0 || s.w == 0 ||
        !kiln::cuda::kernels::adam_pack::supports(s) || !tf32_dgrad_kept_fits(s, *c.workspace))
      return {};
    auto word = [](const tp::Plan& p) {
      return static_cast<std::uint64_t>(p.wgmma) | static_cast<std::uint64_t>(p.bn) << 1 |
             static_cast<std::uint64_t>(p.rows) << 17 | static_cast<std::uint64_t>(p.splits) << 33;
    };
    return {static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(c.workspace->data())),
            static_cast<std::uint64_t>(c.workspace->numel()), word(tf32_plan(s, *c.workspace)),
            word(tp::plan(kiln::cuda::kernels::mma_conv::transposed(s)))};
  }
  // adam_step_multi's tensors that adam_conv_pack_kernel updated (adam_pack_convolutions' records).
  static bool packed_as_written(const AdamTensors& t) {
    return t.packing != nullptr && t.packing->weight == t.param && t.packing->packed_by_optimizer();
  }
  // The tensors whose packing has a key (optimizer_packing_key, computed once each), adam_pack::batch_max
  // per launch, their records set; every other tensor's packing forgotten.
  static void adam_pack_convolutions(const AdamStepArgs* args, std::span<const AdamTensors> tensors) {
    namespace k = kiln::cuda::kernels;
    namespace mc = k::mma_conv;
    namespace tp = k::tf32_forward;
    k::adam_pack::Batch<k::adam_pack::batch_max> batch{};
    int blocks = 0;
    auto flush = [&] {
      if (batch.count > 0)
        launch(KILN_CUDA_KERNEL(adam_conv_pack_kernel, k::adam_pack::batch_max), dim3(static_cast<unsigned>(blocks)),
               dim3(k::adam_pack::threads), 0, args, kiln::cuda::update_guard(), batch);
      batch = k::adam_pack::Batch<k::adam_pack::batch_max>{};
      blocks = 0;
    };
    for (const AdamTensors& t : tensors) {
      if (t.packing == nullptr) continue;
      const auto key = t.packing->weight == t.param && t.param->numel() != 0 ? optimizer_packing_key(*t.packing)
                                                                             : std::array<std::uint64_t, 4>{};
      if (key[0] == 0) {
        t.packing->forget();
        continue;
      }
      if (batch.count == k::adam_pack::batch_max) flush();
      const ConvShape& s = t.packing->shape;
      const ConvShape tr = mc::transposed(s);
      float* ws = t.packing->workspace->data();
      float* dgrad = ws + tp::dgrad_offset(s);
      const tp::Plan plan = tf32_plan(s, *t.packing->workspace), dgrad_plan = tp::plan(tr);
      batch.entries[batch.count++] = {t.param->data(),
                                      t.grad->data(),
                                      t.exp_avg->data(),
                                      t.exp_avg_sq->data(),
                                      ws,
                                      dgrad,
                                      tp::counters(s, ws, plan),
                                      tp::counters(tr, dgrad, dgrad_plan),
                                      static_cast<int>(s.c_in),
                                      static_cast<int>(s.c_out),
                                      static_cast<int>(s.k),
                                      tp::counter_count(s, plan),
                                      tp::counter_count(tr, dgrad_plan),
                                      blocks};
      blocks += static_cast<int>(k::adam_pack::tiles(s));
      t.packing->optimizer_packed = key;
    }
    flush();
  }

  // momentum_buffer may be empty when a.momentum == 0.
  static void sgd_step(const SgdStepArgs& a, T& param, const T& grad, T& momentum_buffer) {
    if (a.numel == 0) return;
    KILN_CHECK(a.momentum == 0.0f || !momentum_buffer.empty(), "Backend<Cuda>::sgd_step: momentum ", a.momentum,
               " needs a momentum buffer");
    launch_1d(KILN_CUDA_KERNEL_FLOAT(sgd_step_kernel), a.numel, staged(a), a.numel, kiln::cuda::update_guard(),
              param.data(), grad.data(), ptr(momentum_buffer));
  }

 private:
  // BatchNorm forward: stats partials (training) then apply, optionally with the ReLU.
  static void batchnorm_forward_pass(bool relu, const BatchNormArgs& a, const T& x, const T& weight, const T& bias,
                                     T& running_mean, T& running_var, T& save_mean, T& save_invstd, T& y,
                                     __nv_bfloat16* copy = nullptr) {
    namespace k = kiln::cuda::kernels;
    if (a.c == 0) return;
    const ReducePlan plan = k::reduce_plan(a.count());
    const dim3 grid = channel_grid(plan, a.c, "batchnorm_forward");
    double* part = a.training ? partials(k::batchnorm_scratch_doubles(a, plan)) : nullptr;
    double* shifts = a.training ? part + 2 * a.c * plan.chunks : nullptr;
    with_width(k::vector_width(a.hw, {x.data(), y.data()}), [&]<int V>() {
      if (a.training)
        launch(KILN_CUDA_KERNEL(batchnorm_stats_partial_kernel, V), grid, dim3(reduce_threads), 0, a, plan, x.data(),
               partial_pairs(part), shifts);
      if (copy != nullptr && relu) {
        const k::bn_nhwc::Grid g = k::bn_nhwc::grid(a.n * a.hw, a.c);
        launch(KILN_CUDA_KERNEL(batchnorm_apply_nhwc_kernel, k::bn_nhwc::group), g.blocks, dim3(reduce_threads), 0, a,
               plan, static_cast<const double2*>(partial_pairs(part)), static_cast<const double*>(shifts), x.data(),
               weight.data(), bias.data(), running_mean.data(), running_var.data(), save_mean.data(),
               save_invstd.data(), y.data(), copy, g.chunk);
        return;
      }
      with_relu(relu, [&]<bool Relu>() {
        launch(KILN_CUDA_KERNEL(batchnorm_apply_kernel, V, Relu), grid, dim3(reduce_threads), 0, a, plan,
               static_cast<const double2*>(partial_pairs(part)), static_cast<const double*>(shifts), x.data(),
               weight.data(), bias.data(), running_mean.data(), running_var.data(), save_mean.data(),
               save_invstd.data(), y.data());
      });
    });
  }
  // BatchNorm backward: the two sums per chunk, then dbias/dweight (+=) and dx (if wanted; else the
  // second kernel runs one block per channel for the parameter gradients). relu_y: the fused
  // ReLU's output (relu) or null.
  static void batchnorm_backward_pass(bool relu, const BatchNormArgs& a, const T& x, const T& weight,
                                      const T& save_mean, const T& save_invstd, const float* relu_y, const T& dy, T& dx,
                                      T& dweight, T& dbias, __nv_bfloat16* copy = nullptr) {
    namespace k = kiln::cuda::kernels;
    if (a.c == 0) return;
    const ReducePlan plan = k::reduce_plan(a.count());
    const dim3 grid = channel_grid(plan, a.c, "batchnorm_backward");
    double2* part = partial_pairs(partials(2 * a.c * plan.chunks));
    with_width(k::vector_width(a.hw, {x.data(), dy.data(), relu_y, ptr(dx)}), [&]<int V>() {
      with_relu(relu, [&]<bool Relu>() {
        launch(KILN_CUDA_KERNEL(batchnorm_backward_partial_kernel, V, Relu), grid, dim3(reduce_threads), 0, a, plan,
               x.data(), save_mean.data(), relu_y, dy.data(), part);
        if (copy != nullptr && Relu && !dx.empty()) {
          const k::bn_nhwc::Grid g = k::bn_nhwc::grid(a.n * a.hw, a.c);
          launch(KILN_CUDA_KERNEL(batchnorm_backward_dx_nhwc_kernel, k::bn_nhwc::group), g.blocks, dim3(reduce_threads),
                 0, a, plan, static_cast<const double2*>(part), x.data(), weight.data(), save_mean.data(),
                 save_invstd.data(), relu_y, dy.data(), ptr(dx), ptr(dweight), ptr(dbias), copy, g.chunk);
          return;
        }
        launch(KILN_CUDA_KERNEL(batchnorm_backward_dx_kernel, V, Relu), dx.empty() ? dim3(1, grid.y) : grid,
               dim3(reduce_threads), 0, a, plan, static_cast<const double2*>(part), x.data(), weight.data(),
               save_mean.data(), save_invstd.data(), relu_y, dy.data(), ptr(dx), ptr(dweight), ptr(dbias));
      });
    });
  }

  // 2 when a pooling / nearest-upsampling of factor `factor` can move window rows as float2 (factor
  // 2, an even row length `row`, 8-byte aligned tensors), else 0 (any factor, scalar accesses).
  static int pool_pairs(std::int64_t factor, std::int64_t row, std::initializer_list<const void*> pointers) {
    return factor == 2 && row % 2 == 0 && kiln::cuda::kernels::aligned_to(8, pointers) ? 2 : 0;
  }
  // Grid (x, channels, images) for the per-plane copies of concat / split: enough x blocks of 256
  // threads to give each thread about one group of V floats of a plane of hw, at most 1024.
  static dim3 plane_grid(std::int64_t hw, int v, std::int64_t channels, std::int64_t images) {
    const std::int64_t per_block = 256 * v;
    std::int64_t x = (hw + per_block - 1) / per_block;
    if (x < 1) x = 1;
    if (x > 1024) x = 1024;
    return dim3(static_cast<unsigned>(x), static_cast<unsigned>(channels), static_cast<unsigned>(images));
  }

  // Strict fp32 runs the forward and the input gradient on the SIMT implicit GEMM
  // (kernels/conv2d_simt.cuh) where it takes the shape and the layer planned its workspace.
  static bool uses_simt(const ConvShape& s) {
    return !kiln::cuda::tensor_core_mode(kiln::cuda::math_mode()) && kiln::cuda::kernels::simt_conv::supports(s);
  }
  // The SIMT implicit GEMM: the weights packed into ws, then the GEMM on shape s (Dgrad = false:
  // y = conv(in, w) + b) or on transposed(s) (Dgrad = true: in = dy, out = dx, b null).
  template <bool Dgrad>
  static void conv2d_simt(const ConvShape& s, const T& in, const T& w, const float* b, T& out, T& ws) {
    namespace sc = kiln::cuda::kernels::simt_conv;
    const ConvShape fs = Dgrad ? sc::transposed(s) : s;
    if (fs.c_out == 0) return;
    launch_1d(KILN_CUDA_KERNEL(conv2d_simt_pack_weights_kernel, Dgrad), sc::packed_weight_floats(fs), fs, w.data(),
              ws.data());
    with_kernel_size<1, 3>(fs.k, [&]<int K>() {
      auto run = [&]<int BN>() {
        const dim3 grid(static_cast<unsigned>((fs.n * fs.h * fs.w + sc::bm - 1) / sc::bm),
                        static_cast<unsigned>((fs.c_out + BN - 1) / BN));
        launch(KILN_CUDA_KERNEL(conv2d_simt_forward_kernel, K, BN), grid, dim3(sc::threads), sc::Tile<BN>::shared_bytes,
               fs, in.data(), ws.data(), b, out.data());
      };
      if (sc::block_n(fs) == 128)
        run.template operator()<128>();
      else
        run.template operator()<64>();
    });
  }

  // dw += the SIMT weight gradient (kernels/conv2d_simt_wgrad.cuh): split over the pixels into
  // partial sums in ws and reduced in split order where the workspace holds them, else unsplit.
  static void conv2d_simt_wgrad(const ConvShape& s, const T& x, const T& dy, T& dw, T& ws) {
    namespace sw = kiln::cuda::kernels::simt_wgrad;
    if (s.c_in == 0 || s.c_out == 0) return;
    const bool split = sw::splits(s) > 1 && static_cast<std::int64_t>(ws.numel()) >= sw::workspace_floats(s);
    const int count = split ? sw::splits(s) : 1;
    with_kernel_size<1, 3>(s.k, [&]<int K>() {
      const dim3 grid(static_cast<unsigned>((s.c_in * K * K + sw::bm - 1) / sw::bm),
                      static_cast<unsigned>((s.c_out + 63) / 64), static_cast<unsigned>(count));
      launch(KILN_CUDA_KERNEL(conv2d_simt_wgrad_kernel, K, 64), grid, dim3(sw::threads), sw::Tile<64>::shared_bytes, s,
             x.data(), dy.data(), dw.data(), split ? ws.data() : nullptr);
    });
    if (split)
      launch_1d(KILN_CUDA_KERNEL_FLOAT(conv2d_simt_wgrad_reduce_kernel), sw::weights(s),
                static_cast<int>(sw::weights(s)), count, static_cast<const float*>(ws.data()), dw.data());
  }

  // TF32 or BF16 math selects the tensor-core kernels, which exist for K = 1 and 3.
  static bool uses_tensor_cores(const ConvShape& s) {
    return kiln::cuda::tensor_core_mode(kiln::cuda::math_mode()) && (s.k == 1 || s.k == 3);
  }
  // BF16 runs the mma.sync BF16 kernels on NHWC BF16 copies (conv2d_mma_bf16*.cuh); where those do
  // not take a shape (copies past 2^31 elements) or the workspace has no room for the copies (planned
  // under another mode: kiln/cuda/math_mode.hpp asks for the mode before planning), the TF32 mma.sync
  // kernels run instead, or the TF32 implicit GEMM where those cannot: more precise, never a
  // fp32-staged BF16 kernel (retired: docs/kernels.md "BF16").
  static bool bf16_math() { return kiln::cuda::math_mode() == kiln::cuda::MathMode::bf16; }
  // BF16 and room in ws for the forward's NHWC path (its BF16 packed weights and x's copy).
  static bool bf16_nhwc_forward_fits(const ConvShape& s, const T& ws) {
    namespace mb = kiln::cuda::kernels::mma_bf16;
    return bf16_math() && mb::supports(s) &&
           static_cast<std::int64_t>(ws.numel()) >= mb::packed_weight_floats(s) + mb::nhwc_floats(s);
  }
  // Tensor-core forward on mma.sync (kernels/conv2d_mma.cuh) where its 32-bit offsets reach.
  static bool uses_mma_forward(const ConvShape& s) {
    return uses_tensor_cores(s) && kiln::cuda::kernels::mma_conv::supports(s);
  }
  // MathMode::tf32 with both mma.sync passes (the forward, the input gradient on the transposed
  // shape): a training workspace then keeps the input gradient's packing (tf32_forward::kept_workspace_floats).
  static bool tf32_dgrad_keepable(const ConvShape& s) {
    namespace mc = kiln::cuda::kernels::mma_conv;
    return kiln::cuda::math_mode() == kiln::cuda::MathMode::tf32 && s.c_in > 0 && s.c_out > 0 && uses_mma_forward(s) &&
           mc::supports(mc::transposed(s));
  }
  // ... and ws has room for both packings: the forward packs both (one launch), the backward's input
  // gradient runs on the kept one. A workspace planned for eval (forward only) or under another mode
  // has no room: today's packings per pass.
  static bool tf32_dgrad_kept_fits(const ConvShape& s, const T& ws) {
    return tf32_dgrad_keepable(s) &&
           static_cast<std::int64_t>(ws.numel()) >= kiln::cuda::kernels::tf32_forward::kept_workspace_floats(s);
  }
  // MathMode::bf16 with both NHWC passes (the forward, the input gradient on the transposed shape): a
  // training workspace then keeps the input gradient's BF16 packing too (mma_bf16_wgrad::Layout::kept_dgrad).
  static bool bf16_dgrad_keepable(const ConvShape& s) {
    namespace k = kiln::cuda::kernels;
    return bf16_math() && s.c_in > 0 && s.c_out > 0 && uses_mma_forward(s) && k::mma_bf16::supports(s) &&
           k::mma_bf16::supports(k::mma_conv::transposed(s));
  }
  // ... and ws has room for it: the forward packs both layouts, the input gradient runs on the kept one.
  // (kept_total lies past x's copy and the forward's packing: bf16_nhwc_forward_fits holds too.)
  static bool bf16_dgrad_kept_fits(const ConvShape& s, const T& ws) {
    return bf16_dgrad_keepable(s) &&
           static_cast<std::int64_t>(ws.numel()) >= kiln::cuda::kernels::mma_bf16_wgrad::layout(s).kept_total;
  }
  // Packs the weights into ws (tap-major, TF32), then the kernel tf32_plan picks: mma.sync on 128 x 64,
  // 128 x 128 or 256 x 64 tiles (mma_conv::block_n, tall; docs/kernels.md "128 x 64 tiles on the deep
  // levels"), or wgmma on 128 x 128 or 128 x 256 tiles where the device runs it and the model prefers
  // it (tf32_forward::plan; docs/kernels.md "wgmma in the backend").
  // BF16 with room for the NHWC copy in ws: the copy (kept for the weight gradient: mma_bf16_wgrad::layout),
  // the weights packed in natural order, then conv2d_mma_bf16_forward_kernel (16-byte cp.async and
  // ldmatrix for A); else the TF32 kernels. With room for the input gradient's BF16 packing too (a
  // training workspace: bf16_dgrad_kept_fits), both packings in one launch, that one kept.
  static void conv2d_forward_mma(const ConvShape& s, const T& x, const T& w, const T& b, T& y, T& ws, bool x_copied) {
    namespace mc = kiln::cuda::kernels::mma_conv;
    namespace mbw = kiln::cuda::kernels::mma_bf16_wgrad;
    if (s.c_out == 0) return;
    if (bf16_nhwc_forward_fits(s, ws)) {
      const mbw::Layout l = mbw::layout(s);
      auto* wp = reinterpret_cast<__nv_bfloat16*>(ws.data() + l.weights);
      with_kernel_size<1, 3>(s.k, [&]<int K>() {
        if (bf16_dgrad_kept_fits(s, ws)) {
          const unsigned forward_blocks = mc::pack_weight_blocks<K, false>(s);
          launch(KILN_CUDA_KERNEL(conv2d_mma_pack_weights_both_bf16_kernel, K),
                 dim3(forward_blocks + mc::pack_weight_blocks<K, true>(s)), dim3(mc::pack_threads), 0, s, w.data(), wp,
                 reinterpret_cast<__nv_bfloat16*>(ws.data() + l.kept_dgrad), static_cast<int>(forward_blocks));
        } else {
          launch(KILN_CUDA_KERNEL(conv2d_mma_pack_weights_bf16_kernel, K), dim3(mc::pack_weight_blocks<K, false>(s)),
                 dim3(mc::pack_threads), 0, s, w.data(), wp);
        }
      });
      conv2d_bf16_packed_forward(s, x, wp, ptr(b), y, ws, x_copied);
      return;
    }
    namespace tp = kiln::cuda::kernels::tf32_forward;
    const tp::Plan plan = tf32_plan(s, ws);
    if (tf32_dgrad_kept_fits(s, ws)) {  // training: the input gradient's packing too, kept for the backward
      const ConvShape t = mc::transposed(s);
      float* dgrad = ws.data() + tp::dgrad_offset(s);
      const tp::Plan dgrad_plan = tp::plan(t);
      with_kernel_size<1, 3>(s.k, [&]<int K>() {
        const unsigned forward_blocks = mc::pack_weight_blocks<K, false>(s);
        launch(KILN_CUDA_KERNEL(conv2d_mma_pack_weights_both_kernel, K),
               dim3(forward_blocks + mc::pack_weight_blocks<K, true>(s)), dim3(mc::pack_threads), 0, s, w.data(),
               ws.data(), tp::counters(s, ws.data(), plan), tp::counter_count(s, plan), dgrad,
               tp::counters(t, dgrad, dgrad_plan), tp::counter_count(t, dgrad_plan), static_cast<int>(forward_blocks));
      });
    } else {
      with_kernel_size<1, 3>(s.k, [&]<int K>() {
        launch(KILN_CUDA_KERNEL(conv2d_mma_pack_weights_kernel, K), dim3(mc::pack_weight_blocks<K, false>(s)),
               dim3(mc::pack_threads), 0, s, w.data(), ws.data(), tp::counters(s, ws.data(), plan),
               tp::counter_count(s, plan));
      });
    }
    conv2d_tf32_packed(s, x, ws.data(), ptr(b), y, plan);
  }
  // The BF16 forward after its packing (wp, in ws): x's NHWC copy at its place in ws (unless the
  // layer before wrote it: x_copied), then the GEMM.
  static void conv2d_bf16_packed_forward(const ConvShape& s, const T& x, const __nv_bfloat16* wp, const float* b, T& y,
                                         T& ws, bool x_copied) {
    auto* xh = reinterpret_cast<__nv_bfloat16*>(ws.data() + kiln::cuda::kernels::mma_bf16_wgrad::layout(s).x_copy);
    if (!x_copied) to_nhwc_bf16(s.n, s.c_in, s.h * s.w, x.data(), xh);
    conv2d_mma_bf16_packed(s, xh, wp, b, y);
  }
  // Whether this device runs wgmma (kiln::gpu::wgmma::runs_here: one small launch and a copy back,
  // remembered per device), asked while a TF32 workspace for s is planned, so that no forward asks
  // it first inside a CUDA graph capture.
  static void ask_wgmma_while_planning(const ConvShape& s) {
    namespace tp = kiln::cuda::kernels::tf32_forward;
    if (kiln::cuda::math_mode() == kiln::cuda::MathMode::tf32 &&
        (tp::wgmma_takes(s) || tp::wgmma_takes(kiln::cuda::kernels::mma_conv::transposed(s))))
      static_cast<void>(kiln::gpu::wgmma::runs_here());
  }
  // The TF32 forward's plan for shape fs on this device (tf32_forward::plan: mma.sync, or wgmma on
  // sm_90a where the model prefers it), with one slice where ws cannot hold its partial tiles (a
  // workspace planned without them).
  static kiln::cuda::kernels::tf32_forward::Plan tf32_plan(const ConvShape& fs, const T& ws) {
    namespace tp = kiln::cuda::kernels::tf32_forward;
    return tp::fitted(fs, tp::plan(fs), static_cast<std::int64_t>(ws.numel()));
  }
  // The TF32 forward kernel of shape fs on weights already packed into `work` (a workspace region:
  // the forward's, or the input gradient's with fs = mma_conv::transposed(s)) by plan p: its family,
  // block tile and split-K slices (the packing zeroed that plan's counters in `work`). mma.sync
  // takes NarrowCin where fs has Cin < 16.
  static void conv2d_tf32_packed(const ConvShape& fs, const T& x, float* work, const float* b, T& y,
                                 const kiln::cuda::kernels::tf32_forward::Plan& p) {
    namespace mc = kiln::cuda::kernels::mma_conv;
    namespace wc = kiln::cuda::kernels::wgmma_conv;
    float* partials = p.splits > 1 ? work + mc::partials_offset(fs) : nullptr;
    unsigned* counters = kiln::cuda::kernels::tf32_forward::counters(fs, work, p);
    const dim3 grid = mc::grid(fs, p.splits, p.bn, p.rows);
    with_kernel_size<1, 3>(fs.k, [&]<int K>() {
      if constexpr (K == 3) {  // (the plan takes wgmma for 3 x 3 filters only: tf32_forward::wgmma_preferred)
        if (p.wgmma && p.rows == wc::short_bm) {  // 64 x 128 (split tiles: tf32_forward::wgmma_plan)
          using Short = wc::Tile<128, wc::short_bm>;
          wc::allow_shared<K, 128, wc::short_bm>();
          launch(KILN_CUDA_KERNEL(conv2d_wgmma_forward_short_kernel, K), grid, dim3(Short::threads),
                 Short::shared_bytes, fs, x.data(), static_cast<const float*>(work), b, y.data(), partials, counters);
          return;
        }
        if (p.wgmma) {  // 128 x 128 or 128 x 256 (wgmma_conv::block_n)
          auto run = [&]<int BN>() {
            wc::allow_shared<K, BN>();
            launch(KILN_CUDA_KERNEL(conv2d_wgmma_forward_kernel, K, BN), grid, dim3(wc::threads),
                   wc::Tile<BN>::shared_bytes, fs, x.data(), static_cast<const float*>(work), b, y.data(), partials,
                   counters);
          };
          return p.bn == 256 ? run.template operator()<256>() : run.template operator()<128>();
        }
      }
      auto run = [&]<int BN, bool NarrowCin>() {
        launch(KILN_CUDA_KERNEL(conv2d_mma_forward_kernel, K, BN, NarrowCin), grid, dim3(mc::Tile<BN>::threads),
               mc::Tile<BN>::shared_bytes, fs, x.data(), static_cast<const float*>(work), b, y.data(), partials,
               counters);
      };
      const bool narrow = mc::narrow(fs);
      if (p.rows == mc::tall_bm) {  // 256 x 64 tiles (mma_conv::tall)
        using Tall = mc::Tile<64, mc::tall_bm>;
        mc::allow_tall_shared<K>();
        launch(KILN_CUDA_KERNEL(conv2d_mma_forward_tall_kernel, K), grid, dim3(Tall::threads), Tall::shared_bytes, fs,
               x.data(), static_cast<const float*>(work), b, y.data(), partials, counters);
      } else if (p.bn == 64)
        narrow ? run.template operator()<64, true>() : run.template operator()<64, false>();
      else
        narrow ? run.template operator()<128, true>() : run.template operator()<128, false>();
    });
  }
  // The NHWC BF16 copy of an NCHW activation (n x c x hw), channels padded to 16 (conv2d_mma_bf16.cuh).
  static void to_nhwc_bf16(std::int64_t n, std::int64_t c, std::int64_t hw, const float* x, __nv_bfloat16* xh) {
    launch_1d(KILN_CUDA_KERNEL_FLOAT(conv2d_nhwc_bf16_kernel),
              kiln::cuda::kernels::mma_bf16::nhwc_cast_items(n * hw, c), static_cast<int>(n * hw), static_cast<int>(hw),
              static_cast<int>(c), x, xh);
  }
  // The split-K partial tiles of the BF16 forward kernel (conv2d_mma_bf16_packed): per-stream scratch
  // like the reductions' (launches on a stream run in order), so the workspaces stay as they are.
  static float* split_partials(std::int64_t floats) {
    static auto* buffers = new StreamBuffers;
    return static_cast<float*>(
        stream_buffer(*buffers, static_cast<std::size_t>(floats > 0 ? floats : 1) * sizeof(float), false));
  }
  // conv2d_mma_bf16_forward_kernel of shape fs (a transposed one for the input gradient) on an NHWC
  // BF16 copy and natural-order BF16 packed weights on the TF32 forward's tiles (mma_bf16::block_n),
  // split-K where the tiles leave SMs idle (mma_bf16::splits; the counters are reduce_counters').
  static void conv2d_mma_bf16_packed(const ConvShape& fs, const __nv_bfloat16* xh, const __nv_bfloat16* wp,
                                     const float* b, T& y) {
    namespace mb = kiln::cuda::kernels::mma_bf16;
    const int splits = mb::splits(fs);
    float* partials = splits > 1 ? split_partials(mb::partial_floats(fs, splits)) : nullptr;
    unsigned* counters = splits > 1 ? reduce_counters(mb::tiles(fs)) : nullptr;
    with_kernel_size<1, 3>(fs.k, [&]<int K>() {
      auto run = [&]<int BN>() {
        launch(KILN_CUDA_KERNEL(conv2d_mma_bf16_forward_kernel, K, BN),
               kiln::cuda::kernels::mma_conv::grid(fs, splits, BN), dim3(mb::Tile<BN>::threads),
               mb::Tile<BN>::shared_bytes, fs, xh, wp, b, y.data(), partials, counters);
      };
      mb::block_n(fs) == 128 ? run.template operator()<128>() : run.template operator()<64>();
    });
  }
  static dim3 igemm_grid(const ConvShape& s, kiln::cuda::kernels::igemm::Pass pass, unsigned splits = 1) {
    namespace ig = kiln::cuda::kernels::igemm;
    const ig::Gemm g = ig::gemm_of(s, pass);
    return dim3(static_cast<unsigned>(ig::ceil_div(g.n, ig::bn)), static_cast<unsigned>(ig::ceil_div(g.m, ig::bm)),
                splits);
  }
  // dx overwritten (if wanted), dw accumulated (if wanted): TF32 or BF16 tensor cores. The input gradient
  // on mma.sync (the forward kernel on the transposed shape, weights packed transposed and rotated
  // into ws, or kept there by the forward: ConvKept::tf32_dgrad_packing) and the weight gradient on
  // mma.sync (conv2d_mma_wgrad.cuh) where the shape and the workspace allow, else the implicit-GEMM
  // kernels. ConvKept::x_bf16_copy: x's NHWC BF16 copy is in ws from the forward;
  // bf16_copy_and_dgrad_packing: and the input gradient's BF16 packing.
  static void conv2d_backward_tf32(const ConvShape& s, const T& x, const T& w, const T& dy, T& dx, T& dw, T& ws,
                                   ConvKept kept, bool dy_given) {
    bool x_copied = kept == ConvKept::x_bf16_copy || kept == ConvKept::bf16_copy_and_dgrad_packing;
    namespace ig = kiln::cuda::kernels::igemm;
    namespace mc = kiln::cuda::kernels::mma_conv;
    namespace mw = kiln::cuda::kernels::mma_wgrad;
    namespace mb = kiln::cuda::kernels::mma_bf16;
    const bool bf16 = bf16_math();
    const auto l = kiln::cuda::kernels::mma_bf16_wgrad::layout(s);
    bool dy_copied = false;  // dy's NHWC BF16 copy in ws (the BF16 weight gradient reuses it)
    if (!dx.empty() && s.c_in > 0) {
      if (bf16 && uses_mma_forward(s) && mb::supports(mc::transposed(s)) && s.c_out > 0 &&
          static_cast<std::int64_t>(ws.numel()) >= l.partials) {
        dy_copied = true;
        // BF16 with room for dy's NHWC copy after x's: the NHWC forward kernel on the transposed shape.
        // The forward packed these weights with its own where ws has room (bf16_dgrad_kept_fits).
        const ConvShape t = mc::transposed(s);
        const bool packed = kept == ConvKept::bf16_copy_and_dgrad_packing && bf16_dgrad_kept_fits(s, ws);
        auto* wp = reinterpret_cast<__nv_bfloat16*>(ws.data() + (packed ? l.kept_dgrad : l.weights));
        auto* dyh = reinterpret_cast<__nv_bfloat16*>(ws.data() + l.dy_copy);
        if (!packed)
          with_kernel_size<1, 3>(s.k, [&]<int K>() {
            launch(KILN_CUDA_KERNEL(conv2d_mma_pack_weights_dgrad_bf16_kernel, K),
                   dim3(mc::pack_weight_blocks<K, true>(s)), dim3(mc::pack_threads), 0, s, w.data(), wp);
          });
        if (!dy_given) to_nhwc_bf16(s.n, s.c_out, s.h * s.w, dy.data(), dyh);
        conv2d_mma_bf16_packed(t, dyh, wp, nullptr, dx);
      } else if (kept == ConvKept::tf32_dgrad_packing && tf32_dgrad_kept_fits(s, ws)) {
        // The forward packed these weights next to its own (the same weights: nothing changes them
        // between a forward and its backward); a changed plan, mode or workspace repacks below.
        const ConvShape t = mc::transposed(s);
        namespace tp = kiln::cuda::kernels::tf32_forward;
        conv2d_tf32_packed(t, dy, ws.data() + tp::dgrad_offset(s), nullptr, dx, tp::plan(t));
      } else if (uses_mma_forward(s) && mc::supports(mc::transposed(s)) && s.c_out > 0 &&
                 static_cast<std::int64_t>(ws.numel()) >= mc::packed_dgrad_weight_floats(s)) {
        // TF32 (under BF16 too, where the NHWC kernel cannot run: the workspace has no room for dy's copy).
        x_copied = false;  // its packing starts at ws[0]
        const ConvShape t = mc::transposed(s);
        namespace tp = kiln::cuda::kernels::tf32_forward;
        const tp::Plan plan = tf32_plan(t, ws);
        with_kernel_size<1, 3>(s.k, [&]<int K>() {
          launch(KILN_CUDA_KERNEL(conv2d_mma_pack_weights_dgrad_kernel, K), dim3(mc::pack_weight_blocks<K, true>(s)),
                 dim3(mc::pack_threads), 0, s, w.data(), ws.data(), tp::counters(t, ws.data(), plan),
                 tp::counter_count(t, plan));
        });
        conv2d_tf32_packed(t, dy, ws.data(), nullptr, dx, plan);
      } else {
        with_kernel_size<1, 3>(s.k, [&]<int K>() {
          launch(KILN_CUDA_KERNEL(conv2d_igemm_backward_data_kernel, K), igemm_grid(s, ig::Pass::backward_data),
                 dim3(ig::threads), ig::shared_bytes, s, w.data(), dy.data(), dx.data());
        });
      }
    }
    if (dw.empty() || s.c_in == 0 || s.c_out == 0) return;
    if (bf16 && kiln::cuda::kernels::mma_bf16_wgrad::supports(s) &&
        static_cast<std::int64_t>(ws.numel()) >= l.partials) {
      conv2d_wgrad_bf16(s, x, dy, dw, ws, dy_copied || dy_given, x_copied);
      return;
    }
    if (mw::supports(s) && mw::aligned(dy.data())) {
      const mw::Geometry g = mw::geometry(s);
      // TF32 (under BF16 too, where the NHWC kernel cannot run: no room for the copies in ws), on
      // warpgroup MMAs where the tile has that variant, the device runs sm_90a code and the family
      // preference (tf32_forward::Preference, the forwards' too) is not mma.sync alone; then in its
      // plan (a tile's splits added in thread-block clusters where the model prefers it).
      namespace tp = kiln::cuda::kernels::tf32_forward;
      const bool wgmma =
          mw::wgmma_tile(g) && tp::preference() != tp::Preference::mma_sync && kiln::gpu::wgmma::runs_here();
      mw::Splits sp = wgmma ? mw::wgmma_splits(s, g) : mw::splits(s, g);
      const std::int64_t weights = s.c_out * s.c_in * s.k * s.k, room = static_cast<std::int64_t>(ws.numel());
      // A workspace planned before stream-K (or without its partial tiles): the grid's split-K.
      if (sp.stream_k && room < mw::partial_floats(s, g, sp)) sp = mw::split_k(s, g);
      // A workspace planned without the one-launch reduction's padded tiles: the reduction launch.
      if (sp.one_launch && room < mw::partial_floats(s, g, sp)) sp.one_launch = false;
      // A workspace planned under strict fp32 (or none) is too small: run unsplit, straight into dw.
      if (!sp.stream_k && sp.count > 1 && room < (sp.cluster > 1 ? mw::partial_floats(s, g, sp) : sp.count * weights))
        sp = mw::splits_of(s, g, 1);
      const bool on_chip = sp.cluster > 1;                     // the splits added in clusters
      const int groups = on_chip ? sp.count / sp.cluster : 0;  // ... their partial sums (1: into dw)
      // the splits (or stream-K's pieces) added in the GEMM's launch
      const bool one = (sp.count > 1 || sp.stream_k) && sp.one_launch && !on_chip;
      float* out = sp.count > 1 && !one && !(on_chip && groups == 1) ? ws.data() : dw.data();
      unsigned* counters = one ? reduce_counters(mw::tiles(s, g)) : nullptr;
      mw::dispatch(s, [&]<int K, int BM, int CT, int Taps, bool Tail>() {
        using Tile = mw::Tile<BM, CT, Taps>;
        if constexpr (BM == 128 && CT * Taps == 128) {
          if (wgmma) {
            constexpr auto bytes = mw::wgmma_shared_bytes<BM, CT, Taps>;
            mw::allow_wgmma_shared<K, CT, Taps, Tail>();
            if constexpr (CT == 128) {
              if (sp.stream_k) {
                launch(KILN_CUDA_KERNEL(conv2d_wgmma_wgrad_stream_k_kernel, K, Tail), mw::grid(s, g, sp),
                       dim3(Tile::threads), bytes, s, x.data(), dy.data(), dw.data(), sp.steps_per_split, ws.data(),
                       counters, sp.slots);
                return;
              }
            }
            if (on_chip) {
              launch_cluster(KILN_CUDA_KERNEL(conv2d_wgmma_wgrad_kernel, K, CT, Taps, Tail), mw::grid(s, g, sp),
                             dim3(Tile::threads), dim3(1, 1, static_cast<unsigned>(sp.cluster)), bytes, s, x.data(),
                             dy.data(), out, sp.steps_per_split, static_cast<float*>(nullptr),
                             static_cast<unsigned*>(nullptr));
              if (groups > 1) wgrad_reduce<K>(s, ws.data(), groups, dw.data());
              return;
            }
            launch(KILN_CUDA_KERNEL(conv2d_wgmma_wgrad_kernel, K, CT, Taps, Tail), mw::grid(s, g, sp),
                   dim3(Tile::threads), bytes, s, x.data(), dy.data(), out, sp.steps_per_split,
                   one ? ws.data() : nullptr, counters);
            if (sp.count > 1 && !one) wgrad_reduce<K>(s, ws.data(), sp.count, dw.data());
            return;
          }
        }
        mw::allow_shared<K, BM, CT, Taps, Tail>();
        if constexpr (BM == 128 && CT == 128 && Taps == 1) {
          if (sp.stream_k) {  // (mma_wgrad::stream_k_of plans it for these tiles only)
            launch(KILN_CUDA_KERNEL(conv2d_mma_wgrad_stream_k_kernel, K, BM, CT, Taps, Tail), mw::grid(s, g, sp),
                   dim3(Tile::threads), Tile::shared_bytes, s, x.data(), dy.data(), dw.data(), sp.steps_per_split,
                   ws.data(), counters, sp.slots);
            return;
          }
        }
        launch(KILN_CUDA_KERNEL(conv2d_mma_wgrad_kernel, K, BM, CT, Taps, Tail), mw::grid(s, g, sp),
               dim3(Tile::threads), Tile::shared_bytes, s, x.data(), dy.data(), out, sp.steps_per_split,
               one ? ws.data() : nullptr, counters);
        if (sp.count > 1 && !one) wgrad_reduce<K>(s, ws.data(), sp.count, dw.data());
      });
      return;
    }
    ig::Splits sp = ig::weight_grad_splits(s);
    const std::int64_t weights = s.c_out * s.c_in * s.k * s.k;
    // A workspace planned under strict fp32 (or none) is too small: run unsplit, straight into dw.
    if (sp.count > 1 && static_cast<std::int64_t>(ws.numel()) < sp.count * weights) sp = ig::Splits{1, 1 << 30};
    float* out = sp.count > 1 ? ws.data() : dw.data();
    with_kernel_size<1, 3>(s.k, [&]<int K>() {
      launch(KILN_CUDA_KERNEL(conv2d_igemm_backward_weight_kernel, K),
             igemm_grid(s, ig::Pass::backward_weight, static_cast<unsigned>(sp.count)), dim3(ig::threads),
             ig::shared_bytes, s, x.data(), dy.data(), out, sp.k_tiles_per_split);
    });
    if (sp.count > 1)
      launch_1d(KILN_CUDA_KERNEL_FLOAT(conv2d_igemm_reduce_splits_kernel), weights, ws.data(), sp.count, weights,
                dw.data());
  }
  // dw += the BF16 weight gradient from the NHWC BF16 copies of x and dy (conv2d_mma_bf16_wgrad.cuh;
  // dy's already in ws when the input gradient made it, x's when the forward did), split-K where ws
  // holds the partial sums.
  static void conv2d_wgrad_bf16(const ConvShape& s, const T& x, const T& dy, T& dw, T& ws, bool dy_copied,
                                bool x_copied) {
    namespace mw = kiln::cuda::kernels::mma_wgrad;
    namespace mbw = kiln::cuda::kernels::mma_bf16_wgrad;
    const mbw::Layout l = mbw::layout(s);
    auto* dyh = reinterpret_cast<__nv_bfloat16*>(ws.data() + l.dy_copy);
    auto* xh = reinterpret_cast<__nv_bfloat16*>(ws.data() + l.x_copy);
    if (!dy_copied) to_nhwc_bf16(s.n, s.c_out, s.h * s.w, dy.data(), dyh);
    if (!x_copied) to_nhwc_bf16(s.n, s.c_in, s.h * s.w, x.data(), xh);
    const mw::Geometry g = mw::single_tap(s);
    mw::Splits sp = mw::split_k(s, g);  // the grid's plan: the BF16 kernel has no stream-K schedule
    if (sp.stream_k)  // (a stream-K plan read as split counts would write partial tiles past the workspace)
      throw kiln::gpu::Error(
          "conv2d_wgrad_bf16: the BF16 weight gradient has no stream-K schedule (mma_wgrad::split_k)");
    const std::int64_t weights = s.c_out * s.c_in * s.k * s.k,
                       room = static_cast<std::int64_t>(ws.numel()) - l.partials;
    if (sp.one_launch && room < mw::partial_floats(s, g, sp)) sp.one_launch = false;  // planned without the tiles
    if (sp.count > 1 && room < sp.count * weights) sp = mw::splits_of(s, g, 1);       // no room: unsplit
    const bool one = sp.count > 1 && sp.one_launch;  // the splits added in the GEMM's launch
    float* partials = ws.data() + l.partials;
    float* out = sp.count > 1 && !one ? partials : dw.data();
    unsigned* counters = one ? reduce_counters(mw::tiles(s, g)) : nullptr;
    mbw::dispatch(s, [&]<int K, int BT>() {
      launch(KILN_CUDA_KERNEL(conv2d_mma_bf16_wgrad_kernel, K, BT), mw::grid(s, g, sp.count),
             dim3(mbw::Tile<BT>::threads), mbw::Tile<BT>::shared_bytes, s, static_cast<const __nv_bfloat16*>(xh),
             static_cast<const __nv_bfloat16*>(dyh), out, sp.steps_per_split, one ? partials : nullptr, counters);
      if (sp.count > 1 && !one) wgrad_reduce<K>(s, partials, sp.count, dw.data());
    });
  }
  // The tiled strict-fp32 convolutions: 16x16 output tiles x groups of 8 channels x images.
  static dim3 conv_grid(const ConvShape& s, std::int64_t channels) {
    namespace k = kiln::cuda::kernels;
    const std::int64_t t = k::conv_tile, tiles = ((s.h + t - 1) / t) * ((s.w + t - 1) / t);
    return dim3(static_cast<unsigned>(tiles),
                static_cast<unsigned>((channels + k::conv_channels_per_block - 1) / k::conv_channels_per_block),
                static_cast<unsigned>(s.n));
  }
  static dim3 conv_block() { return dim3(kiln::cuda::kernels::conv_tile, kiln::cuda::kernels::conv_tile); }
  static std::size_t conv_shared_bytes(const ConvShape& s) {
    const std::size_t bytes =
        sizeof(float) * static_cast<std::size_t>(kiln::cuda::kernels::conv_tile_shared_floats(static_cast<int>(s.k)));
    KILN_CHECK(bytes <= kiln::gpu::default_max_dynamic_shared_bytes, "Backend<Cuda>: Conv2d with kernel size ", s.k,
               " needs ", bytes, " bytes of shared memory per block; the tiled kernels support up to 48 KiB (K <= 31)");
    return bytes;
  }
};

static_assert(backend_table_complete<Cuda>());

}  // namespace kiln
