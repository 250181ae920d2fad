#pragma once
// The one list of operations a device's Backend table provides. Every layer calls only these,
// so a device is complete when its table satisfies kiln::BackendOps; each backend header asserts
// it right after the table, and a missing or misspelt op is a compile error there, naming the
// device. Operations beyond the list are optional and declared, never guessed: each table says
// `static constexpr bool` for every optional capability below, and the assert checks the claim
// against the members. Adding an op: add it here, then to cpu/backend.hpp and cuda/backend.hpp
// (docs/architecture.md, "Adding an op or a layer").
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "kiln/core/arena.hpp"
#include "kiln/core/backend.hpp"
#include "kiln/core/conv_shape.hpp"
#include "kiln/core/tensor.hpp"
#include "kiln/ops/activation.hpp"
#include "kiln/ops/batchnorm.hpp"
#include "kiln/ops/loss.hpp"
#include "kiln/ops/optim.hpp"
#include "kiln/ops/pooling.hpp"
#include "kiln/ops/softmax_xent.hpp"
#include "kiln/ops/upsample.hpp"

namespace kiln {

// The required operations: every device has all of them.
template <class D, class B = Backend<D>>
concept BackendOps = requires(const ConvShape& cs, const StridedConvShape& ss, const ActivationArgs& act,
                              const DropoutArgs& drop, const BatchNormArgs& bn, const PoolArgs& pool,
                              const UpsampleArgs& up, const LossArgs& loss, const AdamStepArgs& adam,
                              const SgdStepArgs& sgd, const SoftmaxXentArgs& xent, const Tensor<float, D>& c,
                              Tensor<float, D>& m, const Tensor<std::int32_t, D>& cidx, Tensor<std::int32_t, D>& idx,
                              float f) {
  { B::conv2d_workspace_floats(cs) } -> std::convertible_to<std::size_t>;
  { B::conv2d_forward_workspace_floats(cs) } -> std::convertible_to<std::size_t>;
  B::conv2d_forward(cs, c, c, c, m, m);
  { B::conv2d_forward_kept(cs, c) } -> std::same_as<ConvKept>;
  B::conv2d_backward(cs, c, c, c, m, m, m, m, ConvKept::nothing);
  B::conv2d_strided_forward(ss, c, c, c, m);
  B::conv2d_strided_backward(ss, c, c, c, m, m, m);
  B::activation_forward(act, c, m);
  B::activation_backward(act, c, c, c, m);
  B::dropout_forward(drop, c, m);
  B::dropout_backward(drop, c, m);
  B::elementwise_binary(ElementwiseOp::sub, c, c, m);
  B::affine(c, f, f, m);
  B::clamp(c, f, f, m);
  B::relu_forward(c, m);
  B::relu_backward(c, c, m);
  B::add(c, c, m);
  B::concat_channels(c, c, m);
  B::split_channels(c, m, m);
  B::batchnorm_forward(bn, c, c, c, m, m, m, m, m);
  B::batchnorm_backward(bn, c, c, c, c, c, m, m, m);
  B::maxpool2d_forward(pool, c, m, idx);
  B::maxpool2d_backward(pool, cidx, c, m);
  B::upsample_nearest_forward(up, c, m);
  B::upsample_nearest_backward(up, c, m);
  B::upsample_bilinear_forward(up, c, m);
  B::upsample_bilinear_backward(up, c, m);
  B::loss_forward(loss, c, c, m);
  B::loss_backward(loss, c, c, m);
  B::softmax_xent_forward(xent, c, c, c, m, m);
  B::softmax_xent_backward(xent, c, c, c, m);
  B::adam_step(adam, m, c, m, m);
  B::sgd_step(sgd, m, c, m);
  // The optional capabilities, declared by every table (see below).
  { B::fused_batchnorm_relu } -> std::convertible_to<bool>;
  { B::multi_tensor_adam } -> std::convertible_to<bool>;
  { B::synchronised_batchnorm } -> std::convertible_to<bool>;
  { B::batched_conv_packing } -> std::convertible_to<bool>;
  { B::activation_copies } -> std::convertible_to<bool>;
  { B::deferred_wgrad_reductions } -> std::convertible_to<bool>;
};

// Optional: BatchNorm2d + ReLU in one pass (BatchNorm2d uses it when the next layer is a ReLU;
// without it the two run one after the other). CPU: yes. CUDA: yes.
template <class D, class B = Backend<D>>
concept HasFusedBatchNormReLU = requires(const BatchNormArgs& bn, const Tensor<float, D>& c, Tensor<float, D>& m) {
  B::batchnorm_relu_forward(bn, c, c, c, m, m, m, m, m);
  B::batchnorm_relu_backward(bn, c, c, c, c, c, c, m, m, m);
};

// Optional: one launch for every parameter tensor's Adam step (Adam uses it where present).
// CUDA: one launch per 64 tensors; CPU: one OpenMP parallel region instead of one per tensor.
template <class D, class B = Backend<D>>
concept HasMultiTensorAdam = requires(const AdamStepArgs& a, std::span<const typename B::AdamTensors> t) {
  B::adam_step_multi(a, t);
};

// Optional: BatchNorm2d in training with every per-channel sum added across the replicas of a
// data-parallel run (kiln/nn/replicas.hpp; relu: the fused pair). CPU: yes. CUDA: not yet.
template <class D, class B = Backend<D>>
concept HasSynchronisedBatchNorm = requires(const BatchNormArgs& bn, const Tensor<float, D>& c, Tensor<float, D>& m,
                                            const std::function<void(std::span<double>)>& sum) {
  B::batchnorm_forward_across(bn, true, c, c, c, m, m, m, m, m, sum);
  B::batchnorm_backward_across(bn, true, c, c, c, c, c, c, m, m, m, sum);
};

// Optional: a training forward's convolution weights packed for the whole network in one launch
// at its start (Network::forward), each Conv2d then running its forward on them; and where an
// optimizer packed them already (core/conv_packing.hpp), neither packs: conv2d_packed_current says
// whether the optimizer's record still describes the workspace. CUDA: yes (the TF32 and BF16 mma.sync
// layouts; the optimizer packs the TF32 ones). CPU: no (it packs nothing per forward).
template <class D, class B = Backend<D>>
concept HasBatchedConvPacking = requires(const ConvShape& cs, std::span<ConvPacking<D>* const> convs,
                                         const ConvPacking<D>& packing, const Tensor<float, D>& c,
                                         Tensor<float, D>& m) {
  B::conv2d_pack_forwards(convs);
  B::conv2d_forward_packed(cs, c, c, c, m, m);
  { B::conv2d_packed_current(packing) } -> std::same_as<bool>;
};

// Optional: the copies of activations a convolution reads (BF16 NHWC under MathMode::bf16),
// written by the BatchNorm + ReLU kernels that produce them instead of a copy kernel of the
// convolution's own. A Conv2d names its slot (the convolution's workspace: null where it would
// not read one) and is told when it has been written; the fused pair writes its output (x of the
// next convolution) or its input gradient (dy of the previous one) there too. Sequential hands
// the slots over (kiln/nn/sequential.hpp). CUDA: yes. CPU: no (it reads fp32 directly).
template <class D, class B = Backend<D>>
concept HasActivationCopies = requires(const ConvShape& cs, const BatchNormArgs& bn, const Tensor<float, D>& c,
                                       Tensor<float, D>& m, float* slot) {
  { B::conv2d_input_copy(cs, m) } -> std::same_as<float*>;
  { B::conv2d_gradient_copy(cs, m, true) } -> std::same_as<float*>;
  B::conv2d_forward(cs, c, c, c, m, m, true);
  B::conv2d_backward(cs, c, c, c, m, m, m, m, ConvKept::nothing, true);
  B::batchnorm_relu_forward(bn, c, c, c, m, m, m, m, m, slot);
  B::batchnorm_relu_backward(bn, c, c, c, c, c, c, m, m, m, slot);
};

// Optional: the weight gradients' split-K reductions of a whole backward in one launch at its end
// (Network::backward, where no data-parallel trainer waits on each gradient as it completes): each
// Conv2d's backward leaves its partial sums in its workspace, which nothing else writes before the
// next forward, and the flush adds them onto every dw. CUDA: yes (the mma.sync weight gradients).
// CPU: no (it reduces nothing apart).
template <class D, class B = Backend<D>>
concept HasDeferredWgradReductions = requires {
  B::conv2d_defer_wgrad_reductions();
  B::conv2d_flush_wgrad_reductions();
  B::conv2d_drop_wgrad_reductions();
};

// The check each backend header runs after its table: the required ops, and every optional
// capability exactly as declared.
template <class D, class B = Backend<D>>
constexpr bool backend_table_complete() {
  static_assert(BackendOps<D>,
                "kiln: this Backend table lacks a required op of kiln::BackendOps (core/backend_ops.hpp)");
  if constexpr (BackendOps<D>) {
    static_assert(B::fused_batchnorm_relu == HasFusedBatchNormReLU<D>,
                  "kiln: Backend::fused_batchnorm_relu does not match its batchnorm_relu_* members");
    static_assert(B::multi_tensor_adam == HasMultiTensorAdam<D>,
                  "kiln: Backend::multi_tensor_adam does not match its adam_step_multi member");
    static_assert(B::synchronised_batchnorm == HasSynchronisedBatchNorm<D>,
                  "kiln: Backend::synchronised_batchnorm does not match its batchnorm_*_across members");
    static_assert(B::batched_conv_packing == HasBatchedConvPacking<D>,
                  "kiln: Backend::batched_conv_packing does not match its conv2d_pack_forwards members");
    static_assert(B::activation_copies == HasActivationCopies<D>,
                  "kiln: Backend::activation_copies does not match its conv2d_*_copy and batchnorm_relu_* members");
    static_assert(B::deferred_wgrad_reductions == HasDeferredWgradReductions<D>,
                  "kiln: Backend::deferred_wgrad_reductions does not match its conv2d_*_wgrad_reductions members");
  }
  return true;
}

}  // namespace kiln
