# kiln/dist under mpirun (label "dist"): the communicator, bucketed all-reduce and synchronised
# BatchNorm (kiln_dist_tests), and kiln-train on 2 ranks (parity with one process, resume after a
# kill). Without KILN_MPI the entries stay and skip (exit 77), saying why.
set(_dist_dir ${CMAKE_CURRENT_SOURCE_DIR}/dist)
if(KILN_MPI)
  add_executable(kiln_dist_tests ${_dist_dir}/main.cpp ${_dist_dir}/test_collectives.cpp)
  target_link_libraries(kiln_dist_tests PRIVATE kiln::mpi kiln_warnings kiln_cpu_once doctest::doctest)
  set(_dist_exe $<TARGET_FILE:kiln_dist_tests>)
else()
  set(_dist_exe ${CMAKE_CURRENT_BINARY_DIR}/kiln_dist_tests-not-built)
endif()
add_test(NAME dist.collectives COMMAND bash ${_dist_dir}/mpirun.sh 2 ${_dist_exe})
set_tests_properties(dist.collectives PROPERTIES LABELS dist TIMEOUT 120 SKIP_RETURN_CODE 77)

if(KILN_BUILD_EXAMPLES)
  foreach(_name train_parity resume_kill)
    add_test(NAME dist.${_name}
             COMMAND bash ${_dist_dir}/${_name}.sh $<TARGET_FILE:kiln-train> $<TARGET_FILE:kiln-colorize>
                     $<TARGET_FILE:kiln_programs_testtool> ${PROJECT_SOURCE_DIR}
                     ${CMAKE_CURRENT_BINARY_DIR}/dist-work/${_name})
    set_tests_properties(dist.${_name} PROPERTIES LABELS dist TIMEOUT 300 SKIP_RETURN_CODE 77)
  endforeach()
endif()

# The NCCL communicator on real GPUs (nvcc, KILN_NCCL): one GPU per rank, so it skips (exit 77)
# on a machine with fewer GPUs than ranks.
if(KILN_NCCL)
  add_executable(kiln_dist_nccl_tests ${_dist_dir}/test_nccl.cpp)
  set_source_files_properties(${_dist_dir}/test_nccl.cpp PROPERTIES LANGUAGE CUDA)
  set_target_properties(kiln_dist_nccl_tests PROPERTIES CUDA_ARCHITECTURES "${KILN_CUDA_ARCHITECTURES}")
  target_compile_options(kiln_dist_nccl_tests PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp --diag-suppress=1675 --expt-relaxed-constexpr>)
  target_link_options(kiln_dist_nccl_tests PRIVATE -fopenmp)
  target_link_libraries(kiln_dist_nccl_tests PRIVATE kiln::nccl doctest::doctest)
  add_test(NAME dist.nccl COMMAND bash ${_dist_dir}/mpirun.sh 2 $<TARGET_FILE:kiln_dist_nccl_tests>)
  set_tests_properties(dist.nccl PROPERTIES LABELS "dist;gpu" TIMEOUT 120 SKIP_RETURN_CODE 77)
endif()

# kiln/dist stays optional: no other library header includes it.
add_test(NAME dist.library_independent
         COMMAND bash -c "! grep -rn 'kiln/dist/' --include=*.hpp --include=*.cuh --exclude-dir=dist include/kiln kernels"
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(dist.library_independent PROPERTIES LABELS "dist;unit")
