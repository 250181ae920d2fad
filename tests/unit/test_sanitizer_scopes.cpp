// The sanitizer build checks scopes in this suite only (CMakeLists.txt, KILN_CHECKS_SCOPES): the
// library's code is unit-tested here with ASan's use-after-scope check on; elsewhere in that build it
// is off for its compile and run time. This proves the check is on where it should be.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "child_process.hpp"

#if KILN_TEST_ASAN
namespace {

// Out of line, so that the compiler's dangling-pointer warning does not see the escape.
[[gnu::noinline]] volatile int* escape_scope(volatile int* p) { return p; }

}  // namespace
#endif

TEST_CASE("sanitizer build: a block's local read through a pointer after the block is reported" *
          doctest::skip(!KILN_TEST_ASAN)) {
#if KILN_TEST_ASAN
  const kiln::test::ChildRun child = kiln::test::run_in_child([] {
    volatile int* kept = nullptr;
    {
      volatile int local[4] = {1, 2, 3, 4};
      kept = escape_scope(local);
    }
    std::printf("%d\n", kept[2]);  // the block has ended: stack-use-after-scope
  });
  INFO(child.stderr_text);
  CHECK(!child.exited_cleanly);
  CHECK(child.stderr_text.find("stack-use-after-scope") != std::string::npos);
#endif
}
