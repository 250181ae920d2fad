#pragma once
// ReceptiveField<Net>: how far an output pixel looks, from the network's type.
//   radius     output pixel (i, j) depends only on input pixels within `radius`
//              rows and columns of (i, j) (a bound: exact for convolutions,
//              pooling and upsampling windows are counted in full);
//   alignment  the largest downsampling factor inside, doubled where a 3x3 convolution
//              runs (Winograd tiles): a crop whose origin is a multiple of it sees the same
//              pooling windows and convolution tiles as the whole image.
// Tiled inference (nn/infer.hpp) uses both: a tile's pixels that are at least
// `radius` from every cut edge come out exactly as in the untiled pass.
//
// Computed by folding the layers at compile time with the current stride s (input
// pixels per pixel of the feature map): Conv2d<K> adds (K/2)*s; MaxPool2d<P> adds
// (P-1)*s (the window's extent) and multiplies s by P; Upsample<S> divides s by S and
// adds (S-1)*s' (nearest: the source pixel of a block), plus s for bilinear's
// neighbour tap; SkipConcat takes its branch's reach; element-wise layers add
// nothing. A composite layer exposes its composition as `body_type`.
#include <algorithm>

#include "kiln/nn/activation.hpp"
#include "kiln/nn/batchnorm2d.hpp"
#include "kiln/nn/conv2d.hpp"
#include "kiln/nn/dropout.hpp"
#include "kiln/nn/maxpool2d.hpp"
#include "kiln/nn/named.hpp"
#include "kiln/nn/relu.hpp"
#include "kiln/nn/sequential.hpp"
#include "kiln/nn/skip_concat.hpp"
#include "kiln/nn/upsample.hpp"

namespace kiln {

// Reach so far: radius and stride in input pixels, and the largest stride seen.
struct Reach {
  double radius = 0, stride = 1, alignment = 1;
};

namespace detail {

// A Named<"name", L> (nn/named.hpp) reaches as its L, found through Named::named_layer: a partial
// specialisation on Named<N, L> deduces the class-type parameter N, which nvcc 13's front end does
// not (the programs built by nvcc, KILN_PROGRAMS_CUDA, failed on it).
template <class L>
struct ReachOf {
  static_assert(
      requires { typename L::named_layer; } || requires { typename L::body_type; },
      "kiln::ReceptiveField: this layer type has no receptive-field rule (add a ReachOf specialisation, "
      "or expose its composition as body_type), or pass the tile margin by hand");
  static constexpr Reach after(Reach r) {
    if constexpr (requires { typename L::named_layer; })
      return ReachOf<typename L::named_layer>::after(r);
    else
      return ReachOf<typename L::body_type>::after(r);
  }
};

template <int In, int Out, int K, class D, int S>
struct ReachOf<Conv2d<In, Out, K, D, S>> {
  static constexpr Reach after(Reach r) {
    r.radius += (K / 2) * r.stride;
    // The CPU runs 3x3 stride-1 convolutions as Winograd F(2x2, 3x3) on 2 x 2 output tiles from
    // the feature map's origin; a pixel's rounding depends on its place in its tile, so a crop must
    // start on an even pixel of this map to come out bitwise as in the whole image.
    if constexpr (K == 3 && S == 1) r.alignment = std::max(r.alignment, 2 * r.stride);
    if constexpr (S > 1) {
      r.stride *= S;
      r.alignment = std::max(r.alignment, r.stride);
    }
    return r;
  }
};
template <ActivationKind A, class D>
struct ReachOf<Activation<A, D>> {
  static constexpr Reach after(Reach r) { return r; }
};
template <class D>
struct ReachOf<Dropout<D>> {
  static constexpr Reach after(Reach r) { return r; }
};
template <int C, class D>
struct ReachOf<BatchNorm2d<C, D>> {
  static constexpr Reach after(Reach r) { return r; }
};
template <class D>
struct ReachOf<ReLU<D>> {
  static constexpr Reach after(Reach r) { return r; }
};
template <int P, class D>
struct ReachOf<MaxPool2d<P, D>> {
  static constexpr Reach after(Reach r) {
    r.radius += (P - 1) * r.stride;
    r.stride *= P;
    r.alignment = std::max(r.alignment, r.stride);
    return r;
  }
};
template <int S, UpsampleMode M, class D>
struct ReachOf<Upsample<S, M, D>> {
  static constexpr Reach after(Reach r) {
    const double before = r.stride;
    r.stride /= S;
    r.radius += (S - 1) * r.stride + (M == UpsampleMode::bilinear ? before : 0.0);
    return r;
  }
};
template <class... L>
struct ReachOf<Sequential<L...>> {
  static constexpr Reach after(Reach r) {
    ((r = ReachOf<L>::after(r)), ...);
    return r;
  }
};
template <class B>
struct ReachOf<SkipConcat<B>> {
  static constexpr Reach after(Reach r) {
    const Reach b = ReachOf<B>::after(r);
    return {std::max(r.radius, b.radius), r.stride, std::max(r.alignment, b.alignment)};
  }
};

constexpr int ceil_to_int(double v) {
  const int i = static_cast<int>(v);
  return i < v ? i + 1 : i;
}

}  // namespace detail

template <class Net>
struct ReceptiveField {
  static constexpr Reach reach = detail::ReachOf<Net>::after(Reach{});
  static_assert(reach.stride == 1, "kiln::ReceptiveField: the network changes the image size (output stride != 1)");
  static constexpr int radius = detail::ceil_to_int(reach.radius);
  static constexpr int alignment = detail::ceil_to_int(reach.alignment);
};

}  // namespace kiln
