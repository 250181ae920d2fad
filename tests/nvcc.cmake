# kiln_nvcc_check: every kernel compiled by nvcc for sm_80 and sm_90 and linked with the CUDA
# runtime (and cuDNN with KILN_CUDNN). Included from the top-level CMakeLists.txt with
#   option(KILN_NVCC_CHECK "Build the nvcc compile check of every kernel" OFF)
#   if(KILN_NVCC_CHECK)
#     include(tests/nvcc.cmake)
#   endif()
# and built by scripts/test.sh: -DKILN_CUDA=ON -DKILN_CUDNN=ON -DKILN_NVCC_CHECK=ON, target kiln_nvcc_check.
# The program itself runs anywhere: without a GPU it prints that compile + link succeeded.
if(NOT KILN_CUDA)
  message(FATAL_ERROR "KILN_NVCC_CHECK=ON needs -DKILN_CUDA=ON (nvcc)")
endif()
find_package(CUDAToolkit REQUIRED)

add_executable(kiln_nvcc_check ${CMAKE_CURRENT_LIST_DIR}/nvcc/kiln_nvcc_check.cu)
set_target_properties(kiln_nvcc_check PROPERTIES
  CUDA_ARCHITECTURES "80;90")
target_link_libraries(kiln_nvcc_check PRIVATE kiln::kiln CUDA::cudart)
# C++20 for nvcc comes from CMAKE_CUDA_STANDARD (the top-level CMakeLists teaches CMake 3.25 the flag).
# Host code of the CPU backend uses OpenMP; kiln::kiln's -fopenmp applies to CXX sources only.
# 1675 = "unrecognized GCC pragma" (#pragma GCC unroll in include/kiln/cpu/gemm_kernels.hpp).
# Every other warning, host or device, is an error.
# --threads 2: sm_80's and sm_90's device code compiled side by side (one unit of about 90 CPU-s,
# often the last job of CI's build stages).
target_compile_options(kiln_nvcc_check PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp --diag-suppress=1675 --Werror=all-warnings --threads 2>)
target_link_options(kiln_nvcc_check PRIVATE -fopenmp)

if(KILN_CUDNN)
  target_link_libraries(kiln_nvcc_check PRIVATE kiln_cudnn)
endif()

if(KILN_BUILD_TESTS)
  add_test(NAME gpu.nvcc_check COMMAND kiln_nvcc_check)
  set_tests_properties(gpu.nvcc_check PROPERTIES LABELS gpu)
endif()

# kiln_wgmma_check: kernels/kiln/gpu/wgmma.hpp's instructions in the emulator's wgmma test kernel,
# compiled for sm_90a (arch-specific: the only target where wgmma is more than a trap); scripts/test.sh
# checks its SASS for the HGMMAs.
add_executable(kiln_wgmma_check ${CMAKE_CURRENT_LIST_DIR}/nvcc/wgmma_check.cu)
set_target_properties(kiln_wgmma_check PROPERTIES CUDA_ARCHITECTURES "90a")
target_include_directories(kiln_wgmma_check PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(kiln_wgmma_check PRIVATE kiln::kiln CUDA::cudart)
target_compile_options(kiln_wgmma_check PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings>)

# kiln_sass_fixture: kernels that each break one SASS limit on purpose (spill-like local memory, a
# generic load in a loop, a 64-bit division in a loop, many instructions per HMMA), so that
# scripts/test.sh can prove tests/nvcc/sass_check.py catches them. Same architectures, no library.
add_executable(kiln_sass_fixture ${CMAKE_CURRENT_LIST_DIR}/nvcc/sass_fixture.cu)
set_target_properties(kiln_sass_fixture PROPERTIES CUDA_ARCHITECTURES "80;90")
target_compile_options(kiln_sass_fixture PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings>)
