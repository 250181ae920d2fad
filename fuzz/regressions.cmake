# fuzz/regressions.cmake — the fuzz targets as ordinary ctest tests (label unit), without
# libFuzzer: each target's LLVMFuzzerTestOneInput, compiled with the project's compiler (g++)
# and warnings, linked with kiln::kiln (Debian's libstb), fed every file of
# fuzz/corpus/<target>/ and fuzz/regressions/<target>/ once by fuzz/regression_main.cpp.
# Runs in the normal build; not in the ASan/UBSan one (KILN_SANITIZE), where fuzz/run_ci.sh's
# libFuzzer run replays the same files under clang's sanitizers. Include from tests/CMakeLists.txt:
#   include(${PROJECT_SOURCE_DIR}/fuzz/regressions.cmake)
set(_kiln_fuzz_dir ${CMAKE_CURRENT_LIST_DIR})
foreach(_target image safetensors dataset)
  set(_exe kiln_fuzz_regression_${_target})
  add_executable(${_exe} ${_kiln_fuzz_dir}/fuzz_${_target}.cpp ${_kiln_fuzz_dir}/regression_main.cpp)
  target_link_libraries(${_exe} PRIVATE kiln::kiln kiln_warnings)
  add_test(NAME fuzz.${_target}
           COMMAND ${_exe} ${_kiln_fuzz_dir}/corpus/${_target} ${_kiln_fuzz_dir}/regressions/${_target})
  set_tests_properties(fuzz.${_target} PROPERTIES LABELS unit)
endforeach()
