#pragma once
// Questions the programs ask about paths before they read or write: why a path cannot be used
// (a symlink loop is not "missing"), whether two paths are one file, whether a folder lies
// inside another. Used to keep every output off the user's inputs (docs/reliability.md).
#include <filesystem>
#include <string>
#include <system_error>

namespace kiln::programs {

// Why `p` cannot be opened, as the end of a sentence ("does not exist", "is a symbolic link
// loop ..."), or "" when it exists. Never throws (fs::exists without an error_code throws
// filesystem_error on a loop).
inline std::string missing_reason(const std::filesystem::path& p) {
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(p, ec);
  if (!ec && std::filesystem::exists(st)) return {};
  if (ec == std::errc::too_many_symbolic_link_levels)
    return "cannot be opened: it is a loop of symbolic links (too many levels of symbolic links)";
  if (ec == std::errc::permission_denied) return "cannot be reached: permission denied";
  if (ec == std::errc::not_a_directory) return "does not exist (a part of the path is a file, not a folder)";
  if (!ec || ec == std::errc::no_such_file_or_directory) {
    std::error_code lec;
    if (std::filesystem::is_symlink(std::filesystem::symlink_status(p, lec)))
      return "is a symbolic link to something that does not exist";
    return "does not exist";
  }
  return "cannot be opened (" + ec.message() + ")";
}

// The absolute, normalised path with every existing part's links resolved; never throws.
inline std::filesystem::path resolved(const std::filesystem::path& p) {
  std::error_code ec;
  std::filesystem::path r = std::filesystem::weakly_canonical(std::filesystem::absolute(p, ec), ec);
  if (ec) r = std::filesystem::absolute(p, ec).lexically_normal();
  return r;
}

// True when `inner` is `outer` or lies somewhere below it (links resolved).
inline bool is_same_or_inside(const std::filesystem::path& inner, const std::filesystem::path& outer) {
  const std::filesystem::path a = resolved(inner), b = resolved(outer);
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai) {
    if (bi->empty() && std::next(bi) == b.end()) break;  // a trailing separator
    if (ai == a.end() || *ai != *bi) return false;
  }
  return true;
}

// True when both paths exist and are the same file (hard links and symbolic links included).
inline bool is_same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  const bool same = std::filesystem::equivalent(a, b, ec);
  return !ec && same;
}

}  // namespace kiln::programs
