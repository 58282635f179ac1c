// The one errno boundary of the FUSE adapters (ops.cpp, reverse_ops.cpp): every exception stops here, nothing
// throws across libfuse, and every failure becomes one precise errno.
#pragma once

#include <exception>
#include <new>

#include "fuse/fuse_api.hpp"
#include "fuse/log.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse {

template <class F>
void with_errno(fuse_req_t req, F&& body) noexcept {
  int err;
  try {
    body();
    return;
  } catch (const Error& e) {
    err = e.sys_errno() > 0 ? e.sys_errno() : EIO;
    // Auth and corruption: the message names the inode or backing name only, never a plaintext name.
    if (e.kind() == ErrorKind::Auth || e.kind() == ErrorKind::Corrupt) log(LogLevel::Error, "%s", e.what());
  } catch (const std::bad_alloc&) {
    err = ENOMEM;
  } catch (const std::exception& e) {
    log(LogLevel::Error, "internal error: %s", e.what());
    err = EIO;
  } catch (...) {
    log(LogLevel::Error, "internal error");
    err = EIO;
  }
  fuse_reply_err(req, err);
}

}  // namespace veil::fuse
