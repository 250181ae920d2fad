// fuzz/fuzz_common.hpp — shared by kiln's fuzz targets.
//
// The contract under test: for any input, kiln::io either succeeds or throws kiln::io::IoError
// (or kiln::Error). Any other exception, a crash, a sanitizer report, a hang or an allocation
// over libFuzzer's limit is a finding. A broken property aborts via KILN_FUZZ_CHECK.
#pragma once

#include <cstdio>
#include <cstdlib>

#define KILN_FUZZ_CHECK(cond, ...)                                                       \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: property broken: %s\n  ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                 \
      std::fprintf(stderr, "\n");                                                        \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
