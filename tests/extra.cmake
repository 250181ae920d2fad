# Compile-time checks: a channel mismatch must fail to compile with kiln's sentence.
add_executable(kiln_compile_fail_channel_mismatch EXCLUDE_FROM_ALL compile_fail/channel_mismatch.cpp)
target_link_libraries(kiln_compile_fail_channel_mismatch PRIVATE kiln::kiln)
add_test(NAME unit.compile_fail_channel_mismatch
         COMMAND ${CMAKE_COMMAND} --build ${PROJECT_BINARY_DIR} --target kiln_compile_fail_channel_mismatch)
set_tests_properties(unit.compile_fail_channel_mismatch PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "kiln: channel mismatch between neighbouring layers.*LinkCheck<2, 16, 8>|LinkCheck<2, 16, 8>.*kiln: channel mismatch")
