# Label "build": tests that only configure and compile (no sanitizer makes them stronger, so
# scripts/test.sh runs them in the release stage only).
# Compile-time checks: a channel mismatch must fail to compile with kiln's sentence.
add_executable(kiln_compile_fail_channel_mismatch EXCLUDE_FROM_ALL compile_fail/channel_mismatch.cpp)
target_link_libraries(kiln_compile_fail_channel_mismatch PRIVATE kiln::kiln)
add_test(NAME unit.compile_fail_channel_mismatch
         COMMAND ${CMAKE_COMMAND} --build ${PROJECT_BINARY_DIR} --target kiln_compile_fail_channel_mismatch)
set_tests_properties(unit.compile_fail_channel_mismatch PROPERTIES LABELS "unit;build"
  PASS_REGULAR_EXPRESSION "kiln: channel mismatch between neighbouring layers.*LinkCheck<2, 16, 8>|LinkCheck<2, 16, 8>.*kiln: channel mismatch")

# kiln used from another project, both ways (add_subdirectory, find_package after install).
add_test(NAME unit.consumer_project COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/consumer.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(unit.consumer_project PROPERTIES LABELS "unit;build" PASS_REGULAR_EXPRESSION "consumer: both ways work")

# ... and a device's Backend table that lacks a required op must fail with the list's sentence.
add_executable(kiln_compile_fail_backend_missing_op EXCLUDE_FROM_ALL compile_fail/backend_missing_op.cpp)
target_link_libraries(kiln_compile_fail_backend_missing_op PRIVATE kiln::kiln)
add_test(NAME unit.compile_fail_backend_missing_op
         COMMAND ${CMAKE_COMMAND} --build ${PROJECT_BINARY_DIR} --target kiln_compile_fail_backend_missing_op)
set_tests_properties(unit.compile_fail_backend_missing_op PROPERTIES LABELS "unit;build"
  PASS_REGULAR_EXPRESSION "lacks a required op of kiln::BackendOps")
