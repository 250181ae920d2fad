#pragma once
// kiln's one exception type and the check macro every layer uses for run-time
// shape and argument errors. Messages are sentences that name the culprit.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace kiln {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
std::string concat_message(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}
}  // namespace detail

// Throws kiln::Error with the parts streamed together.
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(detail::concat_message(std::forward<Parts>(parts)...));
}

}  // namespace kiln

// KILN_CHECK(cond, "message parts", value, ...): throws kiln::Error when cond is false.
#define KILN_CHECK(cond, ...)               \
  do {                                      \
    if (!(cond)) ::kiln::fail(__VA_ARGS__); \
  } while (0)
