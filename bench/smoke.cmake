# CI smoke tests of the benchmark programs (label unit): KILN_BENCH_SMOKE=1
# makes every benchmark use tiny shapes and one iteration; the JSON report is
# then checked by kiln_bench_check (no errors, every counter finite and > 0,
# every layer present). Nothing is timed against a limit.
# Included from bench/CMakeLists.txt; add_test is a no-op unless enable_testing() ran.
set(_kiln_smoke_dir ${CMAKE_CURRENT_BINARY_DIR}/smoke)

add_test(NAME bench.smoke_cpu
         COMMAND ${CMAKE_COMMAND}
                 -DBENCH=$<TARGET_FILE:kiln_bench_cpu> -DCHECK=$<TARGET_FILE:kiln_bench_check>
                 -DOUT=${_kiln_smoke_dir}/bench_cpu.json
                 "-DPREFIXES=cpu_peak/fma_loop;conv3x3_fwd/cpu/;conv3x3_dgrad/cpu/;conv3x3_wgrad/cpu/;conv1x1_fwd/cpu/;conv1x1_dgrad/cpu/;conv1x1_wgrad/cpu/;batchnorm_fwd_train/cpu/;batchnorm_bwd/cpu/;batchnorm_fwd_eval/cpu/;relu_fwd/cpu/;relu_bwd/cpu/;maxpool_fwd/cpu/;maxpool_bwd/cpu/;upsample_fwd/cpu/;upsample_bwd/cpu/;concat_fwd/cpu/;concat_bwd/cpu/;mse_fwd/cpu/;mse_bwd/cpu/;adam_step/cpu/"
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/smoke_run.cmake)
add_test(NAME bench.smoke_step
         COMMAND ${CMAKE_COMMAND}
                 -DBENCH=$<TARGET_FILE:kiln_bench_step> -DCHECK=$<TARGET_FILE:kiln_bench_check>
                 -DOUT=${_kiln_smoke_dir}/bench_step.json
                 "-DPREFIXES=train_step/cpu/UNetSmall/;inference/cpu/UNetSmall/"
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/smoke_run.cmake)
set_tests_properties(bench.smoke_cpu bench.smoke_step PROPERTIES LABELS unit ENVIRONMENT "KILN_BENCH_SMOKE=1;OMP_NUM_THREADS=2")
