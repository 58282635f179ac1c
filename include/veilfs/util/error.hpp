// Errors inside the engines travel as exceptions of one type, veil::Error, carrying a kind and an errno.
// The FUSE adapter and the CLIs each convert them at exactly one boundary (to -errno, to an exit code).
// Messages never contain plaintext names, contents or secrets.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace veil {

enum class ErrorKind {
  Io,           // a system call failed; sys_errno says which way
  Auth,         // authentication failed: tampering or corruption of encrypted data
  Corrupt,      // structurally invalid on-disk data (config, header, name, sidecar)
  WrongSecret,  // no key slot opens with the given passphrase or key file
  Unsupported,  // newer format version or unknown feature flag
  InvalidArgument,
  NameTooLong,
  NotFound,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, int sys_errno, const std::string& what)
      : std::runtime_error(what), kind_(kind), errno_(sys_errno) {}
  ErrorKind kind() const noexcept { return kind_; }
  // The errno a POSIX caller should see for this error.
  int sys_errno() const noexcept { return errno_; }

 private:
  ErrorKind kind_;
  int errno_;
};

// The one way to throw a failed system call's errno: "what: <strerror>" (what never holds a plaintext name).
[[noreturn]] inline void throw_errno(const std::string& what, int err = errno) {
  throw Error(ErrorKind::Io, err, what + ": " + std::strerror(err));
}
// Where the errno itself is the whole message (the FUSE operations: it becomes the reply).
[[noreturn]] inline void throw_errno(int err) { throw Error(ErrorKind::Io, err, std::strerror(err)); }
// A system call's return value: throws its errno when it failed (rc < 0).
inline void check_errno(long rc) {
  if (rc < 0) throw_errno(errno);
}
[[noreturn]] inline void throw_auth(const std::string& what) { throw Error(ErrorKind::Auth, EIO, what); }
[[noreturn]] inline void throw_corrupt(const std::string& what) { throw Error(ErrorKind::Corrupt, EIO, what); }
[[noreturn]] inline void throw_invalid(const std::string& what) {
  throw Error(ErrorKind::InvalidArgument, EINVAL, what);
}

}  // namespace veil
