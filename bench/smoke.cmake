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
# The step benchmark with a square and a non-square config (N<batch>_H<height>[_W<width>]),
# every row carrying its peak resident memory.
add_test(NAME bench.smoke_step
         COMMAND ${CMAKE_COMMAND}
                 -DBENCH=$<TARGET_FILE:kiln_bench_step> -DCHECK=$<TARGET_FILE:kiln_bench_check>
                 -DOUT=${_kiln_smoke_dir}/bench_step.json
                 "-DPREFIXES=train_step/cpu/UNetSmall/N2_H16/;inference/cpu/UNetSmall/N2_H16/;train_step/cpu/UNetSmall/N1_H16_W32/;inference/cpu/UNetSmall/N1_H16_W32/"
                 "-DCOUNTERS=median_ms;peak_rss_MiB;arena_MiB"
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/smoke_run.cmake)
set_tests_properties(bench.smoke_cpu bench.smoke_step PROPERTIES LABELS unit ENVIRONMENT "KILN_BENCH_SMOKE=1;OMP_NUM_THREADS=2")
set_tests_properties(bench.smoke_step PROPERTIES ENVIRONMENT
                     "KILN_BENCH_SMOKE=1;OMP_NUM_THREADS=2;KILN_BENCH_STEP_CONFIGS=N2_H16,N1_H16_W32")
# The checks must fire: a malformed config stops the program with the reason, and a report
# whose row lacks a required counter fails the checker.
add_test(NAME bench.step_config_refused COMMAND kiln_bench_step)
set_tests_properties(bench.step_config_refused PROPERTIES LABELS unit
                     ENVIRONMENT "KILN_BENCH_SMOKE=1;KILN_BENCH_STEP_CONFIGS=N2_H16,N1_H16_W"
                     PASS_REGULAR_EXPRESSION "'N1_H16_W' is not a config")
add_test(NAME bench.check_missing_counter
         COMMAND kiln_bench_check ${CMAKE_CURRENT_SOURCE_DIR}/check_missing_counter.json --counter=peak_rss_MiB)
set_tests_properties(bench.check_missing_counter PROPERTIES LABELS unit
                     PASS_REGULAR_EXPRESSION "inference/cpu/UNetSmall/N2_H16: counter peak_rss_MiB is missing")
