// kiln/io/atomic_file.hpp — replace a file so that a crash never leaves it half-written.
//
// The bytes go to "<target>.tmp.<pid>" in the same directory (rename is atomic only within one
// file system), the temporary is fsync'ed, renamed over the target, and then the directory is
// fsync'ed so the rename itself is durable. Until commit() succeeds the old target is untouched:
// a full disk, a crash or an exception mid-write leaves the last good checkpoint loadable.
// POSIX only (kiln targets Linux).
#pragma once

#include "kiln/io/separate.hpp"
#include "kiln/io/io_error.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

namespace kiln::io {

// Writes all of `bytes` to `fd`, retrying short writes and EINTR. Throws IoError naming
// `file_for_messages` and the system's reason (e.g. "No space left on device").
KILN_IO_ENTRY void write_all(int fd, std::span<const std::byte> bytes, const std::filesystem::path& file_for_messages);
#if KILN_IO_DEFINITIONS
KILN_IO_ENTRY void write_all(int fd, std::span<const std::byte> bytes, const std::filesystem::path& file_for_messages) {
  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    // Linux writes at most about 2 GiB per call; larger requests just come back short.
    const ssize_t written = ::write(fd, p, left);
    if (written < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      throw IoError("cannot write " + detail::quoted(file_for_messages) + ": " + detail::errno_text(error));
    }
    if (written == 0) {  // should not happen for regular files; avoid spinning forever
      throw IoError("cannot write " + detail::quoted(file_for_messages) + ": the write made no progress");
    }
    p += written;
    left -= static_cast<std::size_t>(written);
  }
}
#endif

// Writes a file through a temporary and renames it into place on commit().
// Destroying an uncommitted AtomicFile removes the temporary and leaves the target as it was.
//
//   AtomicFile out(path);        // throws if the temporary cannot be created
//   out.write(header);           // throws on write errors (disk full, ...)
//   out.write(data);
//   out.commit();                // fsync, rename, fsync directory
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target)
      : target_(std::move(target)),
        temporary_(target_.string() + ".tmp." + std::to_string(static_cast<long long>(::getpid()))) {
    if (target_.empty()) throw IoError("cannot write a file with an empty name");
    std::error_code ec;
    if (std::filesystem::is_directory(target_, ec)) {
      throw IoError("cannot write " + detail::quoted(target_) + ": it is a directory");
    }
    fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) {
      const int error = errno;
      const std::string hint = error == ENOENT ? " (does the directory exist?)" : "";
      throw IoError("cannot write " + detail::quoted(target_) + ": cannot create the temporary file " +
                    detail::quoted(temporary_) + ": " + detail::errno_text(error) + hint);
    }
  }

  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  ~AtomicFile() { abandon(); }

  void write(std::span<const std::byte> bytes) {
    if (fd_ < 0) throw IoError("cannot write " + detail::quoted(target_) + ": the file was already closed");
    write_all(fd_, bytes, target_);
  }

  // Makes the new contents durable and visible under the target name.
  void commit() {
    if (fd_ < 0) throw IoError("cannot write " + detail::quoted(target_) + ": the file was already closed");
    if (::fsync(fd_) != 0) fail("cannot flush to disk");
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) fail("cannot close");  // NFS reports write errors at close
    if (::rename(temporary_.c_str(), target_.c_str()) != 0) fail("cannot rename the temporary file over it");
    committed_ = true;
    sync_directory();
  }

  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temporary() const { return temporary_; }

 private:
  [[noreturn]] void fail(const char* what) {
    const int error = errno;
    abandon();
    throw IoError("cannot write " + detail::quoted(target_) + ": " + what + ": " + detail::errno_text(error));
  }

  void abandon() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    if (!committed_) ::unlink(temporary_.c_str());
  }

  // The rename is only durable once the directory entry is on disk. A failure here is
  // reported: the new file is in place but might not survive a power cut.
  void sync_directory() {
    std::filesystem::path directory = target_.parent_path();
    if (directory.empty()) directory = ".";
    const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return;  // e.g. a directory we may write but not read: nothing more to do
    const int result = ::fsync(dir_fd);
    const int error = errno;
    ::close(dir_fd);
    // EINVAL: this file system does not support syncing directories; the rename stands.
    if (result != 0 && error != EINVAL) {
      throw IoError("wrote " + detail::quoted(target_) +
                    " but cannot flush its directory to disk: " + detail::errno_text(error));
    }
  }

  std::filesystem::path target_;
  std::filesystem::path temporary_;
  int fd_ = -1;
  bool committed_ = false;
};

// Convenience: replace `target` with `bytes` atomically.
inline void write_file_atomically(const std::filesystem::path& target, std::span<const std::byte> bytes) {
  AtomicFile out(target);
  out.write(bytes);
  out.commit();
}

}  // namespace kiln::io
