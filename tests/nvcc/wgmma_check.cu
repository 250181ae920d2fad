// kiln_wgmma_check: the kernels that use wgmma compiled for sm_90a, the one target where wgmma is not a
// trap: the emulator's test kernel (tests/emu/wgmma_tile_kernel.hpp), the wgmma forward convolution
// (kernels/conv2d_wgmma.cuh) and the wgmma weight gradient (kernels/conv2d_mma_wgrad.cuh). scripts/test.sh checks their
// SASS (tests/nvcc/sass_thresholds.json: the HGMMAs are there, no local memory, registers, the main loop's instructions
// per HGMMA). Runs anywhere: it only reports that compiling and linking worked.
#include <cstdio>

#include "conv2d_mma_wgrad.cuh"
#include "conv2d_wgmma.cuh"
#include "emu/wgmma_tile_kernel.hpp"

template __global__ void kiln_wgmma_test::wgmma_tile_kernel<64, false>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<128, false>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<256, false>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<64, true>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<128, true>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<256, true>(kiln_wgmma_test::Params);
namespace kiln::cuda::kernels {
template __global__ void conv2d_wgmma_forward_kernel<1, 64>(ConvShape, const float*, const float*, const float*, float*,
                                                            float*, unsigned*);
template __global__ void conv2d_wgmma_forward_kernel<1, 128>(ConvShape, const float*, const float*, const float*,
                                                             float*, float*, unsigned*);
template __global__ void conv2d_wgmma_forward_kernel<1, 256>(ConvShape, const float*, const float*, const float*,
                                                             float*, float*, unsigned*);
template __global__ void conv2d_wgmma_forward_kernel<3, 64>(ConvShape, const float*, const float*, const float*, float*,
                                                            float*, unsigned*);
template __global__ void conv2d_wgmma_forward_kernel<3, 128>(ConvShape, const float*, const float*, const float*,
                                                             float*, float*, unsigned*);
template __global__ void conv2d_wgmma_forward_kernel<3, 256>(ConvShape, const float*, const float*, const float*,
                                                             float*, float*, unsigned*);
template __global__ void conv2d_wgmma_forward_short_kernel<3>(ConvShape, const float*, const float*, const float*,
                                                              float*, float*, unsigned*);
#define KILN_WGMMA_WGRAD(K, CT, TAPS, TAIL)                                                                            \
  template __global__ void conv2d_wgmma_wgrad_kernel<K, CT, TAPS, TAIL>(ConvShape, const float*, const float*, float*, \
                                                                        int, float*, unsigned*)
KILN_WGMMA_WGRAD(3, 128, 1, false);
KILN_WGMMA_WGRAD(3, 128, 1, true);
KILN_WGMMA_WGRAD(3, 64, 2, false);
KILN_WGMMA_WGRAD(1, 128, 1, false);
KILN_WGMMA_WGRAD(1, 128, 1, true);
#undef KILN_WGMMA_WGRAD
template __global__ void conv2d_wgmma_wgrad_stream_k_kernel<3, false>(ConvShape, const float*, const float*, float*,
                                                                      int, float*, unsigned*, int);
template __global__ void conv2d_wgmma_wgrad_stream_k_kernel<1, false>(ConvShape, const float*, const float*, float*,
                                                                      int, float*, unsigned*, int);
}  // namespace kiln::cuda::kernels

int main() {
  std::puts("kiln_wgmma_check: the wgmma kernels compiled for sm_90a and linked");
  return 0;
}
