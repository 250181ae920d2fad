// kiln/io/read_file.hpp — read a whole file into memory with errors a user can act on.
// Checks, in order: the path exists, is a regular file (not a directory, pipe or device — a
// FIFO would block forever), can be opened; then reads it all.
#pragma once

#include <kiln/io/io_error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

namespace kiln::io {

// `what` names the kind of file in messages: "image", "checkpoint", ...
inline std::vector<std::byte> read_file(const std::filesystem::path& path, const char* what = "file",
                                        std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max()) {
    namespace fs = std::filesystem;
    const std::string name = detail::quoted(path);
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (status.type() == fs::file_type::not_found) {
        throw IoError("cannot read " + std::string(what) + " " + name + ": the file does not exist");
    }
    if (ec) throw IoError("cannot read " + std::string(what) + " " + name + ": " + ec.message());
    if (status.type() == fs::file_type::directory) {
        throw IoError("cannot read " + std::string(what) + " " + name + ": it is a directory, not a file");
    }
    if (status.type() != fs::file_type::regular) {
        throw IoError("cannot read " + std::string(what) + " " + name +
                      ": it is not a regular file (a device, pipe or socket?)");
    }

    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int error = errno;
        throw IoError("cannot read " + std::string(what) + " " + name + ": " + detail::errno_text(error));
    }
    struct FdCloser {
        int fd;
        ~FdCloser() { ::close(fd); }
    } closer{fd};

    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        const int error = errno;
        throw IoError("cannot read " + std::string(what) + " " + name + ": " + detail::errno_text(error));
    }
    const auto size = static_cast<std::uint64_t>(info.st_size);
    if (size > max_bytes) {
        throw IoError("cannot read " + std::string(what) + " " + name + ": it is " + detail::with_thousands(size) +
                      " bytes, over the limit of " + detail::with_thousands(max_bytes) + " bytes");
    }

    std::vector<std::byte> bytes(static_cast<std::size_t>(size));
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
        if (got < 0) {
            if (errno == EINTR) continue;
            const int error = errno;
            throw IoError("cannot read " + std::string(what) + " " + name + ": " + detail::errno_text(error));
        }
        if (got == 0) break;  // the file shrank while we read it: keep what is there
        done += static_cast<std::size_t>(got);
    }
    bytes.resize(done);
    return bytes;
}

}  // namespace kiln::io
