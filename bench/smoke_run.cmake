# cmake -DBENCH=<program> -DCHECK=<kiln_bench_check> -DOUT=<json> -DPREFIXES=<a;b;...>
#       [-DCOUNTERS=<c;d;...>] -P smoke_run.cmake
# Runs a benchmark program in smoke mode (KILN_BENCH_SMOKE=1 is set by the test)
# and checks its JSON report; every benchmark must have each of COUNTERS.
get_filename_component(_dir ${OUT} DIRECTORY)
file(MAKE_DIRECTORY ${_dir})
set(ENV{KILN_BENCH_SMOKE} 1)
execute_process(COMMAND ${BENCH} --benchmark_out=${OUT} --benchmark_out_format=json
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "${BENCH} failed (${_rc}):\n${_out}\n${_err}")
endif()
set(_counter_args)
foreach(_c IN LISTS COUNTERS)
  list(APPEND _counter_args --counter=${_c})
endforeach()
execute_process(COMMAND ${CHECK} ${OUT} ${_counter_args} ${PREFIXES} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
message("${_out}${_err}")
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "the benchmark report ${OUT} failed the check")
endif()
