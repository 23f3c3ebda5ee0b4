# cmake -DFUZZER=BIN -DNAME=fuzz_x -DSOURCE=tests/fuzz -DWORK=DIR -DSECONDS=N -P run_fuzzer.cmake
# Runs one libFuzzer target for SECONDS on a fresh copy of its seed corpus and regressions in
# WORK (new inputs land there, never in the repo), with its dictionary if it has one. Fails on
# any crash, leak, undefined behaviour or timeout; the input is then in WORK/artifacts/.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts ${WORK}/tmp)
foreach(dir corpus regressions)
  if(EXISTS ${SOURCE}/${dir}/${NAME})
    file(GLOB inputs ${SOURCE}/${dir}/${NAME}/*)
    file(COPY ${inputs} DESTINATION ${WORK}/corpus)
  endif()
endforeach()
set(args -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
    -artifact_prefix=${WORK}/artifacts/)
if(EXISTS ${SOURCE}/${NAME}.dict)
  list(APPEND args -dict=${SOURCE}/${NAME}.dict)
endif()
set(ENV{TMPDIR} ${WORK}/tmp)
execute_process(COMMAND ${FUZZER} ${args} ${WORK}/corpus RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB found ${WORK}/artifacts/*)
  message(FATAL_ERROR "${NAME} failed (${rc}); input: ${found}\n"
                      "Fix the bug, then add the input to tests/fuzz/regressions/${NAME}/.")
endif()
