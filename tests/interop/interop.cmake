# kiln checkpoints <-> PyTorch (label "interop"; skipped, exit 77, without python3-torch).
# Included from tests/CMakeLists.txt.
add_executable(kiln_interop_tool ${CMAKE_CURRENT_SOURCE_DIR}/interop/interop_tool.cpp)
target_link_libraries(kiln_interop_tool PRIVATE kiln::kiln kiln_warnings)
add_test(NAME interop.pytorch
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/interop/pytorch_interop.sh
                 $<TARGET_FILE:kiln_interop_tool> ${CMAKE_CURRENT_BINARY_DIR}/interop-work)
set_tests_properties(interop.pytorch PROPERTIES LABELS "interop;slow" SKIP_RETURN_CODE 77 TIMEOUT 300)
