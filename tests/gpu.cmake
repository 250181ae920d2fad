# The gpu suite (tests/gpu/*.cpp, label gpu) compiled by nvcc for real GPUs. Include it from
# tests/CMakeLists.txt right after kiln_test_suite(gpu gpu):
#   include(${CMAKE_CURRENT_SOURCE_DIR}/gpu.cmake)
# Without KILN_CUDA the sources stay C++ (g++): they then run on the emulator, which is not what
# they are for, so every test case exits with 77 and ctest reports it as skipped. With KILN_CUDA
# every tests/gpu/*.cpp is compiled as CUDA (all of them: mixing g++- and nvcc-compiled kiln
# headers in one binary would break the one-definition rule), and without a device at run time
# they skip the same way.
if(KILN_CUDA AND TARGET kiln_gpu_tests)
  find_package(CUDAToolkit REQUIRED)
  file(GLOB _kiln_gpu_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gpu/*.cpp)
  set_source_files_properties(${_kiln_gpu_sources} PROPERTIES LANGUAGE CUDA)
  # The kernel table's other units (tests/CMakeLists.txt), as CUDA: a .cu that includes each, since
  # the emu suite compiles the same files as C++.
  foreach(_part IN LISTS KILN_KERNEL_TABLE_PARTS)
    get_filename_component(_name ${_part} NAME_WE)
    file(CONFIGURE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/gpu/kernel_table_${_name}.cu CONTENT "#include \"${_part}\"\n")
    target_sources(kiln_gpu_tests PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/gpu/kernel_table_${_name}.cu)
  endforeach()
  set_target_properties(kiln_gpu_tests PROPERTIES
    CUDA_ARCHITECTURES "${KILN_CUDA_ARCHITECTURES}")
  # C++20 for nvcc comes from CMAKE_CUDA_STANDARD (the top-level CMakeLists teaches CMake 3.25 the flag).
  # 1675: "#pragma GCC unroll" in include/kiln/cpu/gemm_kernels.hpp is unknown to nvcc's front end.
  target_compile_options(kiln_gpu_tests PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp --diag-suppress=1675>)
  target_link_options(kiln_gpu_tests PRIVATE -fopenmp)
  target_link_libraries(kiln_gpu_tests PRIVATE CUDA::cudart)
  if(KILN_CUDNN)
    target_link_libraries(kiln_gpu_tests PRIVATE kiln_cudnn)
  endif()
endif()
