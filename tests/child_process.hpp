#pragma once
// Deliberate-bug tests of the sanitizer build: the bug runs in a forked child (a sanitizer report
// ends that process) and the test reads what the child wrote to stderr.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <string>

#if defined(__SANITIZE_ADDRESS__)
#define KILN_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_TEST_ASAN 1
#endif
#endif
#ifndef KILN_TEST_ASAN
#define KILN_TEST_ASAN 0
#endif

namespace kiln::test {

struct ChildRun {
  bool exited_cleanly;
  std::string stderr_text;
};

template <class Body>
ChildRun run_in_child(Body body) {
  int pipe_ends[2];
  REQUIRE(pipe(pipe_ends) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    dup2(pipe_ends[1], 2);
    close(pipe_ends[0]);
    try {
      body();
    } catch (...) {  // not into doctest: the child would go on running the parent's tests
      _exit(3);
    }
    _exit(0);
  }
  close(pipe_ends[1]);
  std::string report;
  char chunk[4096];
  for (ssize_t got; (got = read(pipe_ends[0], chunk, sizeof chunk)) > 0;)
    report.append(chunk, static_cast<std::size_t>(got));
  close(pipe_ends[0]);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  return {WIFEXITED(status) && WEXITSTATUS(status) == 0, report};
}

}  // namespace kiln::test
