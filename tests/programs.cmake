# The programs (kiln-train, kiln-colorize) on small fixtures: label "programs".
# Included from tests/CMakeLists.txt when examples are built. Each test is a bash script in
# tests/programs/ that gets the programs, a helper and a fresh work folder.
add_executable(kiln_programs_testtool ${CMAKE_CURRENT_SOURCE_DIR}/programs/testtool.cpp)
target_link_libraries(kiln_programs_testtool PRIVATE kiln::kiln kiln_warnings kiln_json_once)

# kill: SIGKILL at random moments (crash safety); nan_guard: the numerical guards; outputs: no user
# file replaced, closing messages true; decode: images fully decoded before training; options:
# numbers and messages; memory: the memory budget; full_disk: a
# save on a full tmpfs (skips, exit 77, without mount rights).
foreach(_name help train resume colorize bad_inputs interrupt kill nan_guard full_disk outputs decode options memory
              classify)
  add_test(NAME programs.${_name}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/programs/${_name}.sh
                   $<TARGET_FILE:kiln-train> $<TARGET_FILE:kiln-colorize> $<TARGET_FILE:kiln_programs_testtool>
                   ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/programs-work/${_name})
  set_tests_properties(programs.${_name} PROPERTIES LABELS programs TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()

# step_graph: kiln-train's Cuda step from a CUDA graph vs eager, and its device-side NaN check, on
# the emulator (skips without --device cuda). Minutes of emulated U-Net steps: label slow.
add_test(NAME programs.step_graph
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/programs/step_graph.sh
                 $<TARGET_FILE:kiln-train> $<TARGET_FILE:kiln-colorize> $<TARGET_FILE:kiln_programs_testtool>
                 ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/programs-work/step_graph)
set_tests_properties(programs.step_graph PROPERTIES LABELS slow TIMEOUT 3600 SKIP_RETURN_CODE 77)

# kiln-denoise, the second example (its own arguments: DENOISE TOOL SOURCE_DIR WORK_DIR).
add_test(NAME programs.denoise
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/programs/denoise.sh $<TARGET_FILE:kiln-denoise>
                 $<TARGET_FILE:kiln_programs_testtool> ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/programs-work/denoise)
set_tests_properties(programs.denoise PROPERTIES LABELS programs TIMEOUT 300 SKIP_RETURN_CODE 77)
