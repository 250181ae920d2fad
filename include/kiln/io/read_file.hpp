// kiln/io/read_file.hpp — open and read files with errors a user can act on.
// Checks, in order: the path exists, is a regular file (not a directory, pipe or device — a
// FIFO would block forever), can be opened; reads then either the whole file or exact ranges.
#pragma once

#include "kiln/io/io_error.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace kiln::io {

// An open regular file. `what` names the kind of file in messages: "image", "checkpoint", ...
class ReadableFile {
 public:
  ReadableFile(const std::filesystem::path& path, const char* what) : path_(path), what_(what) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (status.type() == fs::file_type::not_found) fail("the file does not exist");
    if (ec) fail(ec.message());
    if (status.type() == fs::file_type::directory) fail("it is a directory, not a file");
    if (status.type() != fs::file_type::regular) fail("it is not a regular file (a device, pipe or socket?)");

    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail(detail::errno_text(errno));
    struct stat info {};
    if (::fstat(fd_, &info) != 0) {
      const int error = errno;
      ::close(fd_);
      fail(detail::errno_text(error));
    }
    size_ = static_cast<std::uint64_t>(info.st_size);
  }
  ReadableFile(const ReadableFile&) = delete;
  ReadableFile& operator=(const ReadableFile&) = delete;
  ~ReadableFile() { ::close(fd_); }

  std::uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

  // Fills `out` from `offset`; throws if the file ends first (it shrank, or lied about its size).
  void read_exact(std::uint64_t offset, std::span<std::byte> out) const {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t got = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        fail(detail::errno_text(errno));
      }
      if (got == 0) fail("the file ended early (was it changed while being read?)");
      done += static_cast<std::size_t>(got);
    }
  }

  // "cannot read <what> '<path>': <reason>"
  [[noreturn]] void fail(const std::string& reason) const {
    throw IoError("cannot read " + std::string(what_) + " " + detail::quoted(path_) + ": " + reason);
  }

 private:
  std::filesystem::path path_;
  const char* what_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// The whole file, refusing files over `max_bytes`.
inline std::vector<std::byte> read_file(const std::filesystem::path& path, const char* what = "file",
                                        std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max()) {
  const ReadableFile file(path, what);
  if (file.size() > max_bytes) {
    file.fail("it is " + detail::with_thousands(file.size()) + " bytes, over the limit of " +
              detail::with_thousands(max_bytes) + " bytes");
  }
  std::vector<std::byte> bytes(static_cast<std::size_t>(file.size()));
  file.read_exact(0, bytes);
  return bytes;
}

}  // namespace kiln::io
