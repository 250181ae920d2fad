# kiln checkpoints <-> PyTorch (label "interop"; skipped, exit 77, without python3-torch).
# Included from tests/CMakeLists.txt.
# The tool is built by the test itself, and only where PyTorch is installed (CI has none, and the
# tool is one of the heavier files to compile).
add_executable(kiln_interop_tool EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/interop/interop_tool.cpp)
target_link_libraries(kiln_interop_tool PRIVATE kiln::kiln kiln_warnings)
add_test(NAME interop.pytorch
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/interop/pytorch_interop.sh
                 $<TARGET_FILE:kiln_interop_tool> ${CMAKE_CURRENT_BINARY_DIR}/interop-work
                 ${CMAKE_COMMAND} ${PROJECT_BINARY_DIR})
set_tests_properties(interop.pytorch PROPERTIES LABELS "interop;slow" SKIP_RETURN_CODE 77 TIMEOUT 300)
