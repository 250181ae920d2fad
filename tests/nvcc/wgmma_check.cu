// kiln_wgmma_check: the wgmma test kernel (tests/emu/wgmma_tile_kernel.hpp, the emulator's test of
// kernels/kiln/gpu/wgmma.hpp) compiled for sm_90a, the one target where wgmma is not a trap:
// scripts/test.sh checks that its SASS holds the HGMMA instructions (tests/nvcc/sass_thresholds.json,
// min hgmma). Runs anywhere: it only reports that compiling and linking worked.
#include <cstdio>

#include "emu/wgmma_tile_kernel.hpp"

template __global__ void kiln_wgmma_test::wgmma_tile_kernel<64, false>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<128, false>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<256, false>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<64, true>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<128, true>(kiln_wgmma_test::Params);
template __global__ void kiln_wgmma_test::wgmma_tile_kernel<256, true>(kiln_wgmma_test::Params);

int main() {
  std::puts("kiln_wgmma_check: the wgmma test kernels compiled for sm_90a and linked");
  return 0;
}
