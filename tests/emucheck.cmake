# kiln_emucheck_tests (-DKILN_EMU_CHECK=ON, clang): the kernel table and the checker's own tests with
# every kernel load and store instrumented (kernels/kiln/gpu/emu_check.hpp, docs/emulator.md).
# Only this target gets the instrumentation; scripts/test.sh builds just it.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "KILN_EMU_CHECK needs clang (-fsanitize-coverage=trace-loads,trace-stores); configure with -DCMAKE_CXX_COMPILER=clang++")
endif()
if(KILN_TSAN)
  message(FATAL_ERROR "KILN_EMU_CHECK needs the fiber emulator: do not combine it with KILN_TSAN")
endif()
file(GLOB _emucheck_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/emucheck/*.cpp)
add_executable(kiln_emucheck_tests ${_emucheck_sources} ${CMAKE_CURRENT_SOURCE_DIR}/emu/test_kernels_table.cpp
                                   ${KILN_KERNEL_TABLE_PARTS})
# The CPU references' kernels from kiln_cpu_once (compiled once, not instrumented, vectorised)
# rather than again in each unit. clang 14 cannot vectorise three of their `omp simd` loops
# (conv2d_fast.inl, optim.hpp) and says so (-Wpass-failed): not an error here.
target_link_libraries(kiln_emucheck_tests PRIVATE kiln_doctest_main kiln::kiln kiln_warnings kiln_cpu_once)
target_compile_options(kiln_cpu_once PRIVATE $<$<CXX_COMPILER_ID:Clang>:-Wno-pass-failed>)
target_include_directories(kiln_emucheck_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(kiln_emucheck_tests PRIVATE KILN_EMU_CHECK=1 KILN_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                                       KILN_BINARY_DIR="${PROJECT_BINARY_DIR}")
# No auto-vectorisation: the callbacks exist for 1-16-byte accesses only, and a GPU thread's
# accesses are at most 16 bytes anyway.
target_compile_options(kiln_emucheck_tests PRIVATE -fsanitize-coverage=edge,trace-loads,trace-stores
  -fsanitize-coverage-allowlist=${CMAKE_CURRENT_SOURCE_DIR}/emucheck/allowlist.txt -fno-vectorize -fno-slp-vectorize
  -Wno-pass-failed -Wno-error=pass-failed)  # the CPU reference asks for vectorised loops: without vectorisation clang warns
foreach(_src IN LISTS _emucheck_sources)
  get_filename_component(_name ${_src} NAME_WE)
  add_test(NAME emucheck.${_name} COMMAND kiln_emucheck_tests --source-file=*/emucheck/${_name}.cpp)
  set_tests_properties(emucheck.${_name} PROPERTIES LABELS emucheck)
endforeach()
# The traffic targets judge one small U-Net step from 4 sampled blocks per launch (seconds, not a minute).
set_tests_properties(emucheck.test_traffic_targets PROPERTIES ENVIRONMENT KILN_EMU_PROFILE_BLOCKS=4)
# The kernel table with the race checker, under the default schedule and one random one whose seed
# comes from the commit: a rerun of a commit replays its schedule, and each commit tries another
# (three fixed seeds cost CI about 45 CPU-s and tried the same three schedules forever). The seed is
# in the test's name; KILN_EMU_SCHEDULE=random:SEED reproduces it. Outside a git checkout, seed 1.
add_test(NAME emucheck.kernels_table COMMAND kiln_emucheck_tests --source-file=*/emu/test_kernels_table.cpp)
set_tests_properties(emucheck.kernels_table PROPERTIES LABELS emucheck)
set(_seed 1)
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short=7 HEAD WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                  OUTPUT_VARIABLE _head OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _git_rc)
  if(_git_rc EQUAL 0 AND _head MATCHES "^[0-9a-f]+$")
    math(EXPR _seed "0x${_head} % 1000000 + 1")
  endif()
endif()
add_test(NAME emucheck.kernels_table_random_${_seed} COMMAND kiln_emucheck_tests --source-file=*/emu/test_kernels_table.cpp)
set_tests_properties(emucheck.kernels_table_random_${_seed} PROPERTIES LABELS emucheck ENVIRONMENT KILN_EMU_SCHEDULE=random:${_seed})

# kiln_emu_profile: the traffic table of one U-Net training step (not a test; docs/kernels.md).
# Emulated wmma / ldmatrix operations report each lane's real accesses themselves (wmma.hpp, mma.hpp).
add_executable(kiln_emu_profile EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/emucheck/tools/kiln_emu_profile.cpp)
target_link_libraries(kiln_emu_profile PRIVATE kiln::kiln kiln_warnings)
target_include_directories(kiln_emu_profile PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})  # emucheck/step_traffic.hpp
target_compile_definitions(kiln_emu_profile PRIVATE KILN_EMU_CHECK=1)
target_compile_options(kiln_emu_profile PRIVATE -fsanitize-coverage=edge,trace-loads,trace-stores
  -fsanitize-coverage-allowlist=${CMAKE_CURRENT_SOURCE_DIR}/emucheck/allowlist.txt -fno-vectorize -fno-slp-vectorize
  -Wno-pass-failed -Wno-error=pass-failed)
