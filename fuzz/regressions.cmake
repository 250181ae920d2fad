# fuzz/regressions.cmake — the fuzz targets as ordinary ctest tests (label unit), without
# libFuzzer: each target's LLVMFuzzerTestOneInput, compiled with the project's compiler (g++)
# and warnings, linked with kiln::kiln (Debian's libstb), fed every file of
# fuzz/corpus/<target>/ and fuzz/regressions/<target>/ once by fuzz/regression_main.cpp.
# Runs in the normal build; not in the ASan/UBSan one (KILN_SANITIZE), where fuzz/run_ci.sh's
# libFuzzer run replays the same files under clang's sanitizers. Include from tests/CMakeLists.txt:
#   include(${PROJECT_SOURCE_DIR}/fuzz/regressions.cmake)
set(_kiln_fuzz_dir ${CMAKE_CURRENT_LIST_DIR})
add_library(kiln_fuzz_regression_main OBJECT ${_kiln_fuzz_dir}/regression_main.cpp)  # (compiled once)
target_link_libraries(kiln_fuzz_regression_main PRIVATE kiln_warnings)
foreach(_target image safetensors dataset)
  set(_exe kiln_fuzz_regression_${_target})
  add_executable(${_exe} ${_kiln_fuzz_dir}/fuzz_${_target}.cpp $<TARGET_OBJECTS:kiln_fuzz_regression_main>)
  # kiln::io's JSON and larger functions from kiln_json_once, as in the tests and programs (the
  # safetensors target compiled in 13.5 CPU-s on its own, most of it nlohmann::json's templates).
  target_link_libraries(${_exe} PRIVATE kiln::kiln kiln_warnings kiln_json_once)
  add_test(NAME fuzz.${_target}
           COMMAND ${_exe} ${_kiln_fuzz_dir}/corpus/${_target} ${_kiln_fuzz_dir}/regressions/${_target})
  set_tests_properties(fuzz.${_target} PROPERTIES LABELS unit)
endforeach()
